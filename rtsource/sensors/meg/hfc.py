"""Homogeneous field correction (HFC) for OPM arrays: a projector built from the sensors alone.

Wearable OPM arrays have no reference array or gradiometers; the interference they pick up
in a shielded room is, to a good approximation, a spatially homogeneous field (Tierney et
al. 2021, NeuroImage 244:118484, "Modelling optically pumped magnetometer interference in
MEG as a spatially homogeneous magnetic field"). A uniform field B gives channel c the
signal ``N[c] . B`` with ``N[c] = sum_i w_i n_i`` over the coil's integration points (for a
point magnetometer its orientation), so the interference lies in the column space of
``N`` (n_channels x 3), and

    M = I - N N^+                      (Tierney et al. 2021, eq. 5)

removes it. Order 2 adds the five components of a harmonic linear gradient field
``B(r) = G (r - c)`` with G symmetric and traceless (the next terms of the regular solid
harmonic expansion; Tierney et al. 2022, NeuroImage 258:119338), with c the centroid of the
array. Being a projector on the data, it is folded into the operator as an SSP projector is:
the lead field and the noise covariance are projected too, and the kernel is ``K M``.
"""

from __future__ import annotations

import numpy as np

from ...errors import ChannelError
from .array import MegArray

__all__ = ["hfc_basis", "hfc_projector", "HFC_ORDERS"]

HFC_ORDERS = (1, 2)


def _gradient_basis() -> np.ndarray:
    """(5, 3, 3): symmetric traceless matrices spanning harmonic linear gradient fields."""
    g = np.zeros((5, 3, 3))
    g[0][0, 0], g[0][1, 1] = 1.0, -1.0
    g[1][0, 1] = g[1][1, 0] = 1.0
    g[2][0, 2] = g[2][2, 0] = 1.0
    g[3][1, 2] = g[3][2, 1] = 1.0
    g[4][0, 0], g[4][1, 1], g[4][2, 2] = -1.0, -1.0, 2.0
    return g


def hfc_basis(array: MegArray, order: int = 1) -> np.ndarray:
    """The interference model: (n_channels, 3) for order 1, (n_channels, 8) for order 2.

    Columns are channel signals (T) of a unit uniform field along x, y, z (in the array's
    frame), then (order 2) of the five unit gradient fields (T/m times m about the array's
    centroid). Computed at the coils' integration points, so it is exact for any coil.
    """
    if order not in HFC_ORDERS:
        raise ChannelError(f"HFC order {order!r} is not supported; use 1 (homogeneous field) or 2 (plus linear gradients)")
    groups = set(array.whitening_groups)
    if groups - {"mag"}:
        raise ChannelError(
            f"HFC models magnetometer arrays (OPMs); MEG array {array.name!r} has {sorted(groups - {'mag'})} channels too. "
            f"Pick the magnetometers (array.pick_types('mag')) or use SSP / gradient compensation"
        )
    pts, nrm = array.points_m, array.point_normals
    cols = [nrm]
    if order == 2:
        rel = pts - pts.mean(axis=0)
        cols.append(np.einsum("kj,gji,ki->kg", nrm, _gradient_basis(), rel))  # n . (G r)
    return np.asarray(array.channel_signals(np.hstack(cols)))


def hfc_projector(array: MegArray, order: int = 1) -> np.ndarray:
    """The HFC projector ``I - N N^+`` (n_channels x n_channels) of :func:`hfc_basis`.

    Raises
    ------
    ChannelError
        Fewer channels than model terms, or a basis that does not have full rank (the
        orientations do not span the field: e.g. all radial sensors on a flat patch).
    """
    n = hfc_basis(array, order)
    if n.shape[0] <= n.shape[1]:
        raise ChannelError(f"HFC order {order} needs more than {n.shape[1]} channels; MEG array {array.name!r} has {n.shape[0]}")
    norms = np.linalg.norm(n, axis=0)
    u, s, _ = np.linalg.svd(n / np.where(norms > 0, norms, 1.0), full_matrices=False)
    if not norms.min() > 0 or s[-1] < 1e-6 * s[0]:
        raise ChannelError(
            f"the orientations of MEG array {array.name!r} do not span the HFC order-{order} field model (condition {s[0] / max(s[-1], 1e-300):.3g}); "
            f"use order 1, or sensors with more varied orientations (tri-axial or tangential)"
        )
    return np.eye(n.shape[0]) - u @ u.T
