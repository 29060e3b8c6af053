"""MEG from a single-layer BEM: the field of dipoles with the volume currents of the head.

Geselowitz (1970, Biophys J 10:39): B(r) = B0(r) - mu0/(4 pi) sum_l (sigma_l^- - sigma_l^+)
int V n' x (r - r')/|r - r'|^3 dS', from the vertex potentials of a single-layer (inner
skull) model, integrated analytically over the triangles (numba kernels in
:mod:`rtsource.forward._bem_kernels`). :func:`meg_bem_field` returns the normal component at
integration points; :func:`meg_bem_leadfield` applies a MEG array's coil weights
(``signal = sum_i w_i B(r_i).n_i``), in groups of channels so that the (points x sources)
block stays bounded.
"""

from __future__ import annotations

import numpy as np

from ...errors import ForwardError
from ...geometry import signed_distance
from ...sensors.meg import MegArray
from ..positions import list_distances, positions_m
from .model import BemModel, check_sources_inside
from .solve import BemSolution, apply_transfer, solve_bem

__all__ = ["meg_bem_field", "meg_bem_leadfield"]

# The BEM field comes per integration point for all dipoles at once; channels are done in
# groups so that the (points x 3 n_sources) block stays below about this many bytes.
_BEM_BLOCK_BYTES = 128 * 2**20


def meg_bem_field(solution, points_m, normals, dipoles_m, *, use_cache: bool = True, min_distance_m: float = 1e-3) -> np.ndarray:
    """Normal component of the magnetic field of dipoles in a single-layer BEM.

    B = B0 + volume-current term (Geselowitz 1970), evaluated analytically over the
    triangles with the linear vertex potentials of the BEM solution. Apply coil weights as
    ``signal = sum_i w_i * out[i]`` over a coil's integration points.

    Parameters
    ----------
    solution : BemSolution or BemModel
        A one-layer model (the inner skull) or its solution; a model is solved (cached).
    points_m : ndarray, shape (n_points, 3)
        Integration points in metres, in the model's frame, outside the surface.
    normals : ndarray, shape (n_points, 3)
        Unit vectors: the field component wanted at each point.
    dipoles_m : ndarray, shape (n_dipoles, 3)
        Dipole positions inside the surface, metres.
    use_cache : bool
        Passed to :func:`solve_bem` when ``solution`` is a model.
    min_distance_m : float
        Points closer than this to the surface (or inside it) are refused.

    Returns
    -------
    field : ndarray, shape (n_points, 3 * n_dipoles)
        T per A*m, columns dipole-major x, y, z.
    """
    from .. import _bem_kernels as kernels

    if isinstance(solution, BemModel):
        solution = solve_bem(solution, use_cache=use_cache)
    if not isinstance(solution, BemSolution):
        raise ForwardError(f"solution must be a BemSolution or BemModel, got {type(solution).__name__}")
    model = solution.model
    if model.n_layers != 1:
        raise ForwardError(
            f"meg_bem_field needs a single-layer model (the inner skull), got {model.n_layers} layers "
            f"({', '.join(s.name for s in model.surfaces)}); build it with "
            f"bem_model_from_surfaces(surfaces, conductivities, layers=1)"
        )
    pts = positions_m(points_m, "points_m", model.frame, model="the BEM model")
    nrm = positions_m(normals, "normals", model.frame, model="the BEM model")
    dip = positions_m(dipoles_m, "dipoles_m", model.frame, model="the BEM model")
    if nrm.shape != pts.shape:
        raise ForwardError(f"normals has shape {nrm.shape} but points_m has {pts.shape}; give one unit vector per point")
    length = np.linalg.norm(nrm, axis=1)
    bad = np.flatnonzero(np.abs(length - 1) > 1e-6)
    if bad.size:
        raise ForwardError(f"normals[{int(bad[0])}] has length {length[bad[0]]:.6g}; normals must be unit vectors")
    dist = signed_distance(pts, model.inner)
    close = np.flatnonzero(dist < min_distance_m)
    if close.size:
        raise ForwardError(
            f"{close.size} of {len(pts)} field points are inside {model.inner.name!r} or within "
            f"{min_distance_m * 1e3:.1f} mm of it: {list_distances(close, dist)} (signed distance); MEG "
            f"integration points must lie outside the head (check unit, frame and the device->head transform)"
        )
    check_sources_inside(dip, model, solution.__dict__.setdefault("_dipole_check", {}))
    disc = solution.discretisation(0)
    tab = disc.tables
    sig_in, sig_out = model.sigma_in_out()
    coef = np.zeros((len(pts), len(disc.fine.vertices)))
    scale = -kernels.MU0_OVER_4PI * float(sig_in[0] - sig_out[0])
    kernels.magnetic_coefficients(pts, nrm, tab.pts, tab.idx, tab.normal, tab.edge_dir, tab.edge_len, tab.edge_normal, tab.grad, scale, coef)
    transfer = disc.to_coarse(coef) @ solution.matrix
    out = np.empty((len(pts), 3 * len(dip)))
    kernels.primary_field(pts, nrm, dip, out)
    apply_transfer(transfer, solution.source_points_m, dip, out)
    return out


def meg_bem_leadfield(solution, array: MegArray, dipoles_m, *, use_cache: bool = True) -> np.ndarray:
    """Lead field of a MEG array's channels in a single-layer BEM (Geselowitz 1970).

    Parameters
    ----------
    solution : BemSolution or BemModel
        A one-layer model (the inner skull) or its solution; a model is solved once
        (cached), not per channel group.
    array : MegArray
        The sensors, in the model's frame (this function sees raw positions; the lead-field
        entry point :func:`rtsource.forward.leadfield.make_leadfield` moves and checks them).
    dipoles_m : ndarray, shape (n_dipoles, 3)
        Dipole positions inside the surface, metres.
    use_cache : bool
        Passed to :func:`~.solve.solve_bem` when ``solution`` is a model.

    Returns
    -------
    ndarray, shape (n_channels, 3 * n_dipoles)
        T (magnetometers, axial gradiometers) or T/m (planar gradiometers) per A*m, columns
        dipole-major; equal to ``array.channel_signals(meg_bem_field(...))``.
    """
    from scipy.sparse import csr_array

    if not isinstance(array, MegArray):
        raise ForwardError(f"array must be a rtsource.sensors.meg.MegArray, got {type(array).__name__}")
    if isinstance(solution, BemModel):
        solution = solve_bem(solution, use_cache=use_cache)  # once, not per channel group
    pos = positions_m(dipoles_m, "dipoles_m")
    counts = np.bincount(array.point_channel, minlength=array.n_channels)
    gain = np.empty((array.n_channels, 3 * len(pos)))
    per_point = max(1, 3 * len(pos) * 8)
    max_points = max(1, _BEM_BLOCK_BYTES // per_point)
    start = 0
    while start < array.n_channels:
        # whole channels only: a group ends where its points would exceed the block
        stop = start + 1
        n_pts = int(counts[start])
        while stop < array.n_channels and n_pts + int(counts[stop]) <= max_points:
            n_pts += int(counts[stop])
            stop += 1
        sel = np.flatnonzero((array.point_channel >= start) & (array.point_channel < stop))
        field = meg_bem_field(solution, array.points_m[sel], array.point_normals[sel], pos)
        weights = csr_array((array.weights[sel], (array.point_channel[sel] - start, np.arange(len(sel)))), shape=(stop - start, len(sel)))
        gain[start:stop] = weights @ field
        start = stop
    return gain
