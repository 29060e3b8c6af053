"""The command line is a thin, documented layer over the API: every option has a help text
that agrees with the code, and the commands reach the API functions."""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np

from rtsource.cli import build_parser

from .test_api import write_rest_brainvision


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _help(command: str, option: str) -> str:
    for action in _subcommands()[command]._actions:
        if option in action.option_strings or option == action.dest:
            return action.help
    raise AssertionError(f"rtsource {command} has no {option}")


def test_every_option_has_a_help_text():
    missing = [
        f"{name} {a.option_strings or a.dest}"
        for name, sub in _subcommands().items()
        for a in sub._actions
        if not isinstance(a, argparse._HelpAction) and not a.help
    ]
    assert not missing, f"options without help: {missing}"


def test_help_texts_agree_with_the_code():
    from rtsource.stream.loop import LoopOptions

    # 0 threads: StreamLoop.run uses all cores but one (LoopOptions' comment says why)
    assert LoopOptions().threads == 0 and "all cores but one" in _help("run", "--threads")
    proc = subprocess.run([sys.executable, "-m", "rtsource.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert "simulated EEG/MEG stream" in proc.stdout
    assert "[gui]" in proc.stdout  # view names its extra


def test_the_viewer_module_entry_point_is_the_view_command():
    proc = subprocess.run([sys.executable, "-m", "rtsource.display.app", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: rtsource view")
    assert "--screenshot" in proc.stdout


def test_setup_with_a_calibration_file(tmp_path):
    from rtsource.bundle import load_bundle

    path, _ = write_rest_brainvision(tmp_path)
    cfg = tmp_path / "lab.toml"
    cfg.write_text('[bundle]\npath = "lab.npz"\n')
    proc = subprocess.run([sys.executable, "-m", "rtsource.cli", "setup", str(cfg), "--calibration", str(path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "noise calibration" in proc.stdout and "bundle: dSPM" in proc.stdout
    bundle = load_bundle(tmp_path / "lab.npz")
    assert bundle.sfreq == 250.0 and bundle.provenance["noise_cov"]["n_samples"] == 1000
    assert np.all(np.isfinite(bundle.kernel))
