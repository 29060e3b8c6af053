"""Montages (rtsource.sensors.montage); name matching itself is in tests/test_channel_names.py."""

from __future__ import annotations

import numpy as np
import pytest

from rtsource.errors import ChannelError
from rtsource.channel_names import canonical_label
from rtsource.sensors.montage import CAP_64, standard_montage


def test_standard_systems_nest():
    m20, m10, m05 = (standard_montage(n) for n in ("standard_1020", "standard_1010", "standard_1005"))
    assert len(m20.labels) == 21 and len(m10.labels) < len(m05.labels)
    assert set(m20.labels) <= set(m10.labels) <= set(m05.labels)
    assert m05.fiducials is not None and m05.frame.value == "template"


def test_cap64_is_available_and_picked_in_order():
    m = standard_montage("standard_1005").pick(CAP_64)
    assert m.labels == CAP_64
    full = standard_montage("standard_1005")
    i = full.labels.index("Oz")
    assert np.allclose(m.electrodes.positions[CAP_64.index("Oz")], full.electrodes.positions[i])


def test_old_10_20_names_and_case_match_new_ones():
    montage = standard_montage("standard_1020")
    stream = ["t3", "T4", "t5", "T6", "CZ", "fp1"]
    picked = montage.pick(stream)
    assert picked.labels == tuple(stream)
    full = dict(zip(montage.labels, montage.electrodes.positions))
    assert np.allclose(picked.electrodes.positions[0], full["T7"])
    assert np.allclose(picked.electrodes.positions[3], full["P8"])
    assert canonical_label("T3") == canonical_label("t7")


def test_missing_channel_error_lists_them():
    with pytest.raises(ChannelError) as exc:
        standard_montage("standard_1020").pick(["Cz", "XYZ1", "XYZ2"])
    msg = str(exc.value)
    assert "XYZ1" in msg and "XYZ2" in msg and "2 channel(s)" in msg
