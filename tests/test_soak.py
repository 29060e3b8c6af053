"""A short soak (the full one is tools/soak.py): producer, loop and consumer in three processes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SOAK = Path(__file__).resolve().parents[1] / "tools" / "soak.py"


def test_short_soak_loses_nothing():
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    # the first report (the memory baseline) comes after 10 s: LSL's sample pool has grown to the
    # consumers' usual lag by then (bounded by [output] max_buffered_s); growth after it is a leak
    report = soak.soak(minutes=0.5, n_chan=64, n_src=2000, sfreq=1000.0, interval=10.0, progress=lambda row: None)
    print({k: v for k, v in report.items() if k != "loop_stdout_tail"})
    assert report["failures"] == [], report["failures"]
    assert report["pushed"] == 30000
    assert report["lost"] == 0 and report["received"] == report["pushed"]
    assert report["missing"] == report["duplicates"] == report["reordered"] == report["bad_timestamps"] == 0
    assert report["value_mismatches"] == 0 and report["values_checked"] >= 30000 * 64
    assert report["out_of_order_chunks"] == 0
    c = report["loop_counters"]  # counted by the loop where samples are pulled / pushed
    assert c["samples_in"] == c["samples_out"] == 30000 and c["lost"] == 0 and c["bad_channels"] == 0
    assert all(r["gaps"] == 0 and r["loop_lost"] == 0 for r in report["intervals"] if r["gaps"] is not None)
    assert "lost                         0" in report["loop_stdout_tail"]
    assert report["memory_growth_mb"] < 5.0


def test_checker_catches_loss_duplicates_and_wrong_values():
    """The soak's consumer-side checks can fail: feed them a stream with faults."""
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    import numpy as np

    from tests.conftest import make_bundle

    bundle = make_bundle(n_chan=8, n_src=40, n_orient=3)
    block = (np.random.default_rng(0).normal(size=(100, 8)) * 10).astype(np.float32)
    t0, fs = 12.5, 1000.0
    checker = soak.OutputChecker(bundle, block, t0, fs, n_watch=5)

    def chunk(ks):
        ks = np.asarray(ks)
        y = (block[ks % 100].astype(np.float64) * 1e-6) @ bundle.kernel.T
        y = np.sqrt((y.reshape(len(y), -1, 3) ** 2).sum(axis=2)) / bundle.noise_norm
        return y.astype(np.float32), t0 + ks / fs

    checker.check(*chunk(range(0, 10)))
    assert (checker.missing, checker.duplicates, checker.value_mismatches) == (0, 0, 0)
    checker.check(*chunk(range(13, 20)))  # 3 lost
    checker.check(*chunk([19, 20]))  # a repeat
    data, ts = chunk(range(21, 25))
    data[2, checker.watch[0]] *= 1.01  # a wrong value in a watched source
    checker.check(data, ts)
    assert checker.missing == 3 and checker.duplicates == 1 and checker.value_mismatches == 1 and checker.next_k == 25


def test_events_soak_configuration_is_valid(tmp_path):
    """tools/soak.py --events: its loop configuration loads (68 ROIs, epochs, 5 measures x 2 bands).

    The events path itself (markers before and after their data, 68 ROIs, 22,780-channel
    connectivity rows over LSL) is tested in tests/stream/test_events_e2e.py.
    """
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    from rtsource.config import load_config

    path = tmp_path / "soak.toml"
    path.write_text(soak.events_config("soak-eeg", 1000))
    s = load_config(path)
    assert len(s.roi) == 68 and s.rois.sources_output and s.events.stream == "soak-eeg-markers"
    assert len(s.connectivity.measures) * len(s.connectivity.bands) * 68 * 67 // 2 == 22780
