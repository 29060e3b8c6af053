"""How well a coregistration fits: distances to the scalp, outliers, the refusal test, the result.

Quality control: the signed distance of every electrode and headshape point to the scalp
after alignment (before projection; + outside). ``rms_mm`` is over the points that are not
outliers (by the same Tukey rule); ``rms_all_mm`` and ``max_mm`` over all. The fit is
refused (:class:`~rtsource.errors.GeometryError`) when ``rms_mm > max_rms_mm`` or more than
``max_outlier_fraction`` of the points are outliers, unless ``allow_bad_fit`` is set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..geometry import Transform
from ..geometry.head_frames import FIDUCIAL_NAMES
from ..sensors.montage import Montage
from ..sensors.readers import Digitization, ReadReport
from .icp import SurfaceProjector, tukey_weights

#: Default refusal threshold on the RMS distance of the (inlier) points to the scalp, mm.
#: Measured on the template (ICP, rigid): montages digitised on other heads (MNE-Python's
#: colin27, MGH60/70, EGI GSN 65/257) land at 1.6-3.1 mm; a head 14% smaller than the
#: template (GSN 129) at 9.3 mm (1.4 mm with scale=True); an idealised BrainVision sphere
#: at 9.2 mm (6.1 mm scaled). Units or frames gone wrong give centimetres.
DEFAULT_MAX_RMS_MM = 5.0
#: Default refusal threshold on the fraction of points the robust fit rejects.
DEFAULT_MAX_OUTLIER_FRACTION = 0.2


@dataclass(frozen=True)
class CoregQC:
    """How well the aligned points sit on the scalp (distances in mm, + outside).

    Attributes
    ----------
    method, initial : str
        The method and how the initial alignment was made.
    scale : float
        Uniform scale of the transform (1 for rigid).
    rotation_deg, translation_mm : float
        Size of the rotation and of the translation (at the origin) of the transform.
    iterations : int
    converged : bool
        ICP iterations and whether it converged (0 / True without ICP).
    point_kinds, point_labels : tuple of str
        ``"electrode"`` or ``"headshape"`` and the label ("" for headshape) per point.
    distances_mm : ndarray, shape (n,)
        Signed distance of each point to the scalp after alignment, before projection.
    outliers : ndarray of bool, shape (n,)
        Points beyond Tukey's cutoff (:func:`~rtsource.coreg.icp.tukey_weights`).
    rms_mm : float
        RMS distance over the points that are not outliers: the number tested.
    rms_all_mm, max_mm, median_mm : float
        Over all points (``max`` and ``median`` of the absolute distance).
    fiducial_errors_mm : tuple of (str, float)
        Distance of each aligned fiducial from the template's.
    max_rms_mm, max_outlier_fraction : float
        The thresholds.
    passed : bool
        ``rms_mm <= max_rms_mm`` and the outlier fraction <= ``max_outlier_fraction``.
    """

    method: str
    initial: str
    scale: float
    rotation_deg: float
    translation_mm: float
    iterations: int
    converged: bool
    point_kinds: tuple[str, ...]
    point_labels: tuple[str, ...]
    distances_mm: np.ndarray
    outliers: np.ndarray
    rms_mm: float
    rms_all_mm: float
    max_mm: float
    median_mm: float
    fiducial_errors_mm: tuple[tuple[str, float], ...]
    max_rms_mm: float
    max_outlier_fraction: float
    passed: bool

    @property
    def n_points(self) -> int:
        return len(self.distances_mm)

    @property
    def outlier_fraction(self) -> float:
        return float(self.outliers.mean()) if len(self.outliers) else 0.0

    def outlier_names(self) -> list[str]:
        """Labels of the outlying points (``headshape #k`` for unlabelled ones)."""
        out = []
        k_hs = 0
        for kind, label, bad in zip(self.point_kinds, self.point_labels, self.outliers):
            if kind == "headshape":
                k_hs += 1
            if bad:
                out.append(label if label else f"headshape #{k_hs}")
        return out

    def point_names(self) -> list[str]:
        """A name per point: the electrode's label, ``headshape #k`` for headshape points."""
        out, k_hs = [], 0
        for kind, label in zip(self.point_kinds, self.point_labels):
            if kind == "headshape":
                k_hs += 1
            out.append(label if label else f"headshape #{k_hs}")
        return out

    def largest(self, n: int = 5) -> list[tuple[str, float]]:
        """The ``n`` points farthest from the scalp: (name, signed distance in mm)."""
        order = np.argsort(-np.abs(self.distances_mm))[:n]
        names = self.point_names()
        return [(names[i], float(self.distances_mm[i])) for i in order]

    def as_dict(self) -> dict:
        """JSON-ready summary (per-point distances included)."""
        return {
            "method": self.method,
            "initial": self.initial,
            "scale": self.scale,
            "rotation_deg": self.rotation_deg,
            "translation_mm": self.translation_mm,
            "iterations": self.iterations,
            "converged": self.converged,
            "n_points": self.n_points,
            "rms_mm": self.rms_mm,
            "rms_all_mm": self.rms_all_mm,
            "max_mm": self.max_mm,
            "median_mm": self.median_mm,
            "outliers": self.outlier_names(),
            "fiducial_errors_mm": dict(self.fiducial_errors_mm),
            "max_rms_mm": self.max_rms_mm,
            "max_outlier_fraction": self.max_outlier_fraction,
            "passed": self.passed,
            "points": [
                {"kind": k, "label": lab, "distance_mm": round(float(d), 3), "outlier": bool(o)}
                for k, lab, d, o in zip(self.point_kinds, self.point_labels, self.distances_mm, self.outliers)
            ],
        }

    def summary(self) -> str:
        """A few lines for the CLI and logs."""
        n_el = self.point_kinds.count("electrode")
        n_hs = self.point_kinds.count("headshape")
        lines = [
            f"coregistration ({self.method}; start: {self.initial})",
            f"  points: {n_el} electrodes, {n_hs} headshape; distance to scalp RMS {self.rms_mm:.2f} mm "
            f"(all points {self.rms_all_mm:.2f} mm), median {self.median_mm:.2f} mm, max {self.max_mm:.2f} mm",
            f"  transform: rotation {self.rotation_deg:.1f} deg, translation {self.translation_mm:.1f} mm, "
            f"scale {self.scale:.4f}" + (f"; ICP {self.iterations} iterations" + ("" if self.converged else " (NOT converged)") if self.iterations else ""),
        ]
        if self.fiducial_errors_mm:
            lines.append("  fiducials vs the head model's: " + ", ".join(f"{n} {e:.1f} mm" for n, e in self.fiducial_errors_mm))
        worst = self.largest(5)
        if worst:
            lines.append("  largest distances: " + ", ".join(f"{n} {d:+.1f} mm" for n, d in worst))
        names = self.outlier_names()
        if names:
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            lines.append(f"  outliers ({len(names)}, {self.outlier_fraction:.0%}): {shown}")
        verdict = "PASSED" if self.passed else "FAILED"
        lines.append(
            f"  {verdict}: RMS {self.rms_mm:.2f} mm vs max_rms_mm {self.max_rms_mm:g}; outliers "
            f"{self.outlier_fraction:.0%} vs max {self.max_outlier_fraction:.0%}"
        )
        return "\n".join(lines)


@dataclass(frozen=True)
class CoregResult:
    """Everything coregistration produced.

    Attributes
    ----------
    transform : Transform
        From the digitisation's frame to TEMPLATE (rigid, or with a uniform scale).
    montage : Montage
        Electrodes in TEMPLATE, projected onto the scalp (when ``project``), with the
        aligned fiducials; labels as in the file (``montage.pick(channels, aliases)``).
    aligned : Digitization
        Every point set moved to TEMPLATE, not projected.
    qc : CoregQC
    reports : tuple of ReadReport
        How the input files were read.
    projection_mm : ndarray, shape (n_electrodes,)
        How far each electrode moved when projected onto the scalp.
    qc_png : str or None
        The QC picture written, if any.
    """

    transform: Transform
    montage: Montage
    aligned: Digitization
    qc: CoregQC
    reports: tuple[ReadReport, ...] = ()
    projection_mm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    qc_png: str | None = None

    def summary(self) -> str:
        head = [r.describe() for r in self.reports]
        tail = [f"QC picture: {self.qc_png}"] if self.qc_png else []
        return "\n".join(head + [self.qc.summary()] + tail)

    def to_dict(self) -> dict:
        """JSON-ready: transform, electrode positions (TEMPLATE, m), QC, how files were read."""
        return {
            "transform": {
                "from": self.transform.from_frame.value,
                "to": self.transform.to_frame.value,
                "unit": "m",
                "matrix": self.transform.matrix.tolist(),
            },
            "electrodes": {
                "frame": self.montage.frame.value,
                "unit": "m",
                "labels": list(self.montage.labels),
                "positions": self.montage.electrodes.positions_m.tolist(),
            },
            "qc": self.qc.as_dict(),
            "reports": [r.describe() for r in self.reports],
            "qc_png": self.qc_png,
        }

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (provenance for the bundle, or a record of the fit)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path


def _rotation_angle_deg(m: np.ndarray) -> float:
    r = m[:3, :3] / np.cbrt(np.linalg.det(m[:3, :3]))
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))))


