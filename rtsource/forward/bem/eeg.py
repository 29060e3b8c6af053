"""EEG from a BEM solution: electrodes onto the scalp, potentials of the sources there.

Each electrode is projected onto the nearest point of the outer (scalp) surface and its
potential interpolated from that triangle's vertices with barycentric weights (Hamalainen &
Sarvas 1989, IEEE TBME 36:165) on the surface the solution integrates over (the refined one,
if any). Only this step depends on the electrodes, and only the application to the sources
on the dipoles: both take fractions of a second next to :func:`~.solve.solve_bem`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ...arrays import frozen as _readonly
from ...errors import ForwardError
from ...geometry import Points, project_onto_mesh
from ..positions import list_distances, positions_m
from .model import BemModel, check_sources_inside
from .solve import BemSolution, apply_transfer

logger = logging.getLogger(__name__)

__all__ = ["MAX_ELECTRODE_DISTANCE_M", "BemLeadfieldReport", "eeg_bem_leadfield", "project_electrodes"]

#: Default limit on the distance of an electrode from the scalp before projection (metres).
MAX_ELECTRODE_DISTANCE_M = 0.010


@dataclass(frozen=True, eq=False)
class BemLeadfieldReport:
    """What :func:`eeg_bem_leadfield` did with the electrodes and dipoles.

    Attributes
    ----------
    electrode_distances_m : ndarray, shape (n_electrodes,)
        How far each electrode was moved onto the scalp.
    electrodes_on_scalp_m : ndarray, shape (n_electrodes, 3)
        Where they landed.
    dipole_depths_m : ndarray, shape (n_dipoles,)
        Distance of each dipole inside the innermost surface (positive).
    timings_s : Mapping
        "electrodes" (projection and rows of the solution), "leadfield" (source checks and
        the product with the sources' infinite-medium potentials).
    """

    electrode_distances_m: np.ndarray
    electrodes_on_scalp_m: np.ndarray
    dipole_depths_m: np.ndarray
    timings_s: Mapping[str, float] = field(default_factory=dict)


def project_electrodes(model: BemModel, electrodes: np.ndarray, max_distance_m: float, labels=None):
    """Project electrodes onto the outer (scalp) surface; refuse those farther than the limit.

    Parameters
    ----------
    model : BemModel
    electrodes : ndarray, shape (n_electrodes, 3)
        Metres, in the model's frame.
    max_distance_m : float
        Electrodes farther than this from the scalp before projection are refused.
    labels : sequence of str, optional
        Electrode names for the message.

    Returns
    -------
    rtsource.geometry.Projection
        Where each electrode landed and how far it moved.
    """
    proj = project_onto_mesh(electrodes, model.outer)
    far = np.flatnonzero(proj.distances_m > max_distance_m)
    if far.size:
        raise ForwardError(
            f"{far.size} of {len(electrodes)} electrodes are more than {max_distance_m * 1e3:.1f} mm "
            f"from the scalp surface {model.outer.name!r} before projection: "
            f"{list_distances(far, proj.distances_m, labels)}. Check the electrode unit (metres), the "
            f"frame and the coregistration; raise max_electrode_distance_m only if the positions are right"
        )
    return proj


def _electrode_rows(solution: BemSolution, electrodes: np.ndarray, max_distance_m: float, labels=None):
    """Rows of the solution at the electrodes, and the projection onto the scalp."""
    import scipy.sparse

    model = solution.model
    if solution.field_surface != 0:
        raise ForwardError("this BEM solution has no potentials on the outer surface; solve the model again with solve_bem")
    proj = project_electrodes(model, electrodes, max_distance_m, labels)
    disc = solution.discretisation(0)
    # the potential on the surface the solution integrates over (the refined one, if any),
    # interpolated with barycentric weights on the triangle the electrode lands on
    on = proj if disc.interp is None else project_onto_mesh(electrodes, disc.fine)
    tri = disc.fine.triangles[on.triangles]
    n_el = len(electrodes)
    weights = scipy.sparse.csr_matrix((on.weights.ravel(), (np.repeat(np.arange(n_el), 3), tri.ravel())), shape=(n_el, len(disc.fine.vertices)))
    if disc.interp is not None:
        weights = weights @ disc.interp
    rows = np.asarray(weights @ solution.matrix)
    return rows, proj


def eeg_bem_leadfield(
    solution: BemSolution,
    electrodes_m,
    dipoles_m,
    *,
    max_electrode_distance_m: float = MAX_ELECTRODE_DISTANCE_M,
    electrode_labels: Sequence[str] | None = None,
) -> tuple[np.ndarray, BemLeadfieldReport]:
    """EEG lead field of point dipoles from a BEM solution.

    Each electrode is projected onto the nearest point of the outer (scalp) surface and
    its potential interpolated from that triangle's vertices with barycentric weights
    (Hamalainen & Sarvas 1989). Only this step depends on the electrodes, and only the
    application to the sources on the dipoles: both are cheap next to :func:`solve_bem`.

    Parameters
    ----------
    solution : BemSolution
        From :func:`solve_bem`.
    electrodes_m : ndarray, shape (n_electrodes, 3), or Points
        Electrode positions in metres in the model's frame.
    dipoles_m : ndarray, shape (n_dipoles, 3), or Points
        Dipole positions in metres in the model's frame, inside the innermost surface.
    max_electrode_distance_m : float
        Electrodes farther than this from the scalp before projection are refused.
    electrode_labels : sequence of str, optional
        Names used in error messages.

    Returns
    -------
    gain : ndarray, shape (n_electrodes, 3 * n_dipoles)
        Potentials against infinity (not re-referenced), V per A*m; columns dipole-major
        [d0_x, d0_y, d0_z, d1_x, ...] along the frame's axes, as
        :func:`rtsource.forward.sphere.eeg_sphere_leadfield`.
    report : BemLeadfieldReport

    Raises
    ------
    ForwardError
        Electrodes too far from the scalp (listing which and how far), dipoles on or outside
        the innermost surface (listing which), non-finite positions.
    FrameError
        Points in another frame than the model.
    """
    if not isinstance(solution, BemSolution):
        raise ForwardError(f"solution must be a BemSolution from solve_bem(model), got {type(solution).__name__}")
    try:
        limit = float(max_electrode_distance_m)
    except (TypeError, ValueError):
        limit = float("nan")
    if not (limit >= 0 and math.isfinite(limit)):
        raise ForwardError(f"max_electrode_distance_m = {max_electrode_distance_m!r} must be a distance >= 0 in metres, e.g. 0.01")
    model = solution.model
    if isinstance(electrodes_m, Points) and electrode_labels is None and electrodes_m.labels:
        electrode_labels = electrodes_m.labels
    elec = positions_m(electrodes_m, "electrodes_m", model.frame, model="the BEM model")
    dip = positions_m(dipoles_m, "dipoles_m", model.frame, model="the BEM model")
    if len(elec) == 0:
        raise ForwardError("electrodes_m is empty; pass at least one electrode position")
    t0 = time.perf_counter()
    rows, proj = _electrode_rows(solution, elec, limit, electrode_labels)
    t1 = time.perf_counter()
    depth = check_sources_inside(dip, model, solution.__dict__.setdefault("_dipole_check", {}))
    gain = np.zeros((len(elec), 3 * len(dip)))
    apply_transfer(rows, solution.source_points_m, dip, gain)
    t2 = time.perf_counter()
    report = BemLeadfieldReport(
        _readonly(proj.distances_m), _readonly(proj.points_m), _readonly(depth), {"electrodes": t1 - t0, "leadfield": t2 - t1}
    )
    logger.debug("BEM EEG lead field %s: electrodes %.3f s, sources %.3f s", gain.shape, t1 - t0, t2 - t1)
    return gain, report
