"""The simulated amplifier (rtsource.simulator): signal content, metadata, no inverse crime."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from rtsource.anatomy.template import template_source_space
from rtsource.config import SimulatedSource, Settings
from rtsource.errors import ConfigError
from rtsource.simulator import SignalGenerator, Simulator

from .stream.lsl_helpers import Collector, unique


def test_generator_is_deterministic_and_realistic():
    s = Settings().simulate
    a, b = SignalGenerator(s, Settings().sensors.channels), SignalGenerator(s, Settings().sensors.channels)
    xa, ma = a.next(1000)
    xb, mb = b.next(1000)
    assert np.array_equal(xa, xb) and np.array_equal(ma, mb)
    assert xa.shape == (1000, 64) and ma.shape == (1000, 2)
    rms = (xa - xa.mean(axis=1, keepdims=True)).std()
    assert 2e-6 < rms < 50e-6, f"EEG-like amplitude expected, got {rms * 1e6:.1f} uV"
    # the 10 Hz source dominates its own rhythm at the occipital channels
    from scipy.signal import welch

    f, p = welch(xa[:, Settings().sensors.channels.index("Oz")] - xa.mean(axis=1), fs=s.sfreq, nperseg=500)
    assert p[np.argmin(abs(f - 10))] > 3 * np.median(p[(f > 5) & (f < 40)])


def test_baseline_is_noise_only():
    s = dataclasses.replace(Settings().simulate, baseline_seconds=1.0)
    g = SignalGenerator(s, Settings().sensors.channels)
    _, m = g.next(1000)
    assert np.all(m[:500] == 0) and np.any(m[500:] != 0)


def test_no_inverse_crime():
    """The simulator's sources and head model differ from what the inverse uses."""
    s = Settings()
    g = SignalGenerator(s.simulate, s.sensors.channels)
    inverse_grid = template_source_space(s.source_space.spacing, s.source_space.surface)
    assert g.cortex.n_sources > inverse_grid.n_sources
    from scipy.spatial import cKDTree

    d, _ = cKDTree(inverse_grid.positions_m).query(g.cortex.positions_m[g.usable])
    assert np.min(d) > 2e-4, "simulated positions coincide with the inverse's grid"
    assert np.median(d) > 1e-3
    assert s.simulate.relative_radii != s.forward.relative_radii
    assert s.simulate.conductivities != s.forward.conductivities


def test_source_far_from_cortex_is_refused():
    s = dataclasses.replace(Settings().simulate, sources=(SimulatedSource((0.0, 0.0, 200.0)),))
    with pytest.raises(ConfigError, match="cortical"):
        SignalGenerator(s, Settings().sensors.channels)


def test_simulator_publishes_eeg_and_truth_on_lsl():
    name = unique("sim")
    s = dataclasses.replace(Settings().simulate, stream_name=name, source_id=name, chunk_size=25)
    sim = Simulator(s, Settings().sensors.channels)
    eeg = Collector(name)
    truth = Collector(name + "-truth")
    sim.run(duration=1.0)
    import time

    time.sleep(0.5)
    eeg.stop()
    truth.stop()
    data, ts = eeg.data()
    assert len(ts) == 500 and data.shape == (500, 64)
    assert np.allclose(np.diff(ts), 1 / 500, atol=1e-9)
    root = ET.fromstring(eeg.info.as_xml())
    chans = root.findall("desc/channels/channel")
    assert [c.find("label").text for c in chans] == list(Settings().sensors.channels)
    assert {c.find("unit").text for c in chans} == {"microvolts"}
    assert {c.find("type").text for c in chans} == {"EEG"}
    assert 1.0 < np.abs(data).std() < 100.0  # microvolts
    tdata, tts = truth.data()
    assert np.array_equal(tts, ts)
    troot = ET.fromstring(truth.info.as_xml())
    assert float(troot.find("desc/sources_on_time").text) == pytest.approx(ts[0], abs=1e-6)


def test_meg_simulator_publishes_tesla_with_types():
    name = unique("simmeg")
    s = Settings()
    s = dataclasses.replace(
        s,
        sensors=dataclasses.replace(s.sensors, modality="meg"),
        simulate=dataclasses.replace(s.simulate, stream_name=name, source_id=name, chunk_size=25, truth_stream=False, n_noise_sources=200),
    )
    sim = Simulator.from_settings(s)
    assert sim.generator.n_channels == 306
    meg = Collector(name)
    sim.run(duration=1.0)
    import time

    time.sleep(0.5)
    meg.stop()
    data, ts = meg.data()
    assert data.shape == (500, 306)
    root = ET.fromstring(meg.info.as_xml())
    assert root.find("type").text == "MEG"
    chans = root.findall("desc/channels/channel")
    types = [c.find("type").text for c in chans]
    units = [c.find("unit").text for c in chans]
    assert types.count("MAG") == 102 and types.count("GRAD") == 204
    assert {u for t, u in zip(types, units) if t == "MAG"} == {"T"} and {u for t, u in zip(types, units) if t == "GRAD"} == {"T/m"}
    mag = data[:, [i for i, t in enumerate(types) if t == "MAG"]]
    grad = data[:, [i for i, t in enumerate(types) if t == "GRAD"]]
    assert 1e-14 < mag.std() < 1e-11, mag.std()  # tens to thousands of fT
    assert 1e-13 < grad.std() < 1e-9, grad.std()  # fT/cm range, in T/m
