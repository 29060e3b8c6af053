"""A short soak (the full one is tools/soak.py): producer, loop and consumer in three processes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SOAK = Path(__file__).resolve().parents[1] / "tools" / "soak.py"


def test_short_soak_loses_nothing():
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    report = soak.soak(minutes=0.4, n_chan=64, n_src=2000, sfreq=1000.0, interval=8.0, progress=lambda row: None)
    print({k: v for k, v in report.items() if k != "loop_stdout_tail"})
    assert report["pushed"] == 24000
    assert report["lost"] == 0 and report["received"] == report["pushed"]
    assert report["out_of_order_chunks"] == 0
    assert all(r["gaps"] == 0 and r["loop_lost"] == 0 for r in report["intervals"] if r["gaps"] is not None)
    assert "lost                         0" in report["loop_stdout_tail"]
