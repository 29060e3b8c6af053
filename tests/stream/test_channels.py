"""Stream headers and the name-based channel map (rtsource.stream.channels)."""

from __future__ import annotations

import numpy as np
import pylsl
import pytest

from rtsource.errors import ChannelError, StreamError, UnitError
from rtsource.stream.channels import describe_stream_xml, map_stream_channels


def header(names, units=None, types=None, sfreq=500.0):
    info = pylsl.StreamInfo("amp", "EEG", len(names), sfreq, pylsl.cf_float32, "amp-1")
    chans = info.desc().append_child("channels")
    for i, n in enumerate(names):
        ch = chans.append_child("channel")
        ch.append_child_value("label", n)
        if types:
            ch.append_child_value("type", types[i])
        if units:
            ch.append_child_value("unit", units[i])
    return describe_stream_xml(info.as_xml())


OP = ("Fz", "Cz", "Pz", "Oz")


def test_header_is_parsed():
    d = header(["Cz", "Pz"], ["microvolts", "microvolts"], ["EEG", "EEG"])
    assert d.name == "amp" and d.source_id == "amp-1" and d.sfreq == 500.0 and d.n_channels == 2
    assert d.ch_names == ("Cz", "Pz") and d.ch_units == ("microvolts",) * 2 and d.channel_format == "float32"


def test_shuffled_and_extra_channels_map_by_name():
    d = header(["EOG", "oz", "Cz", "TRIG", "Fz", "Pz"], ["uV"] * 6, ["EOG", "EEG", "EEG", "MISC", "EEG", "EEG"])
    m = map_stream_channels(d, OP, ("V",) * 4)
    assert m.index.tolist() == [4, 2, 5, 1]
    assert np.allclose(m.scale, 1e-6)
    assert m.extra == ("EOG", "TRIG")
    assert "2 extra channel(s) ignored: EOG, TRIG" in m.summary()


def test_units_are_converted():
    d = header(list(OP), ["V", "mV", "microvolts", "nV"])
    m = map_stream_channels(d, OP, ("V",) * 4)
    assert np.allclose(m.scale, [1.0, 1e-3, 1e-6, 1e-9])


def test_missing_channels_are_listed():
    d = header(["Fz", "Cz"], ["uV", "uV"])
    with pytest.raises(ChannelError) as exc:
        map_stream_channels(d, OP, ("V",) * 4)
    assert "Pz" in str(exc.value) and "Oz" in str(exc.value) and "2 channel(s) not found" in str(exc.value)


def test_missing_unit_is_refused_unless_assumed():
    d = header(list(OP))
    with pytest.raises(UnitError, match="assume-unit"):
        map_stream_channels(d, OP, ("V",) * 4)
    m = map_stream_channels(d, OP, ("V",) * 4, assume_unit="uV")
    assert m.assumed_unit and np.allclose(m.scale, 1e-6)


def test_wrong_kind_of_unit_is_refused():
    d = header(list(OP), ["fT"] * 4)
    with pytest.raises(UnitError, match="'fT'.*expects 'V'"):
        map_stream_channels(d, OP, ("V",) * 4)
    d = header(list(OP), ["parsecs"] * 4)
    with pytest.raises(UnitError, match="parsecs"):
        map_stream_channels(d, OP, ("V",) * 4)


def test_non_eeg_channel_with_eeg_name_is_refused():
    d = header(list(OP), ["uV"] * 4, ["EEG", "EEG", "EEG", "EOG"])
    with pytest.raises(ChannelError, match="'Oz' has type 'EOG' but the operator expects EEG"):
        map_stream_channels(d, OP, ("V",) * 4)


def test_stream_without_labels_is_refused():
    info = pylsl.StreamInfo("bare", "EEG", 4, 500.0, pylsl.cf_float32, "x")
    with pytest.raises(ChannelError, match="matches channels by name"):
        map_stream_channels(describe_stream_xml(info.as_xml()), OP, ("V",) * 4)


def test_aliases_apply_to_stream_labels():
    d = header(["EEG1", "EEG2", "EEG3", "EEG4"], ["uV"] * 4)
    m = map_stream_channels(d, OP, ("V",) * 4, aliases={"EEG1": "Oz", "EEG2": "Pz", "EEG3": "Cz", "EEG4": "Fz"})
    assert m.index.tolist() == [3, 2, 1, 0]


def test_malformed_header():
    with pytest.raises(StreamError, match="XML"):
        describe_stream_xml("<info><name>x</name")


def test_meg_channels_map_by_type():
    d = header(["MEG001M", "MEG001G1", "EEG1"], ["T", "T/m", "uV"], ["MAG", "GRAD", "EEG"])
    m = map_stream_channels(d, ("MEG001G1", "MEG001M"), ("T/m", "T"), ch_types=("grad", "mag"))
    assert m.index.tolist() == [1, 0] and np.allclose(m.scale, 1.0) and m.extra == ("EEG1",)
    with pytest.raises(ChannelError, match="expects GRAD"):
        map_stream_channels(d, ("MEG001M",), ("T/m",), ch_types=("grad",))
    with pytest.raises(UnitError, match="'T'"):
        map_stream_channels(d, ("MEG001M",), ("T/m",), ch_types=("mag",))
