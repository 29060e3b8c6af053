"""MEG coils: the integration points of each coil type, and per-type tables.

A MEG channel measures the magnetic flux through one or more pick-up loops. Numerically it is
a set of *integration points* (position r_i, unit normal n_i, weight w_i) given in the coil's
own frame and placed by the channel's position and rotation; the signal is

    s = sum_i w_i B(r_i) . n_i

(Hamalainen et al. 1993, Rev Mod Phys 65:413, sec. IV; the same discretisation MNE-Python's
``coil_def.dat`` uses). Any MEG forward model (Sarvas sphere, BEM) only has to give B.n at the
points; :meth:`~.array.MegArray.channel_signals` applies the weights.

Coil types
----------
The coil frame has its z axis along the coil normal (pointing away from the head) and, for a
planar gradiometer, its x axis along the measured gradient. Three accuracy levels are
defined (``"normal"`` is the default, as in MNE-Python):

============  =====  =====================================================================
type          unit   integration points (coil frame, metres)
============  =====  =====================================================================
mag           T      square loop of side 25.8 mm (Vectorview-like). point: 1 point at the
                     centre, w = 1. normal: 2x2 Gauss-Legendre points (+-7.45 mm, +-7.45 mm),
                     w = 1/4 (exact for a field quadratic over the loop). accurate: 3x3
                     Gauss-Legendre points with product weights.
planar_grad   T/m    baseline b = 16.8 mm along x. point and normal: 2 points at
                     x = +-8.4 mm, w = +-1/b (the reference's definition; the difference
                     quotient of B.n along x). accurate: each lobe a rectangle of
                     8.4 mm (x) by 26.4 mm (y) centred at x = +-8.4 mm, 2x2
                     Gauss-Legendre points per lobe, w = +-1/(4 b).
axial_grad    T      baseline 50 mm along z, loop radius 9 mm. point: 2 points on the axis,
                     w = +1 at z = 0 and -1 at z = 0.05 m. normal: 4 points at
                     (+-4.5 mm, +-4.5 mm) per loop (radius R/sqrt(2): exact for quadratics
                     over the disk), w = +-1/4. accurate: Radon's 7-point degree-5 disk rule
                     per loop (centre 1/4, six points at radius sqrt(2/3) R with 1/8).
eeg           V      one point, w = 1 (an electrode: the "field" is the potential).
============  =====  =====================================================================

These are generic coils, not a vendor's; the coils of real systems (Vectorview/TRIUX, CTF,
KIT/Ricoh, OPMs, ...) are in :mod:`.vendor_coils`, selected per channel by a
:class:`~.array.MegArray`'s ``coil_types``. MNE-Python's Vectorview definitions differ: its
"normal" planar gradiometer has 4 points (+-8.4 mm, +-6.7 mm) 0.3 mm above the coil, its T3
magnetometer a 21 mm loop; against them our "normal" channels differ by up to ~6 %
(gradiometers) and ~1.5 % (magnetometers) for the closest sources, while point
magnetometers agree to round-off (tests/forward/test_meg_sphere.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from ...arrays import frozen as _ro
from ...errors import ChannelError

#: Coil types and the unit of their signal.
COIL_TYPES: dict[str, str] = {"mag": "T", "planar_grad": "T/m", "axial_grad": "T", "eeg": "V"}
#: Integration accuracies, coarse to fine.
ACCURACIES = ("point", "normal", "accurate")
#: Groups the inverse whitens separately (MNE-Python's channel types): axial gradiometers
#: measure T like magnetometers and are grouped with them, as MNE does for CTF systems.
WHITENING_GROUP = {"mag": "mag", "axial_grad": "mag", "planar_grad": "grad", "eeg": "eeg"}
#: Channel types written into LSL stream metadata (``type`` of each channel).
LSL_TYPE = {"mag": "MAG", "axial_grad": "MAG", "planar_grad": "GRAD", "eeg": "EEG"}
#: Noise standard deviation per whitening group for a diagonal ("ad hoc") covariance, SI
#: units: MNE-Python's ``make_ad_hoc_cov`` defaults (0.2 uV, 20 fT, 5 fT/cm).
AD_HOC_NOISE_STD = {"eeg": 0.2e-6, "mag": 20e-15, "grad": 5e-13}

# Coil geometry (metres). The magnetometer loop is Vectorview-like (25.8 mm square), the
# planar gradiometer the reference's 16.8 mm baseline with Vectorview-like lobes (8.4 x 26.4 mm),
# the axial gradiometer CTF-like (50 mm baseline, 9 mm loop radius).
MAG_SIDE_M = 0.0258
PLANAR_BASELINE_M = 0.0168
PLANAR_LOBE_M = (0.0084, 0.0264)  # width (along the gradient) and height of one lobe
AXIAL_BASELINE_M = 0.050
AXIAL_RADIUS_M = 0.009


@dataclass(frozen=True)
class CoilDef:
    """A coil type's integration points in its own frame.

    Attributes
    ----------
    kind : str
        ``"mag"``, ``"planar_grad"``, ``"axial_grad"`` or ``"eeg"``.
    accuracy : str
        ``"point"``, ``"normal"`` or ``"accurate"``.
    unit : str
        Unit of the channel signal (``"T"``, ``"T/m"``, ``"V"``).
    points_m : ndarray, shape (k, 3)
        Integration points in the coil frame, metres (z along the coil normal).
    normals : ndarray, shape (k, 3)
        Unit normals of the points in the coil frame.
    weights : ndarray, shape (k,)
        Weights; the signal is ``sum_i w_i B(r_i).n_i`` (1/m for planar gradiometers).
    description : str
        One line for reports.
    """

    kind: str
    accuracy: str
    unit: str
    points_m: np.ndarray
    normals: np.ndarray
    weights: np.ndarray
    description: str


def _gauss_rect(width: float, height: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n x n Gauss-Legendre points and weights (summing to 1) over a centred rectangle."""
    x, w = np.polynomial.legendre.leggauss(n)
    xx, yy = np.meshgrid(x * width / 2.0, x * height / 2.0, indexing="ij")
    ww = np.outer(w / 2.0, w / 2.0)
    return np.c_[xx.ravel(), yy.ravel(), np.zeros(n * n)], ww.ravel()


