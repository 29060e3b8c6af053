"""`rtsource demo` runs headless and reports what the issue asks for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid


def unique_config(tmp_path):
    """Own stream names, so a demo running elsewhere on this machine cannot interfere."""
    tag = uuid.uuid4().hex[:8]
    path = tmp_path / "demo.toml"
    path.write_text(
        f'[simulate]\nstream_name = "sim-{tag}"\nsource_id = "sim-{tag}-0"\n'
        f'[stream]\nname = "sim-{tag}"\n[output]\nname = "src-{tag}"\n'
    )
    return str(path)


def test_demo_runs_and_localises(tmp_path):
    env = dict(os.environ, RTSOURCE_CACHE=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "rtsource.cli", "demo", "--config", unique_config(tmp_path), "--duration", "8", "--calibration", "4", "--json"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{") :])
    loop = summary["loop"]
    assert loop["samples_in"] == loop["samples_out"] > 4000 and loop["lost"] == 0
    # the consumer's own count against the loop's (counted where pushed): a real comparison
    assert summary["consumer"]["missing"] == 0 and summary["consumer"]["samples_received"] == loop["samples_out"]
    assert summary["bad_channels"] == [], summary["events"]
    for key in ("chunk_process_ms_p50", "chunk_process_ms_p99", "latency_ms_p50", "latency_ms_p99"):
        assert loop[key] > 0
    loc = summary["localisation"]
    assert len(loc["per_source"]) == 2
    assert loc["strongest"]["error_mm"] < 30, loc
    assert (tmp_path / "demo_bundle.npz").exists()


def test_meg_demo_runs_and_localises(tmp_path):
    """MEG end to end: simulated 306-channel stream (T, T/m) -> bundle -> loop -> summary."""
    env = dict(os.environ, RTSOURCE_CACHE=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "rtsource.cli", "demo", "--config", unique_config(tmp_path), "--modality", "meg", "--duration", "8", "--calibration", "4", "--json"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert "306 ch" in summary["bundle"] and "no EEG reference" in summary["bundle"]
    assert summary["loop"]["lost"] == 0 and summary["consumer"]["missing"] == 0
    assert summary["loop"]["samples_out"] == summary["consumer"]["samples_received"] > 0
    assert summary["bad_channels"] == [] and "bad_channel" not in summary["events"], summary["events"]
    assert summary["localisation"]["strongest"]["error_mm"] < 30, summary["localisation"]
    from rtsource.bundle import load_bundle

    assert load_bundle(tmp_path / "demo_bundle.npz").reference == "none"  # no EEG to re-reference


def test_eeg_meg_demo_with_auto_swap_finds_no_bad_channel(tmp_path):
    """EEG (V) and MEG (T, T/m) in one stream, the detector on and auto_swap: clean data, no rebuild."""
    env = dict(os.environ, RTSOURCE_CACHE=str(tmp_path))
    config = unique_config(tmp_path)
    with open(config, "a") as f:
        f.write("[badchannels]\ndetect = true\nauto_swap = true\n")
    proc = subprocess.run(
        [sys.executable, "-m", "rtsource.cli", "demo", "--config", config, "--modality", "eeg+meg", "--duration", "10", "--calibration", "4", "--json"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert "ref average" in summary["bundle"]
    assert summary["bad_channels"] == [] and summary["loop"]["operator_swaps"] == 0, summary["events"]
    assert summary["loop"]["lost"] == 0 and summary["consumer"]["missing"] == 0
