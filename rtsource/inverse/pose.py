"""A bundle's operator for new lead fields of the same channels and sources (a moving head).

When the head moves inside a MEG helmet the lead field changes, but nothing on the noise
side does: the channels, the noise covariance and its whitener (its eigendecomposition),
the re-referencing and projectors, the sources' local frames and the parameters. An
:class:`PoseInverse` (:func:`prepare_pose_inverse`) computes those once; :meth:`~PoseInverse.operator`
then builds the operator for a new lead field with the same steps as
:func:`~.minimum_norm.make_inverse_operator` (it calls the same
:func:`~.minimum_norm.minimum_norm_kernel`), so the result is MNE-Python's operator for
that lead field. Per lead field only three passes over it remain, each one matrix product
(``G R G^T``, ``G^T C``, ``(G^T C) Q``; 306 channels x 8k sources: ~10 GFLOP), in float32
by default (relative output error ~1e-6, float64 channel-space algebra), plus one numba
pass that rotates it into the local frames and forms the depth prior's Gram matrices.

MNE, dSPM and sLORETA only: eLORETA iterates its weights and LCMV needs a data covariance,
so those go through :func:`~.rebuild.rebuild_operator` (the caller's fallback).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InverseError
from .covariance import NoiseCovariance
from .make import _rank_arg, operator_reference
from .minimum_norm import minimum_norm_kernel
from .operator import LinearInverse
from .params import MinimumNormParams
from .prepared_forward import _depth_rows, local_frames
from .whitening import Whitener, make_whitener

__all__ = ["PoseInverse", "prepare_pose_inverse", "supports_pose_inverse"]

#: methods :class:`PoseInverse` builds (the others iterate or need a data covariance)
POSE_METHODS = ("MNE", "dSPM", "sLORETA")


def supports_pose_inverse(bundle) -> bool:
    """Whether :func:`prepare_pose_inverse` can prepare ``bundle`` (its method and caches)."""
    from .rebuild import _record_of

    return bundle.gain is not None and bundle.noise_cov is not None and _record_of(bundle).inverse.method in POSE_METHODS


@dataclass(frozen=True, eq=False)
class PoseInverse:
    """Everything of a bundle's minimum-norm operator that the lead field does not change.

    Attributes
    ----------
    params : MinimumNormParams
    whitener : Whitener
        ``W M`` on the bundle's channels (re-referencing, SSP and artifact projection in ``M``).
    rotation : ndarray, shape (n_sources, 3, 3)
        The sources' local frames (:func:`~.prepared_forward.local_frames`).
    ch_names, ch_types : tuple of str
    depth_row : ndarray of bool, shape (n_chan,)
        The channels of the depth prior (gradiometers, else magnetometers, else EEG).
    lambda2 : float
    timings_ms : dict
        Of the last :meth:`operator` call, per stage (``local_frames``, ``gram``,
        ``eigh``, ``leads``, ``kernel``, ...), for the benchmark.
    """

    params: MinimumNormParams
    whitener: Whitener
    rotation: np.ndarray
    ch_names: tuple[str, ...]
    ch_types: tuple[str, ...]
    depth_row: np.ndarray
    lambda2: float
    timings_ms: dict = field(default_factory=dict)

    @property
    def n_sources(self) -> int:
        return self.rotation.shape[0]

    def operator(self, gain: np.ndarray, dtype=np.float32) -> LinearInverse:
        """The operator for the lead field ``gain`` (n_chan, 3 n_sources), float64, dipole-major.

        Equal to :func:`~.make.make_operator` with the bundle's parameters and this gain,
        up to float32 rounding of the three big products (``dtype=np.float64``: up to
        float64 rounding).
        """
        from ._kernels import local_gain_f32

        g = np.asarray(gain, dtype=np.float64)
        n_chan, n_src = len(self.ch_names), self.n_sources
        if g.shape != (n_chan, 3 * n_src):
            raise InverseError(f"gain has shape {g.shape}; expected ({n_chan}, {3 * n_src}) for this PoseInverse's channels and sources")
        if not np.all(np.isfinite(g)):
            raise InverseError("gain contains NaN or Inf; check the forward model for this head pose")
        t = {}
        t0 = time.perf_counter()
        local = np.empty((n_chan, n_src, 3), np.float32)
        gram = np.empty((n_src, 3, 3))
        local_gain_f32(np.ascontiguousarray(g), self.rotation, self.depth_row, local, gram)
        if np.dtype(dtype) != np.float32:
            local = local.astype(dtype) if np.dtype(dtype) != np.float64 else _local64(g, self.rotation)
        p = self.params
        fixed = p.fixed or p.loose == 0.0
        if fixed:
            n_orient, loose = 1, 0.0
            g_sel = np.ascontiguousarray(local[:, :, 2])
            orient_var = np.ones(n_src)
        else:
            n_orient, loose = 3, float(p.loose)
            g_sel = local.reshape(n_chan, 3 * n_src)
            orient_var = np.tile([loose, loose, 1.0], n_src)
        t["local_frames"] = (time.perf_counter() - t0) * 1e3
        w = self.whitener
        kernel, noise_norm, s = minimum_norm_kernel(
            g_sel, gram, w.matrix, w.rank, method=p.method, lambda2=self.lambda2, n_orient=n_orient, orient_var=orient_var,
            depth=p.depth, depth_limit=p.depth_limit, dtype=dtype, timings=t,
        )  # fmt: skip
        t1 = time.perf_counter()
        op = LinearInverse(
            kernel=kernel, noise_norm=noise_norm, n_orient=n_orient, method=p.method, lambda2=self.lambda2, loose=loose,
            depth=None if p.depth is None else float(p.depth), rank=w.rank, ch_names=self.ch_names, source_rotation=self.rotation,
            singular_values=s, output_unit="A*m" if p.method == "MNE" else "", ch_types=self.ch_types,
            details={"block_ranks": dict(w.block_ranks)},
        )  # fmt: skip
        t["operator"] = (time.perf_counter() - t1) * 1e3
        self.timings_ms.clear()
        self.timings_ms.update(t)
        return op


def _local64(g: np.ndarray, rot: np.ndarray) -> np.ndarray:
    from ._linalg import apply_blocks

    return apply_blocks(rot, g.reshape(g.shape[0], -1, 3))


def prepare_pose_inverse(bundle) -> PoseInverse:
    """The :class:`PoseInverse` of ``bundle`` (MNE, dSPM, sLORETA; it must cache its noise covariance).

    Raises
    ------
    InverseError
        Another method (eLORETA, LCMV: use :func:`~.rebuild.rebuild_operator`), or no
        cached noise covariance.
    """
    from .rebuild import _record_of
    from .ssp import projectors_from_provenance

    record = _record_of(bundle)
    params = record.inverse
    if not isinstance(params, MinimumNormParams) or params.method not in POSE_METHODS:
        raise InverseError(
            f"prepare_pose_inverse builds {', '.join(POSE_METHODS)} operators, the bundle's method is {params.method!r}; "
            "rebuild it with rtsource.inverse.rebuild.rebuild_operator"
        )
    if bundle.noise_cov is None:
        raise InverseError("the bundle does not cache its noise covariance; rebuild it with `rtsource setup`")
    names = tuple(bundle.ch_names)
    types_ = tuple(bundle.ch_types)
    artifacts = getattr(bundle, "artifacts", None)
    m = operator_reference(
        names, bundle.reference, types_, projectors_from_provenance(getattr(bundle, "provenance", {})),
        artifacts.projector(names) if artifacts is not None else None,
    )  # fmt: skip
    noise = NoiseCovariance(np.asarray(bundle.noise_cov, dtype=np.float64), names, 0, "empirical", 0.0)
    whitener = make_whitener(noise, reference=m, ch_types=types_, rank=_rank_arg(params.rank))
    lambda2 = float(params.lambda2) if params.lambda2 is not None else 1.0 / float(params.snr) ** 2
    rows = _depth_rows(types_, len(names))
    depth_row = np.zeros(len(names), bool)
    depth_row[rows] = True
    rot = np.ascontiguousarray(local_frames(bundle.sources.normals))
    rot.flags.writeable = False
    return PoseInverse(params, whitener, rot, names, types_, depth_row, lambda2)