def _disk_rule(radius: float, accuracy: str) -> tuple[np.ndarray, np.ndarray]:
    """Cubature points and weights (summing to 1) over a disk in the z = 0 plane."""
    if accuracy == "point":
        return np.zeros((1, 3)), np.ones(1)
    if accuracy == "normal":
        # four points at radius R/sqrt(2) on the diagonals: exact for quadratics (mean r^2 = R^2/2)
        h = radius / 2.0
        pts = np.array([[h, h, 0], [-h, h, 0], [-h, -h, 0], [h, -h, 0]], dtype=float)
        return pts, np.full(4, 0.25)
    # Radon's 7-point rule, degree 5 (Stroud 1971, S2:5-1): centre 1/4, six points at
    # radius sqrt(2/3) R, 60 degrees apart, 1/8 each.
    ang = np.arange(6) * np.pi / 3.0
    rr = math.sqrt(2.0 / 3.0) * radius
    pts = np.vstack([[0.0, 0.0, 0.0], np.c_[rr * np.cos(ang), rr * np.sin(ang), np.zeros(6)]])
    return pts, np.r_[0.25, np.full(6, 0.125)]


@lru_cache(maxsize=None)
def coil_definition(kind: str, accuracy: str = "normal") -> CoilDef:
    """The integration points of a coil type (see the module docstring for the table).

    Parameters
    ----------
    kind : {"mag", "planar_grad", "axial_grad", "eeg"}
    accuracy : {"point", "normal", "accurate"}

    Returns
    -------
    CoilDef

    Raises
    ------
    ChannelError
        Unknown ``kind`` or ``accuracy``.
    """
    if kind not in COIL_TYPES:
        raise ChannelError(f"coil type {kind!r} is not known; use one of {', '.join(COIL_TYPES)}")
    if accuracy not in ACCURACIES:
        raise ChannelError(f"coil accuracy {accuracy!r} is not known; use one of {', '.join(ACCURACIES)}")
    z = np.array([0.0, 0.0, 1.0])
    if kind == "eeg":
        pts, w, desc = np.zeros((1, 3)), np.ones(1), "EEG electrode, 1 point"
    elif kind == "mag":
        if accuracy == "point":
            pts, w = np.zeros((1, 3)), np.ones(1)
        else:
            pts, w = _gauss_rect(MAG_SIDE_M, MAG_SIDE_M, 2 if accuracy == "normal" else 3)
        desc = f"magnetometer, {MAG_SIDE_M * 1e3:.1f} mm square loop, {len(w)} points"
    elif kind == "planar_grad":
        b = PLANAR_BASELINE_M
        if accuracy in ("point", "normal"):
            pts = np.array([[b / 2, 0, 0], [-b / 2, 0, 0]], dtype=float)
            w = np.array([1.0 / b, -1.0 / b])
        else:
            lobe, lw = _gauss_rect(PLANAR_LOBE_M[0], PLANAR_LOBE_M[1], 2)
            pts = np.vstack([lobe + [b / 2, 0, 0], lobe + [-b / 2, 0, 0]])
            w = np.r_[lw / b, -lw / b]
        desc = f"planar gradiometer, baseline {b * 1e3:.1f} mm, {len(w)} points"
    else:  # axial_grad
        disk, dw = _disk_rule(AXIAL_RADIUS_M, accuracy)
        far = disk + [0.0, 0.0, AXIAL_BASELINE_M]
        pts = np.vstack([disk, far])
        w = np.r_[dw, -dw]
        desc = (
            f"axial gradiometer, baseline {AXIAL_BASELINE_M * 1e3:.0f} mm, loop radius "
            f"{AXIAL_RADIUS_M * 1e3:.0f} mm, {len(w)} points"
        )
    normals = np.tile(z, (len(w), 1))
    return CoilDef(kind, accuracy, COIL_TYPES[kind], _ro(pts), _ro(normals), _ro(w), desc)


def ad_hoc_noise_std(groups: Sequence[str]) -> np.ndarray:
    """Noise standard deviation per channel (SI) for a diagonal covariance, by whitening group.

    Parameters
    ----------
    groups : sequence of {"eeg", "mag", "grad"}
        E.g. ``MegArray.whitening_groups``.

    Returns
    -------
    ndarray, shape (n_channels,)
        From :data:`AD_HOC_NOISE_STD` (V, T, T/m).
    """
    bad = sorted({g for g in groups if g not in AD_HOC_NOISE_STD})
    if bad:
        raise ChannelError(f"whitening groups {bad} are not known; use {', '.join(AD_HOC_NOISE_STD)}")
    return np.array([AD_HOC_NOISE_STD[g] for g in groups], dtype=float)


__all__ = [
    "ACCURACIES",
    "AD_HOC_NOISE_STD",
    "AXIAL_BASELINE_M",
    "AXIAL_RADIUS_M",
    "COIL_TYPES",
    "CoilDef",
    "LSL_TYPE",
    "MAG_SIDE_M",
    "PLANAR_BASELINE_M",
    "PLANAR_LOBE_M",
    "WHITENING_GROUP",
    "ad_hoc_noise_std",
    "coil_definition",
]
