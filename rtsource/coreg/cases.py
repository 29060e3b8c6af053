"""Coregistration cases with a known answer, written as lab files, and how well they are solved.

A *case* is the template head's standard electrodes, fiducials and scalp (head-shape) points
moved by a random rigid transform, with measurement noise and head-shape outliers, written as
a BIDS ``*_electrodes.tsv`` + ``*_coordsystem.json`` pair or an ASA ``.elc`` file. Reading it
back with :func:`~rtsource.coreg.register.run_coreg` and comparing the electrodes it puts on
the template with where they are gives the error a lab would see. Used by
``tests/test_coreg_accuracy.py`` and ``tools/coreg_accuracy.py``.

The truth is the template's standard electrodes on the coregistration scalp
(:attr:`~rtsource.anatomy.template.Template.fit_electrodes`, within 1.1 mm of MNE-Python's
fsaverage 10-05 positions), and head-shape points are drawn from that scalp above 2 cm below
the fiducials (where a digitiser reaches).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..geometry import Transform


@dataclass(frozen=True)
class CoregCase:
    """One simulated digitisation with its answer.

    Attributes
    ----------
    labels : tuple of str
        Electrode labels.
    truth_m : ndarray, shape (n_electrodes, 3)
        Where the electrodes are on the template (TEMPLATE frame, m).
    transform : Transform
        The true template -> digitiser transform.
    electrodes_m, fiducials_m, headshape_m : ndarray, shape (n, 3)
        What the digitiser measured (digitiser frame, m); fiducials NAS, LPA, RPA; the
        head-shape array may be empty.
    """

    labels: tuple[str, ...]
    truth_m: np.ndarray
    transform: Transform
    electrodes_m: np.ndarray
    fiducials_m: np.ndarray
    headshape_m: np.ndarray


def simulate_case(
    seed: int,
    labels: Sequence[str],
    *,
    noise_rms_mm: float = 2.0,
    n_headshape: int = 100,
    outlier_fraction: float = 0.05,
    max_rotation_deg: float = 30.0,
    max_translation_mm: float = 30.0,
    template=None,
) -> CoregCase:
    """A case (see module docstring).

    Parameters
    ----------
    seed : int
    labels : sequence of str
        Electrodes of the template to digitise.
    noise_rms_mm : float
        RMS length of the Gaussian displacement of every measured point (per axis
        ``noise_rms_mm / sqrt(3)``).
    n_headshape : int
        Head-shape points (0: electrodes and fiducials only).
    outlier_fraction : float
        Fraction of the head-shape points displaced 20-50 mm in a random direction.
    max_rotation_deg, max_translation_mm : float
        Size of the random rigid transform (rotation about a random axis).
    """
    from ..anatomy.template import load_template
    from ..geometry.head_frames import fiducials_m
    from ..sensors.montage import Montage

    template = template or load_template()
    rng = np.random.default_rng(seed)
    truth = Montage(template.fit_electrodes, None, "template").pick(list(labels)).electrodes.positions_m  # = standard_montage()
    axis = rng.normal(size=3)
    angle = np.radians(rng.uniform(0, max_rotation_deg))
    rot = _rotation(axis / np.linalg.norm(axis) * angle)
    direction = rng.normal(size=3)
    shift = direction / np.linalg.norm(direction) * rng.uniform(0, max_translation_mm * 1e-3)
    fids = np.array(fiducials_m(template.fiducials))
    scalp = template.fit_scalp.vertices_m
    candidates = scalp[scalp[:, 2] > fids[:, 2].min() - 0.02]
    hs = candidates[rng.choice(len(candidates), n_headshape, replace=False)] if n_headshape else np.zeros((0, 3))
    sigma = noise_rms_mm * 1e-3 / np.sqrt(3)

    def measure(p: np.ndarray, outliers: float) -> np.ndarray:
        q = p + rng.normal(scale=sigma, size=p.shape)
        k = int(round(outliers * len(p)))
        if k:
            idx = rng.choice(len(p), k, replace=False)
            d = rng.normal(size=(k, 3))
            q[idx] += d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(0.02, 0.05, (k, 1))
        return q @ rot.T + shift

    transform = Transform.from_rotation_translation("template", "unknown", rot, shift)
    return CoregCase(tuple(labels), truth, transform, measure(truth, 0.0), measure(fids, 0.0), measure(hs, outlier_fraction))


def _rotation(rotvec: np.ndarray) -> np.ndarray:
    from .icp import _rotation as rodrigues

    return rodrigues(rotvec)


def _rows(case: CoregCase) -> list[tuple[str, np.ndarray]]:
    rows = [(name, p) for name, p in zip(("NAS", "LPA", "RPA"), case.fiducials_m)]
    rows += list(zip(case.labels, case.electrodes_m))
    rows += [(f"hsp{k + 1:03d}", p) for k, p in enumerate(case.headshape_m)]
    return rows


def write_bids(case: CoregCase, folder: str | Path, subject: str = "01") -> Path:
    """``sub-XX_electrodes.tsv`` (electrodes and ``hspNNN`` head-shape rows, mm) and
    ``sub-XX_coordsystem.json`` (``Other`` system, fiducials as anatomical landmarks)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tsv = folder / f"sub-{subject}_electrodes.tsv"
    body = [f"{name}\t{x * 1e3:.3f}\t{y * 1e3:.3f}\t{z * 1e3:.3f}" for name, (x, y, z) in _rows(case)[3:]]
    tsv.write_text("name\tx\ty\tz\n" + "\n".join(body) + "\n", encoding="utf-8")
    doc = {
        "EEGCoordinateSystem": "Other",
        "EEGCoordinateUnits": "mm",
        "EEGCoordinateSystemDescription": "digitiser frame of a simulated session",
        "AnatomicalLandmarkCoordinates": {n: (p * 1e3).round(3).tolist() for n, p in zip(("NAS", "LPA", "RPA"), case.fiducials_m)},
        "AnatomicalLandmarkCoordinateSystem": "Other",
        "AnatomicalLandmarkCoordinateUnits": "mm",
    }
    (folder / f"sub-{subject}_coordsystem.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return tsv


def write_elc(case: CoregCase, path: str | Path) -> Path:
    """An ASA ``.elc`` file (mm) with fiducials, electrodes and ``hspNNN`` head-shape points."""
    path = Path(path)
    rows = _rows(case)
    lines = ["# ASA electrode file (simulated)", "ReferenceLabel\tavg", "UnitPosition\tmm", f"NumberPositions=\t{len(rows)}", "Positions"]
    lines += [f"{x * 1e3:.3f}\t{y * 1e3:.3f}\t{z * 1e3:.3f}" for _, (x, y, z) in rows]
    lines += ["Labels"] + [name for name, _ in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class CaseErrors:
    """Per-electrode errors of one solved case, mm.

    Attributes
    ----------
    final_mm : ndarray, shape (n_electrodes,)
        Distance between where coregistration put each electrode (projected onto the
        scalp) and where it is: the error a lab would see.
    registration_mm : ndarray, shape (n_electrodes,)
        Distance at each electrode between the fitted and the true transform (TRE).
    """

    final_mm: np.ndarray
    registration_mm: np.ndarray


def solve_case(case: CoregCase, path: str | Path, **coreg_kwargs) -> CaseErrors:
    """Coregister a written case with :func:`~rtsource.coreg.register.run_coreg`; its errors."""
    from .register import run_coreg

    result = run_coreg(path, **coreg_kwargs)
    got = result.montage.pick(list(case.labels)).electrodes.positions_m
    final = np.linalg.norm(got - case.truth_m, axis=1) * 1e3
    tre = np.linalg.norm(result.transform.apply_m(case.transform.apply_m(case.truth_m)) - case.truth_m, axis=1) * 1e3
    return CaseErrors(final, tre)


__all__ = ["CaseErrors", "CoregCase", "simulate_case", "solve_case", "write_bids", "write_elc"]