def measure_fit(
    aligned: Digitization,
    template,
    transform: Transform,
    *,
    method: str,
    initial: str,
    iterations: int,
    converged: bool,
    max_rms_mm: float = DEFAULT_MAX_RMS_MM,
    max_outlier_fraction: float = DEFAULT_MAX_OUTLIER_FRACTION,
) -> CoregQC:
    """The QC of an alignment: signed distances of the points to the scalp, and the verdict.

    Parameters
    ----------
    aligned : Digitization
        The digitisation moved into the template frame (before projection).
    template : Template
        The head model (its scalp and fiducials).
    transform : Transform
        The alignment (its scale, rotation and translation are reported).
    method, initial : str
        How the alignment was made (reported).
    iterations : int
    converged : bool
        Of the ICP (0 / True without ICP).
    max_rms_mm, max_outlier_fraction : float
        The refusal thresholds (see module docstring).

    Returns
    -------
    CoregQC
        Points ordered electrodes first, then headshape points.
    """
    kinds: list[str] = []
    labels: list[str] = []
    qc_pts = []
    for kind, pts in (("electrode", aligned.electrodes), ("headshape", aligned.headshape)):
        if pts is not None and len(pts):
            kinds += [kind] * len(pts)
            labels += list(pts.labels) if pts.labels else [""] * len(pts)
            qc_pts.append(pts.positions_m)
    qc_m = np.concatenate(qc_pts)
    _, _, dist = SurfaceProjector(template.fit_scalp)(qc_m)
    w, _ = tukey_weights(dist)
    outliers = w == 0
    d_mm = dist * 1e3
    inl = d_mm[~outliers]
    rms = float(np.sqrt(np.mean(inl**2))) if len(inl) else float("inf")
    fid_err: tuple[tuple[str, float], ...] = ()
    if aligned.has_fiducials and template.fiducials is not None:  # a subject's head may have none
        mine = aligned.fiducials.select(list(FIDUCIAL_NAMES)).positions_m
        theirs = template.fiducials.select(list(FIDUCIAL_NAMES)).positions_m
        fid_err = tuple((n, float(e)) for n, e in zip(FIDUCIAL_NAMES, np.linalg.norm(mine - theirs, axis=1) * 1e3))
    passed = rms <= max_rms_mm and outliers.mean() <= max_outlier_fraction
    mat = transform.matrix
    return CoregQC(
        method=method,
        initial=initial,
        scale=float(np.cbrt(np.linalg.det(mat[:3, :3]))),
        rotation_deg=_rotation_angle_deg(mat),
        translation_mm=float(np.linalg.norm(mat[:3, 3]) * 1e3),
        iterations=iterations,
        converged=converged,
        point_kinds=tuple(kinds),
        point_labels=tuple(labels),
        distances_mm=d_mm,
        outliers=outliers,
        rms_mm=rms,
        rms_all_mm=float(np.sqrt(np.mean(d_mm**2))),
        max_mm=float(np.abs(d_mm).max()),
        median_mm=float(np.median(np.abs(d_mm))),
        fiducial_errors_mm=fid_err,
        max_rms_mm=float(max_rms_mm),
        max_outlier_fraction=float(max_outlier_fraction),
        passed=bool(passed),
    )


__all__ = ["DEFAULT_MAX_OUTLIER_FRACTION", "DEFAULT_MAX_RMS_MM", "CoregQC", "CoregResult", "measure_fit"]
