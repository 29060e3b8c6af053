"""`rtsource demo` runs headless and reports what the issue asks for."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_demo_runs_and_localises(tmp_path):
    env = dict(os.environ, RTSOURCE_CACHE=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "rtsource.cli", "demo", "--duration", "8", "--calibration", "4", "--json"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{") :])
    loop = summary["loop"]
    assert loop["samples_in"] == loop["samples_out"] > 4000 and loop["lost"] == 0
    assert summary["consumer"]["missing"] == 0
    for key in ("chunk_process_ms_p50", "chunk_process_ms_p99", "latency_ms_p50", "latency_ms_p99"):
        assert loop[key] > 0
    loc = summary["localisation"]
    assert len(loc["per_source"]) == 2
    assert loc["strongest"]["error_mm"] < 30, loc
    assert (tmp_path / "demo_bundle.npz").exists()
