"""ASR on the simulator with blinks, saccades, heartbeat and muscle bursts, against the
artifact-free ground truth and against meegkit's ASR (optional peer)."""

from __future__ import annotations

import numpy as np
import pytest

from rtsource.artifacts import AsrProcessor, calibrate_asr
from rtsource.simulation_artifacts import KINDS

from . import sim_eval as se

BLINKS, EMG = KINDS.index("blinks"), KINDS.index("emg")


@pytest.fixture(scope="module")
def sim():
    # calibration on the first minute, which has artifacts too (as a real rest recording)
    return se.simulate(("blinks", "saccades", "ecg", "emg"), calib_s=60.0, test_s=60.0)


@pytest.fixture(scope="module")
def cal(sim):
    return calibrate_asr(sim.calib, sim.sfreq, sim.ch_names, cutoff=20.0, source="simulator")


@pytest.fixture(scope="module")
def ours(sim, cal):
    p = AsrProcessor(cal, max_chunk=10)
    y = se.run_processor(p, sim.raw)
    pc = AsrProcessor(cal, max_chunk=10)
    yc = se.run_processor(pc, sim.clean)
    return p, y, yc, len(y) - p.delay_samples


def test_calibration_drops_artifact_windows(cal):
    assert 0.5 * cal.n_windows_total < cal.n_windows_used < cal.n_windows_total


def test_asr_removes_blink_and_muscle_power(sim, ours):
    p, y, _, valid = ours
    for kind, floor in ((BLINKS, 0.5), (EMG, 0.5)):
        m = se.metrics(sim, y, kind, valid)
        assert m["removed"] > floor, (KINDS[kind], m)
        # the occipital alpha is untouched by the repair
        assert m["occipital 8-12"][0] > 0.95
    m = se.metrics(sim, y, EMG, valid)
    assert m["frontal 4-8"][0] > m["frontal 4-8"][1] + 0.3  # muscle bursts no longer drive frontal theta
    st = p.stats()
    assert 0 < st.fraction_samples_repaired < 0.5 and len(st.episodes) > 5


def test_clean_data_changed_by_less_than_one_percent(sim, ours):
    _, _, yc, valid = ours
    assert se.distortion(sim.clean[:valid], yc[:valid]) < 0.01


def test_causal_variant_repairs_less_but_never_damages(sim, cal):
    p = AsrProcessor(cal, max_chunk=10, lookahead_s=0.0)
    assert p.latency_s == 0.0
    y = se.run_processor(p, sim.raw)
    assert se.metrics(sim, y, BLINKS)["removed"] > 0.05
    yc = se.run_processor(AsrProcessor(cal, max_chunk=10, lookahead_s=0.0), sim.clean)
    assert se.distortion(sim.clean, yc) < 0.01


@pytest.mark.peers
def test_against_meegkit_asr(sim, ours):
    asr_mod = pytest.importorskip("meegkit.asr", reason="meegkit not installed (pip install meegkit; the 'peers' extra)")
    _, y, yc, valid = ours

    def run(x):
        a = asr_mod.ASR(sfreq=sim.sfreq, cutoff=20, method="euclid")
        a.fit(sim.calib.T)
        block = int(0.5 * sim.sfreq)  # its intended block-wise use; 10-sample chunks take ~6 ms each
        return np.vstack([a.transform(x[s : s + block].T).T for s in range(0, len(x), block)])

    peer, peer_clean = run(sim.raw), run(sim.clean)
    for kind in (BLINKS, EMG):
        ours_removed = se.metrics(sim, y, kind, valid)["removed"]
        peer_removed = se.metrics(sim, peer, kind, valid)["removed"]
        assert ours_removed >= 0.9 * peer_removed, (KINDS[kind], ours_removed, peer_removed)
    assert se.distortion(sim.clean[:valid], yc[:valid]) <= se.distortion(sim.clean[:valid], peer_clean[:valid]) + 1e-9


@pytest.mark.peers
def test_against_asrpy(sim, ours):
    asrpy = pytest.importorskip("asrpy.asr", reason="asrpy not installed (pip install asrpy)")
    try:
        m, t = asrpy.asr_calibrate(sim.calib.T, sim.sfreq, cutoff=20)
    except TypeError as e:  # asrpy 0.0.8's fit_eeg_distribution with NumPy 2
        pytest.skip(f"asrpy cannot calibrate under NumPy {np.__version__}: {e}")
    _, y, yc, valid = ours
    look = int(0.25 * sim.sfreq)

    def run(x):
        out = asrpy.asr_process(np.hstack([x.T, np.zeros((x.shape[1], look))]), sim.sfreq, m, t, lookahead=0.25)
        return out[:, look:].T

    peer, peer_clean = run(sim.raw), run(sim.clean)
    for kind in (BLINKS, EMG):
        assert se.metrics(sim, y, kind, valid)["removed"] >= 0.9 * se.metrics(sim, peer, kind, valid)["removed"]
    assert se.distortion(sim.clean[:valid], yc[:valid]) <= se.distortion(sim.clean[:valid], peer_clean[:valid]) + 1e-9
