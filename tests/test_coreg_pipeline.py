"""An electrode file in the config goes through coregistration into the bundle (and the CLI)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from rtsource.anatomy.template import load_template
from rtsource.build import build_bundle
from rtsource.config import load_config
from rtsource.errors import GeometryError
from rtsource.sensors.montage import CAP_64, standard_montage


def write_cap_csv(path, *, scale=1.0, seed=0):
    """The 64-channel cap and fiducials moved by a rigid transform, in mm, as a lab would export it."""
    rng = np.random.default_rng(seed)
    rot = Rotation.from_euler("xyz", rng.uniform(-20, 20, 3), degrees=True).as_matrix()
    shift = rng.uniform(-0.02, 0.02, 3)
    cap = standard_montage("standard_1005").pick(CAP_64)
    fids = load_template().fiducials
    labels = list(fids.labels) + list(CAP_64)
    pts = np.vstack([fids.positions_m, cap.electrodes.positions_m])
    centre = pts.mean(axis=0)
    moved = (scale * (pts - centre)) @ rot.T + centre + shift
    moved += rng.normal(scale=0.001, size=moved.shape)
    lines = ["label,x,y,z"] + [f"{lab},{x * 1e3:.2f},{y * 1e3:.2f},{z * 1e3:.2f}" for lab, (x, y, z) in zip(labels, moved)]
    path.write_text("\n".join(lines) + "\n")
    return cap.electrodes.positions_m


def config(tmp_path, extra=""):
    p = tmp_path / "lab.toml"
    p.write_text(
        '[sensors]\nmontage = "cap.csv"\n[noise_cov]\nsource = "ad_hoc"\n[stream]\nsfreq = 500.0\n'
        f'[bundle]\npath = "lab_bundle.npz"\n[coreg]\nqc_png = "qc.png"\nunit = "mm"\n{extra}'
    )
    return p


def test_electrode_file_is_coregistered_into_the_bundle(tmp_path):
    truth = write_cap_csv(tmp_path / "cap.csv")
    settings = load_config(config(tmp_path))
    bundle = build_bundle(settings, sfreq=500.0)
    err = np.linalg.norm(bundle.channel_positions_m - truth, axis=1) * 1e3
    assert np.median(err) < 3.0, err
    prov = bundle.provenance["forward"]["electrodes"]
    assert prov["montage"] == "cap.csv" and prov["qc"]["rms_mm"] < 5.0
    assert prov["transform"]["to"] == "template"
    assert (tmp_path / "qc.png").stat().st_size > 10_000


def test_bad_fit_is_refused_unless_allowed(tmp_path):
    write_cap_csv(tmp_path / "cap.csv", scale=1.35)  # a much bigger head than the template
    with pytest.raises(GeometryError, match="max_rms_mm"):
        build_bundle(load_config(config(tmp_path)), sfreq=500.0)
    assert (tmp_path / "qc.png").exists(), "the QC picture is written so the user can look at the failure"
    bundle = build_bundle(load_config(config(tmp_path, "allow_bad_fit = true\n")), sfreq=500.0)
    assert not bundle.provenance["forward"]["electrodes"]["qc"]["passed"]


def test_setup_and_coreg_commands(tmp_path):
    write_cap_csv(tmp_path / "cap.csv", seed=2)
    cfg = config(tmp_path)
    out = subprocess.run([sys.executable, "-m", "rtsource.cli", "setup", str(cfg)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "lab_bundle.npz").exists()
    # setup prints the coregistration's numbers next to the QC picture's path
    assert "distance to the scalp RMS" in out.stdout and " max " in out.stdout, out.stdout
    assert "fiducials vs template: NAS" in out.stdout and "rejected as outliers:" in out.stdout
    assert f"QC picture: {tmp_path / 'qc.png'}" in out.stdout and "PASSED" in out.stdout
    # a plain three-column head-shape file in mm (here: the cap's own positions, as a digitiser's head points)
    rows = [ln.split(",")[1:] for ln in (tmp_path / "cap.csv").read_text().splitlines()[4:]]
    (tmp_path / "headshape_mm.txt").write_text("\n".join(" ".join(r) for r in rows) + "\n")
    res = subprocess.run(
        [sys.executable, "-m", "rtsource.cli", "coreg", str(tmp_path / "cap.csv"), "--unit", "mm", "--out", str(tmp_path / "c.json"),
         "--headshape", str(tmp_path / "headshape_mm.txt"), "--headshape-unit", "mm"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["qc"]["rms_mm"] < 5.0 and report["transform"]["to"] == "template"
    assert sum(p["kind"] == "headshape" for p in report["qc"]["points"]) == len(rows) == 64
