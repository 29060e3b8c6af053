"""The minimum-norm inverse family: MNE, dSPM and sLORETA, as MNE-Python defines them.

An inverse operator is built once, offline, from the lead field, the noise covariance and
the re-referencing matrix; streaming then only multiplies each chunk by a small kernel.
The steps follow ``reference/forward_inverse.md`` section 5 (names below match it):

1. Re-reference the gain and the covariance with ``M`` (``M G``, ``M C M^T``); whitener
   ``W = diag(1/sqrt(e)) E^T`` on the top ``rank`` eigenpairs of ``M C M^T``.
2. Depth prior (Lin et al. 2006, NeuroImage 31:160): ``d_k`` = largest eigenvalue of
   ``G_k^T G_k`` per source, ``w = 1/d``, capped and raised to the power ``depth``.
3. Orientation prior (Lin et al. 2006): in a frame aligned with the cortical normal the two
   tangential components get variance ``loose``, the normal one 1.
4. ``Gt = W M G sqrt(R)`` scaled so that ``||Gt||_F^2 = rank``; SVD ``Gt = U S V^T``.
5. ``Gamma = s / (s^2 + lambda2)``; kernel ``K = sqrt(R) V Gamma U^T W M``
   (Hamalainen & Ilmoniemi 1994, Med Biol Eng Comput 32:35).
6. Noise normalisation: dSPM (Dale et al. 2000, Neuron 26:55) divides by the noise standard
   deviation of each source, sLORETA (Pascual-Marqui 2002, Methods Find Exp Clin Pharmacol
   24D:5) by the square root of the resolution matrix diagonal.

7. eLORETA (Pascual-Marqui 2007, 2011): iterated source weights instead of the depth
   prior, no noise normalisation; see :mod:`rtsource.inverse.eloreta`.

The kernel contains ``M`` and the whitener, so it is applied to raw data in V in the
operator's channel order. Rows of the kernel for ``n_orient == 3`` are, per source, the
two tangential directions then the normal (``source_rotation`` holds the axes).

Mixed EEG and MEG: pass ``ch_types`` and the whitener gets one block per sensor type
(EEG; MEG = magnetometers and gradiometers together), each from its own
eigendecomposition and rank, as MNE-Python does (:func:`~.covariance.make_whitener`);
the reference matrix must then act on the EEG channels only
(``reference_matrix(ch_names, reference, ch_types=ch_types)``). The LCMV beamformers
(:mod:`rtsource.inverse.beamformer`) return the same :class:`InverseOperator` type.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import types
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..arrays import frozen as _readonly
from ..arrays import sealed
from ..errors import InverseError
from .covariance import (
    DataCovariance,
    NoiseCovariance,
    _block_whitener,
    _check_reference_matrix,
    check_ch_types,
    make_whitener,
)

logger = logging.getLogger(__name__)

#: Methods :func:`make_inverse_operator` builds.
MINIMUM_NORM_METHODS = ("MNE", "dSPM", "sLORETA", "eLORETA")
#: Every method an :class:`InverseOperator` can carry (LCMV: :func:`~.beamformer.make_lcmv`).
METHODS = MINIMUM_NORM_METHODS + ("LCMV",)

# Normals may come from float32 files; anything further from unit length is a bug upstream.
_NORMAL_TOL = 1e-4


def _short_list(items: Sequence, n: int = 6) -> str:
    """``"a, b, c, ... (64 in all)"`` for error messages."""
    items = [str(i) for i in items]
    if len(items) <= n:
        return ", ".join(items)
    return ", ".join(items[:n]) + f", ... ({len(items)} in all)"


@dataclass(frozen=True, eq=False)  # arrays: compare fields explicitly
class InverseOperator:
    """A minimum-norm inverse operator ready to be applied to raw sensor data.

    Attributes
    ----------
    kernel : ndarray, shape (n_sources * n_orient, n_chan)
        Applied to raw (un-referenced) data in V in the order of ``ch_names``; it already
        contains the re-referencing matrix and the whitener. Read-only.
    noise_norm : ndarray, shape (n_sources,)
        Divisors of the pooled (``n_orient == 3``) or signed (``n_orient == 1``) output.
        For dSPM and sLORETA in units of the kernel output (A*m); all ones for MNE,
        eLORETA (which, as in MNE-Python, is not noise-normalised: its weights already
        remove the depth bias) and LCMV (whose weight normalisation is in the kernel).
    n_orient : int
        3 (loose or free orientation: three rows per source, output is
        ``||K_k x|| / noise_norm_k``) or 1 (fixed, normal orientation: ``K_k x / noise_norm_k``).
    method : str
        ``"MNE"``, ``"dSPM"``, ``"sLORETA"``, ``"eLORETA"`` or ``"LCMV"``.
    lambda2 : float
        Regularisation parameter (``1 / snr**2`` unless given); 0 for LCMV (its
        regularisation is ``details["reg"]``).
    loose : float
        Tangential source variance relative to the normal one (0 for fixed orientation;
        1 for LCMV with free orientation).
    depth : float or None
        Depth weighting exponent, None if depth weighting is off (always None for
        eLORETA, whose weights compensate depth).
    rank : int
        Rank of the whitened data space.
    ch_names : tuple of str
        Channel order of the kernel's columns.
    source_rotation : ndarray, shape (n_sources, 3, 3)
        Per source, the rows are the local frame axes (tangential 1, tangential 2, normal)
        as unit vectors in the gain's frame: the kernel rows of a source for
        ``n_orient == 3`` are in that frame, so ``rot.T @ q_local`` gives x, y, z.
    singular_values : ndarray, shape (n_components,)
        Singular values of the whitened, weighted, trace-scaled gain ``Gt`` (of
        ``G R^(1/2)`` for eLORETA); for LCMV the eigenvalues of the whitened data
        covariance, descending.
    output_unit : str
        ``"A*m"`` for MNE, eLORETA and unit-gain LCMV (``"a.u."`` with LCMV depth
        weighting); ``""`` (dimensionless) for dSPM, sLORETA and the normalised LCMV
        variants.
    ch_types : tuple of str
        Channel types (``"eeg"``, ``"mag"``, ``"grad"``) if they were given, else ``()``.
    details : Mapping
        Method-specific, JSON-friendly facts: for eLORETA the convergence report
        (``iterations``, ``final_change``, ``converged``, ``eps``, ``max_iter``,
        ``force_equal``); for LCMV ``reg``, ``loading``, ``weight_norm``,
        ``orientation``, ``data_rank``, ``noise_level`` (NAI); always ``block_ranks``
        (kept whitener rank per sensor-type block).
    source_weights : ndarray or None
        eLORETA only: the fitted weights (:attr:`.eloreta.EloretaFit.weights`), kept so an
        operator for nearly the same channels can warm-start from them.
    orientations : ndarray or None, shape (n_sources, 3)
        LCMV with max-power orientation only: the chosen unit orientation per source in
        the gain's frame (sign aligned with the normal).
    """

    kernel: np.ndarray
    noise_norm: np.ndarray
    n_orient: int
    method: str
    lambda2: float
    loose: float
    depth: float | None
    rank: int
    ch_names: tuple[str, ...]
    source_rotation: np.ndarray
    singular_values: np.ndarray
    output_unit: str
    ch_types: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    source_weights: np.ndarray | None = None
    orientations: np.ndarray | None = None

    def __post_init__(self) -> None:
        kernel = _readonly(self.kernel)
        noise_norm = _readonly(self.noise_norm)
        rot = _readonly(self.source_rotation)
        names = tuple(str(c) for c in self.ch_names)
        if self.n_orient not in (1, 3):
            raise InverseError(f"n_orient is {self.n_orient!r}; it must be 1 or 3")
        if self.method not in METHODS:
            raise InverseError(f"method {self.method!r} is not one of {METHODS}")
        n_src = noise_norm.shape[0] if noise_norm.ndim == 1 else -1
        if kernel.ndim != 2 or kernel.shape != (n_src * self.n_orient, len(names)):
            raise InverseError(
                f"kernel has shape {kernel.shape}, expected ({n_src} sources x "
                f"{self.n_orient} orientations, {len(names)} channels)"
            )
        if rot.shape != (n_src, 3, 3):
            raise InverseError(
                f"source_rotation has shape {rot.shape}, expected ({n_src}, 3, 3)"
            )
        if not np.all(np.isfinite(kernel)):
            raise InverseError("kernel contains NaN or Inf; rebuild the operator")
        if not np.all(np.isfinite(noise_norm) & (noise_norm > 0)):
            raise InverseError(
                "noise_norm must be finite and positive (it divides the output); "
                "rebuild the operator"
            )
        object.__setattr__(self, "kernel", kernel)
        object.__setattr__(self, "noise_norm", noise_norm)
        object.__setattr__(self, "source_rotation", rot)
        object.__setattr__(self, "singular_values", _readonly(self.singular_values))
        object.__setattr__(self, "ch_names", names)
        ch_types = tuple(str(t) for t in self.ch_types)
        if ch_types:
            check_ch_types(ch_types, len(names))
        object.__setattr__(self, "ch_types", ch_types)
        object.__setattr__(self, "details", types.MappingProxyType(dict(self.details)))
        if self.source_weights is not None:
            object.__setattr__(self, "source_weights", _readonly(self.source_weights))
        if self.orientations is not None:
            ori = _readonly(self.orientations)
            if ori.shape != (n_src, 3):
                raise InverseError(
                    f"orientations has shape {ori.shape}, expected ({n_src}, 3)"
                )
            object.__setattr__(self, "orientations", ori)

    @property
    def n_sources(self) -> int:
        """Number of source locations."""
        return self.noise_norm.shape[0]

    @property
    def n_chan(self) -> int:
        """Number of channels the kernel expects."""
        return len(self.ch_names)


# --------------------------------------------------------------------------------------
# Re-referencing matrices
# --------------------------------------------------------------------------------------


def average_reference_matrix(n_chan: int) -> np.ndarray:
    """The average-reference projector ``I - 1 1^T / n``.

    Parameters
    ----------
    n_chan : int
        Number of channels.

    Returns
    -------
    ndarray, shape (n_chan, n_chan)
        ``M`` such that ``M @ x`` subtracts the channel mean from ``x``.
    """
    n = int(n_chan)
    if n < 2 or n != n_chan:
        raise InverseError(
            f"n_chan is {n_chan!r}; an average reference needs an integer number of "
            "channels >= 2"
        )
    return np.eye(n) - np.full((n, n), 1.0 / n)


def reference_to_channel_matrix(ch_names: Sequence[str], ref_name: str) -> np.ndarray:
    """Re-referencing to one channel: ``x_i -> x_i - x_ref``.

    Parameters
    ----------
    ch_names : sequence of str
        Channel names in data order.
    ref_name : str
        The reference channel; its row of the result is zero.

    Returns
    -------
    ndarray, shape (n_chan, n_chan)
        ``M = I - 1 e_ref^T``.
    """
    names = [str(c) for c in ch_names]
    if names.count(ref_name) != 1:
        what = "is not among" if ref_name not in names else "appears more than once in"
        raise InverseError(
            f"ref_name {ref_name!r} {what} the channels ({_short_list(names)}); "
            "pass the name of exactly one channel"
        )
    m = np.eye(len(names))
    m[:, names.index(ref_name)] -= 1.0
    return m


def reference_matrix(
    ch_names: Sequence[str], reference: str, ch_types: Sequence[str] | None = None
) -> np.ndarray:
    """``M`` for a reference named as in configs and bundles: ``"average"`` or a channel name.

    Parameters
    ----------
    ch_names : sequence of str
        Channel names in data order.
    reference : str
        ``"average"`` or the name of the reference channel.
    ch_types : sequence of {"eeg", "mag", "grad"}, optional
        With channel types the reference acts on the EEG channels only (average over the
        EEG channels, or minus an EEG reference channel) and MEG channels pass
        unchanged. Without them every channel is treated as EEG.

    Returns
    -------
    ndarray, shape (n_chan, n_chan)
    """
    names = [str(c) for c in ch_names]
    types_ = check_ch_types(ch_types, len(names))
    if types_ is None or all(t == "eeg" for t in types_):
        if reference == "average":
            return average_reference_matrix(len(names))
        return reference_to_channel_matrix(names, reference)
    eeg = np.array([t == "eeg" for t in types_])
    m = np.eye(len(names))
    if not eeg.any():
        return m  # MEG only: nothing to re-reference
    idx = np.flatnonzero(eeg)
    eeg_names = [names[i] for i in idx]
    if reference == "average":
        sub = average_reference_matrix(len(idx))
    else:
        if reference in names and reference not in eeg_names:
            raise InverseError(
                f"reference {reference!r} is a {types_[names.index(reference)]} channel; "
                "the reference must be an EEG channel (or 'average')"
            )
        sub = reference_to_channel_matrix(eeg_names, reference)
    m[np.ix_(idx, idx)] = sub
    return m


# --------------------------------------------------------------------------------------
# Building blocks of the operator (section 5, steps 1-3)
# --------------------------------------------------------------------------------------


def _whitener(cov_ref: np.ndarray, rank: int | None, rank_m: int) -> tuple[np.ndarray, int]:
    """Whitener of one block (kept for callers of the single-type version)."""
    w, rank, _ = _block_whitener(cov_ref, rank, rank_m)
    return w, rank


def _gram_blocks(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-source 3x3 products ``A_k^T B_k``.

    Parameters
    ----------
    a, b : ndarray, shape (n_rows, n_sources, 3)

    Returns
    -------
    ndarray, shape (n_sources, 3, 3)
        ``out[k, i, j] = sum_c a[c, k, i] b[c, k, j]`` (a batched matmul: several times
        faster than ``einsum`` here).
    """
    return np.matmul(a.transpose(1, 2, 0), b.transpose(1, 0, 2))


def _apply_blocks(mats: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Per-source ``A_k M_k^T``.

    Parameters
    ----------
    mats : ndarray, shape (n_sources, 3, 3)
    a : ndarray, shape (n_rows, n_sources, 3)

    Returns
    -------
    ndarray, shape (n_rows, n_sources, 3)
        ``out[c, k, i] = sum_j mats[k, i, j] a[c, k, j]``.
    """
    out = np.matmul(a.transpose(1, 0, 2), mats.transpose(0, 2, 1))  # (n_src, n_rows, 3)
    return np.ascontiguousarray(out.transpose(1, 0, 2))


def _eigh(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.linalg.eigh``, by the numba kernel for stacks of 3 x 3 matrices (the per-source
    blocks of eLORETA and the beamformers), where LAPACK's per-call overhead dominates."""
    if a.ndim == 3 and a.shape[1:] == (3, 3) and a.dtype == np.float64:
        from ._kernels import eigh_sym3

        w = np.empty((a.shape[0], 3))
        v = np.empty(a.shape)
        eigh_sym3(np.ascontiguousarray(a), w, v)
        return w, v
    return np.linalg.eigh(a)


def _sym_pow(a: np.ndarray, power: float, rcond: float = 1e-7) -> np.ndarray:
    """Power of symmetric positive semi-definite matrices (batched), pseudo-style.

    Eigenvalues at or below ``rcond`` times the largest one are treated as zero: they
    stay zero for positive powers and are dropped (not inverted) for negative ones, as
    MNE-Python's ``_sym_mat_pow``.

    Parameters
    ----------
    a : ndarray, shape (..., n, n)
    power : float
        e.g. 0.5, -0.5, -1.

    Returns
    -------
    ndarray, shape (..., n, n)
    """
    s, u = _eigh(a)
    limit = s[..., -1:] * rcond
    keep = s > limit
    safe = np.where(keep, s, 1.0)
    p = np.where(keep, safe**power, 0.0)
    return np.matmul(u * p[..., None, :], np.swapaxes(u, -1, -2))


def _depth_prior(gain: np.ndarray, exponent: float | None, limit: float | None) -> np.ndarray:
    """Depth weighting prior per source (Lin et al. 2006, NeuroImage 31:160).

    As MNE-Python's ``make_inverse_operator`` (``compute_depth_prior`` with
    ``combine_xyz="spectral"``, ``limit_depth_chs=True``): ``d_k`` is the largest eigenvalue
    of ``G_k^T G_k`` of the un-whitened, un-referenced gain; ``w = 1/d``; the dynamic range
    is limited by capping ``w`` at the first sorted value above ``limit**2 * min(w)``
    (``limit`` bounds the ratio of gain norms, hence the square); the prior is
    ``min(w / cap, 1) ** exponent``.

    Parameters
    ----------
    gain : ndarray, shape (n_chan, 3 * n_sources)
        Lead field, dipole-major x, y, z columns.
    exponent : float or None
        Depth exponent; None or 0 gives all ones.
    limit : float or None
        Largest ratio of gain norms that the weighting compensates; None for no limit.

    Returns
    -------
    ndarray, shape (n_sources,)
        Source variance factors in (0, 1].
    """
    n_src = gain.shape[1] // 3
    if not exponent:
        return np.ones(n_src)
    g = gain.reshape(gain.shape[0], n_src, 3)
    return _depth_prior_from_gram(_gram_blocks(g, g), exponent, limit)


def _depth_prior_from_gram(gram: np.ndarray, exponent: float | None, limit: float | None) -> np.ndarray:
    """:func:`_depth_prior` from the per-source Gram matrices ``G_k^T G_k``, (n_src, 3, 3).

    Their largest eigenvalue does not change when the three columns of a source are
    rotated, so the Gram matrices of the gain in the local frames serve as well.
    """
    n_src = gram.shape[0]
    if not exponent:
        return np.ones(n_src)
    from ._kernels import largest_eigenvalues_sym3

    d = np.empty(n_src)
    largest_eigenvalues_sym3(np.ascontiguousarray(gram, dtype=np.float64), d)
    if np.any(d <= 0):
        # A source the sensors cannot see at all (e.g. a radial-only MEG source at the
        # sphere centre): treat it like the weakest visible one.
        bad = np.flatnonzero(d <= 0)
        logger.warning(
            "%d source(s) have an all-zero lead field (first: %s); depth weighting uses "
            "the weakest non-zero source for them",
            bad.size,
            _short_list(bad),
        )
        d[bad] = np.min(d[d > 0])
    w = 1.0 / d
    if limit is not None:
        ws = np.sort(w)
        cap = ws[-1]
        above = np.flatnonzero(ws > limit**2 * ws[0])
        if above.size:
            cap = ws[above[0]]
        w = np.minimum(w / cap, 1.0)
    return w**exponent


def _local_frames(normals: np.ndarray) -> np.ndarray:
    """Right-handed orthonormal frames whose last axis is the source normal.

    Parameters
    ----------
    normals : ndarray, shape (n_sources, 3)
        Unit normals.

    Returns
    -------
    ndarray, shape (n_sources, 3, 3)
        Rows: tangential 1, tangential 2, normal. The tangential pair is taken as
        MNE-Python's surface-oriented forward takes it (``_normal_orth``: the
        eigenvectors of ``I - n n^T`` for the eigenvalue 1), with the sign of the second
        axis chosen so the frame is right-handed. The minimum-norm family and the
        rotation-invariant beamformers do not depend on this choice (their priors are
        isotropic in the tangent plane); the per-row "unit-noise-gain" LCMV with free
        orientation does, and agrees with MNE-Python because of it.
    """
    n = np.ascontiguousarray(normals / np.linalg.norm(normals, axis=1, keepdims=True))
    # 8k batched 3x3 eigendecompositions take ~35 ms; a rebuild without a channel has the
    # same normals, so remember the last few results (keyed by the normals' bytes).
    key = hashlib.sha1(n.tobytes()).hexdigest() + str(n.shape)
    with _FRAMES_LOCK:  # rebuilds run in a background thread
        cached = _FRAMES_CACHE.get(key)
    if cached is not None:
        return cached.copy()
    _, u = np.linalg.eigh(np.eye(3) - n[:, :, None] * n[:, None, :])
    t1, t2 = u[:, :, 2], u[:, :, 1]  # eigenvalue 1 (descending, as MNE-Python)
    frames = np.stack([t1, t2, n], axis=1)
    flip = np.linalg.det(frames) < 0
    frames[flip, 1] *= -1.0
    with _FRAMES_LOCK:
        if len(_FRAMES_CACHE) >= 4:
            _FRAMES_CACHE.pop(next(iter(_FRAMES_CACHE)))
        _FRAMES_CACHE[key] = frames.copy()
    return frames


_FRAMES_CACHE: dict[str, np.ndarray] = {}
_FRAMES_LOCK = threading.Lock()


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def _check_scalar(name: str, value, *, low: float, low_open: bool, high=None, fix: str):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InverseError(f"{name} is {value!r}; {fix}") from None
    ok = np.isfinite(v) and (v > low if low_open else v >= low)
    if high is not None:
        ok = ok and v <= high
    if not ok:
        raise InverseError(f"{name} is {value!r}; {fix}")
    return v


def _check_channels(op_names: tuple[str, ...], cov_names: tuple[str, ...]) -> None:
    if op_names == cov_names:
        return
    missing = [c for c in op_names if c not in cov_names]
    extra = [c for c in cov_names if c not in op_names]
    parts = []
    if missing:
        parts.append(f"missing from the covariance: {_short_list(missing)}")
    if extra:
        parts.append(f"only in the covariance: {_short_list(extra)}")
    if not parts:
        moved = [
            f"{i}: {a} (covariance has {b})"
            for i, (a, b) in enumerate(zip(op_names, cov_names))
            if a != b
        ]
        parts.append(
            f"same channels in a different order, first at position {_short_list(moved, 3)}"
        )
    raise InverseError(
        "noise_cov.ch_names do not match the gain's channels ("
        + "; ".join(parts)
        + "); re-estimate the covariance on the operator's channels in the same order"
    )


def _canonical_method(method) -> str:
    for m in MINIMUM_NORM_METHODS:
        if isinstance(method, str) and method.lower() == m.lower():
            return m
    hint = (
        " (LCMV is a beamformer: use rtsource.inverse.beamformer.make_lcmv)"
        if isinstance(method, str) and method.lower() == "lcmv"
        else ""
    )
    raise InverseError(
        f"method is {method!r}; use one of {', '.join(MINIMUM_NORM_METHODS)}{hint}"
    )


def _check_noise_cov(noise_cov, ch_names) -> tuple[str, ...]:
    """Validate the noise covariance; returns the channel names of the operator."""
    if not isinstance(noise_cov, NoiseCovariance) or isinstance(noise_cov, DataCovariance):
        what = type(noise_cov).__name__
        raise InverseError(
            f"noise_cov is a {what}; pass a NoiseCovariance (estimate_noise_covariance "
            "or ad_hoc_noise_covariance)"
            + (
                " -- a DataCovariance contains the activity and belongs to a beamformer's "
                "data_cov"
                if what == "DataCovariance"
                else ""
            )
        )
    names = noise_cov.ch_names if ch_names is None else tuple(str(c) for c in ch_names)
    _check_channels(names, noise_cov.ch_names)
    return names


def _check_forward(gain, normals, n_chan: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate the lead field and the normals; returns float64 copies and n_sources."""
    g = np.asarray(gain, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] != n_chan or g.shape[1] % 3 or g.shape[1] == 0:
        raise InverseError(
            f"gain has shape {g.shape}; expected (n_chan={n_chan}, 3 * n_sources) with "
            "dipole-major x, y, z columns (transpose it, or check the channel count)"
        )
    n_src = g.shape[1] // 3
    if not np.all(np.isfinite(g)):
        bad = np.flatnonzero(~np.all(np.isfinite(g.reshape(n_chan, n_src, 3)), axis=(0, 2)))
        raise InverseError(
            f"gain contains NaN or Inf for {bad.size} source(s) (indices "
            f"{_short_list(bad)}); fix the forward model or drop those sources"
        )
    nrm = np.asarray(normals, dtype=np.float64)
    if nrm.shape != (n_src, 3):
        raise InverseError(
            f"normals has shape {nrm.shape}; expected ({n_src}, 3) for a gain with "
            f"{n_src} sources"
        )
    lengths = np.linalg.norm(nrm, axis=1)
    bad = np.flatnonzero(~(np.abs(lengths - 1.0) <= _NORMAL_TOL))
    if bad.size:
        raise InverseError(
            f"normals must be unit vectors, but {bad.size} are not (source {bad[0]} has "
            f"length {lengths[bad[0]]:.6g}); normalise them "
            "(normals / np.linalg.norm(normals, axis=1, keepdims=True))"
        )
    return g, nrm, n_src


def _depth_rows(ch_types: tuple[str, ...] | None, n_chan: int) -> np.ndarray:
    """Channels the depth prior is computed from: gradiometers if any, else magnetometers,
    else EEG (MNE-Python's ``limit_depth_chs=True``, ``_restrict_gain_matrix``)."""
    if ch_types is None:
        return np.arange(n_chan)
    t = np.array(ch_types)
    for kind in ("grad", "mag", "eeg"):
        idx = np.flatnonzero(t == kind)
        if idx.size:
            return idx
    return np.arange(n_chan)


def _rotate_to_local(g: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Gain columns in the local frames: (n_chan, 3 n_src) -> (n_chan, n_src, 3)."""
    n_chan = g.shape[0]
    return _apply_blocks(rot, g.reshape(n_chan, -1, 3))


@dataclass(frozen=True, eq=False)
class LocalForward:
    """A checked lead field in the sources' local frames: the start of every operator.

    Whatever the method, building an operator begins with the same work on the lead
    field: checking it, the local frames of the normals, the gain rotated into them and
    the per-source Gram matrices of the depth prior. :func:`prepare_forward` does it once;
    :func:`make_inverse_operator` and :func:`~.beamformer.make_lcmv` accept the result in
    place of the gain. A bad-channel rebuild (:mod:`.rebuild`) prepares a bundle's forward
    once and then only drops rows (:meth:`drop`): the rotation acts on each channel's row
    alone, and a Gram matrix loses the outer products of the dropped rows.

    Attributes
    ----------
    gain : ndarray, shape (n_chan, 3 * n_sources)
        Raw lead field, dipole-major x, y, z (float64, read-only).
    local : ndarray, shape (n_chan, n_sources, 3)
        The gain in the local frames (tangential 1, tangential 2, normal), read-only.
    rotation : ndarray, shape (n_sources, 3, 3)
        The local frames (:func:`_local_frames`), read-only.
    depth_rows : ndarray of int
        Channels the depth prior uses (:func:`_depth_rows`).
    depth_gram : ndarray, shape (n_sources, 3, 3)
        ``sum over depth_rows of local_k^T local_k`` (its largest eigenvalue is that of the
        raw ``G_k^T G_k``), read-only.
    ch_types : tuple of str or None
        The channel types the depth rows were chosen by.
    """

    gain: np.ndarray
    local: np.ndarray
    rotation: np.ndarray
    depth_rows: np.ndarray
    depth_gram: np.ndarray
    ch_types: tuple[str, ...] | None = None

    @property
    def n_chan(self) -> int:
        return self.gain.shape[0]

    @property
    def n_sources(self) -> int:
        return self.rotation.shape[0]

    def drop(self, channels: Sequence[int]) -> "LocalForward":
        """The same forward without the rows ``channels`` (indices), exactly as a fresh
        :func:`prepare_forward` of the remaining rows would give it (up to rounding)."""
        drop = np.unique(np.asarray(channels, dtype=int))
        keep = np.setdiff1d(np.arange(self.n_chan), drop)
        types_ = None if self.ch_types is None else tuple(self.ch_types[i] for i in keep)
        rows = _depth_rows(types_, len(keep))
        old_rows = keep[rows]  # the new depth rows, as indices of the old channels
        gone = np.setdiff1d(self.depth_rows, old_rows)
        if np.setdiff1d(old_rows, self.depth_rows).size or gone.size * 2 > len(self.depth_rows):
            # another sensor type now leads the depth prior (or most rows went): recompute
            sub = self.local[old_rows]
            gram = _gram_blocks(sub, sub)
        else:
            sub = self.local[gone]
            gram = self.depth_gram - _gram_blocks(sub, sub)
        return LocalForward(
            gain=sealed(self.gain[keep]), local=sealed(self.local[keep]),
            rotation=self.rotation, depth_rows=rows, depth_gram=sealed(gram),
            ch_types=types_,
        )


def prepare_forward(gain, normals, ch_types: Sequence[str] | None = None) -> LocalForward:
    """Check a lead field and bring it into the sources' local frames (see :class:`LocalForward`).

    Parameters
    ----------
    gain : ndarray, shape (n_chan, 3 * n_sources)
        Raw lead field, dipole-major x, y, z columns in the frame of ``normals``.
    normals : ndarray, shape (n_sources, 3)
        Unit source normals.
    ch_types : sequence of {"eeg", "mag", "grad"}, optional
        Channel types (they choose the depth prior's channels).
    """
    g = np.asarray(gain, dtype=np.float64)
    if g.ndim != 2:
        raise InverseError(f"gain has shape {g.shape}; expected (n_chan, 3 * n_sources)")
    n_chan = g.shape[0]
    g, nrm, _ = _check_forward(g, normals, n_chan)
    types_ = check_ch_types(ch_types, n_chan)
    rot = _local_frames(nrm)
    local = _rotate_to_local(g, rot)
    rows = _depth_rows(types_, n_chan)
    sub = local[rows]
    return LocalForward(
        gain=_readonly(g), local=sealed(local), rotation=_readonly(rot), depth_rows=rows,
        depth_gram=sealed(_gram_blocks(sub, sub)), ch_types=types_,
    )


def _as_forward(gain, normals, n_chan: int, ch_types) -> LocalForward:
    """``gain`` as a :class:`LocalForward` (prepared now unless it already is one)."""
    if isinstance(gain, LocalForward):
        if gain.n_chan != n_chan:
            raise InverseError(
                f"the prepared forward has {gain.n_chan} channels but the covariance has "
                f"{n_chan}; prepare it for the same channels (LocalForward.drop)"
            )
        types_ = check_ch_types(ch_types, n_chan)
        if types_ != gain.ch_types:
            raise InverseError(
                "the prepared forward was made for other channel types; pass the same "
                "ch_types to prepare_forward"
            )
        return gain
    g = np.asarray(gain, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] != n_chan:
        _check_forward(g, normals, n_chan)  # raises with the shapes and the fix
    return prepare_forward(g, normals, ch_types)


# --------------------------------------------------------------------------------------
# The operator
# --------------------------------------------------------------------------------------


def make_inverse_operator(
    gain: np.ndarray,
    normals: np.ndarray,
    noise_cov: NoiseCovariance,
    *,
    reference: np.ndarray,
    method: str = "dSPM",
    snr: float = 3.0,
    lambda2: float | None = None,
    loose: float = 0.2,
    depth: float | None = 0.8,
    fixed: bool = False,
    depth_limit: float | None = 10.0,
    rank: int | Mapping[str, int] | None = None,
    ch_names: Sequence[str] | None = None,
    ch_types: Sequence[str] | None = None,
    eloreta_options: Mapping[str, Any] | None = None,
) -> InverseOperator:
    """Build an MNE, dSPM, sLORETA or eLORETA inverse operator (reference section 5).

    Parameters
    ----------
    gain : ndarray, shape (n_chan, 3 * n_sources), or LocalForward
        Raw (un-referenced) lead field in V/(A*m) (T/(A*m) for MEG), columns dipole-major
        x, y, z in the frame of ``normals``; or the same already prepared with
        :func:`prepare_forward` (for the same ``ch_types``), when several operators are
        built from one lead field.
    normals : ndarray, shape (n_sources, 3)
        Unit source normals (outward cortical normals for surface source spaces);
        ignored with a LocalForward.
    noise_cov : NoiseCovariance
        Noise covariance in V^2 on the same channels in the same order as ``gain``.
    reference : ndarray, shape (n_chan, n_chan)
        Re-referencing matrix ``M`` applied to the data before the inverse, e.g.
        :func:`average_reference_matrix` or ``np.eye(n_chan)`` for none. It is applied to
        the gain and the covariance (``M C M^T``; harmless if the covariance was already
        estimated with the same idempotent ``M``) and folded into the kernel. With
        ``ch_types`` it must act on the EEG channels only (:func:`reference_matrix`).
    method : {"dSPM", "sLORETA", "MNE", "eLORETA"}
        Noise normalisation (dSPM, sLORETA), none (MNE), or eLORETA's iterated weights.
    snr : float
        Assumed amplitude SNR; ``lambda2 = 1 / snr**2``.
    lambda2 : float, optional
        Regularisation parameter; overrides ``snr``.
    loose : float
        Tangential source variance relative to the normal one, in [0, 1]: 1 is free
        orientation, 0 is fixed (normal) orientation.
    depth : float or None
        Depth weighting exponent (Lin et al. 2006); None (or 0) disables it. Not used by
        eLORETA (recorded as None), like MNE-Python.
    fixed : bool
        Fixed orientation along the normals (one row per source); ``loose`` is then
        ignored and recorded as 0.
    depth_limit : float or None
        Largest ratio of gain norms that depth weighting compensates (MNE's ``limit``);
        None for no limit.
    rank : int, mapping or None
        Rank of the whitened space; default the numerical rank of ``M C M^T`` per
        sensor-type block (``n - 1`` for an average reference). With several sensor types
        a mapping such as ``{"eeg": 59, "meg": 102}``.
    ch_names : sequence of str, optional
        Names of the gain's rows. Default: ``noise_cov.ch_names``. If given they must
        equal ``noise_cov.ch_names`` including order.
    ch_types : sequence of {"eeg", "mag", "grad"}, optional
        Sensor type per channel: the whitener then has one block per type (EEG; MEG),
        each from its own eigendecomposition and rank, and the depth prior uses the
        gradiometers, else the magnetometers, else EEG (as MNE-Python). None treats all
        channels as one type.
    eloreta_options : mapping, optional
        eLORETA only: ``eps`` (1e-6), ``max_iter`` (20), ``force_equal`` (False), ``init``
        (starting weights, e.g. ``op.source_weights`` of an operator for nearly the same
        channels). See :mod:`rtsource.inverse.eloreta`.

    Returns
    -------
    InverseOperator
        For eLORETA, ``noise_norm`` is all ones (no noise normalisation; output in A*m)
        and ``details`` holds the convergence report (a warning is logged if the weights
        did not converge).

    Raises
    ------
    InverseError
        On shape mismatches, non-finite or out-of-range arguments, non-unit normals, or
        a covariance on other channels. The message names the argument, value and fix.

    Notes
    -----
    Depth weighting uses the un-whitened, un-referenced gain as MNE-Python's
    ``make_inverse_operator`` does (its default ``limit_depth_chs=True`` picks one channel
    type but does not whiten).
    """
    method = _canonical_method(method)
    names = _check_noise_cov(noise_cov, ch_names)
    n_chan = len(names)
    fwd = _as_forward(gain, normals, n_chan, ch_types)
    n_src = fwd.n_sources
    types_ = fwd.ch_types
    m = _check_reference_matrix(reference, n_chan)

    if lambda2 is None:
        snr = _check_scalar(
            "snr", snr, low=0.0, low_open=True, fix="pass a positive finite SNR (e.g. 3)"
        )
        lambda2 = 1.0 / snr**2
    else:
        lambda2 = _check_scalar(
            "lambda2",
            lambda2,
            low=0.0,
            low_open=True,
            fix="pass a positive finite regularisation (e.g. 1/9) or leave it None",
        )
    loose = _check_scalar(
        "loose", loose, low=0.0, low_open=False, high=1.0,
        fix="pass a value in [0, 1] (0.2 on cortex, 1 for free orientation)",
    )
    if depth is not None:
        depth = _check_scalar(
            "depth", depth, low=0.0, low_open=False,
            fix="pass a non-negative exponent (0.8 is usual) or None to disable",
        )
    if depth_limit is not None:
        depth_limit = _check_scalar(
            "depth_limit", depth_limit, low=1.0, low_open=False,
            fix="pass a ratio >= 1 (10 is usual) or None for no limit",
        )
    if not isinstance(fixed, (bool, np.bool_)):
        raise InverseError(f"fixed is {fixed!r}; pass True or False")
    if fixed or loose == 0.0:
        fixed, loose = True, 0.0
    if method == "eLORETA":
        from . import eloreta as _eloreta

        options = _eloreta.check_options(eloreta_options)
    elif eloreta_options is not None:
        raise InverseError(
            f"eloreta_options were given but method is {method!r}; drop them or use "
            "method='eLORETA'"
        )

    # Step 1: re-reference and whiten, per sensor type (Hamalainen & Ilmoniemi 1994:
    # the noise model).
    whitener = make_whitener(
        NoiseCovariance(noise_cov.data, names, noise_cov.n_samples, noise_cov.method,
                        noise_cov.shrinkage),
        reference=m, ch_types=types_, rank=rank,
    )
    wm, rank = whitener.matrix, whitener.rank  # (rank, n_chan): part of the kernel

    # Step 3's frames: the gain in local (t1, t2, n) frames (Lin et al. 2006).
    rot = fwd.rotation
    g_local = fwd.local
    if fixed:
        n_orient = 1
        g_sel = np.ascontiguousarray(g_local[:, :, 2])
        orient_var = np.ones(n_src)
    else:
        n_orient = 3
        g_sel = g_local.reshape(n_chan, 3 * n_src)
        orient_var = np.tile([loose, loose, 1.0], n_src)
    common = dict(
        n_orient=n_orient, lambda2=float(lambda2), loose=float(loose), rank=rank,
        ch_names=names, source_rotation=rot, ch_types=types_ or (),
    )
    block_ranks = dict(whitener.block_ranks)

    if method == "eLORETA":
        if depth:
            logger.info("eLORETA does not use depth weighting (its weights compensate "
                        "depth); depth=%s is ignored", depth)
        gw = wm @ g_sel
        fit = _eloreta.fit_eloreta_weights(
            gw, n_orient, lambda2, rank, source_std=np.sqrt(orient_var),
            eps=options["eps"], max_iter=options["max_iter"],
            force_equal=options["force_equal"], init=options["init"],
        )
        leads, e, u = _eloreta.eloreta_decomposition(gw, fit, rank)
        # K = R^(1/2) V Gamma U^T W M = R G^T U diag(1 / (s^2 + lambda2)) U^T W M
        # (Tikhonov filter factors, Hamalainen & Ilmoniemi 1994)
        kernel = (leads / (e + lambda2)) @ (u.T @ wm)
        s = np.sqrt(e)
        logger.info(
            "inverse operator: eLORETA, %d sources x %d orientation(s), %d channels, "
            "rank %d, lambda2 %.4g, loose %.3g, %d iteration(s), converged %s",
            n_src, n_orient, n_chan, rank, lambda2, loose, fit.iterations, fit.converged,
        )
        return InverseOperator(
            kernel=kernel, noise_norm=np.ones(n_src), method="eLORETA", depth=None,
            singular_values=s, output_unit="A*m",
            details=dict(fit.report(), block_ranks=block_ranks),
            source_weights=fit.weights, **common,
        )

    # Step 2: depth prior on the raw gain, one value per source (Lin et al. 2006).
    depth_w = _depth_prior_from_gram(fwd.depth_gram, depth, depth_limit)

    # Step 3: orientation prior in the normal-aligned frame (Lin et al. 2006).
    source_var = np.repeat(depth_w, n_orient) * orient_var

    # Step 4: whitened, weighted gain Gt = W M G sqrt(R), scaled so that tr(Gt Gt^T) =
    # rank; the scale goes into R, so the MNE output stays in A*m. Gt itself (rank x 3
    # n_src) is never formed: everything below needs only its Gram matrix
    # Gt Gt^T = W M (G R G^T) M^T W^T, from the channel-space G R G^T, and Gt^T = sqrt(R)
    # G^T (W M)^T. That saves a pass over the lead field (a third of a hot-swap rebuild).
    gs = g_sel * np.sqrt(source_var)
    gram = wm @ (gs @ gs.T) @ wm.T
    del gs
    fro2 = float(np.trace(gram))
    if not fro2 > 0:
        raise InverseError(
            "the whitened gain is zero: the sources are invisible to these channels after "
            "re-referencing; check the gain and the reference matrix"
        )
    scale2 = rank / fro2
    source_var = source_var * scale2
    gram *= scale2
    # Gt = U S V^T from the small Gram matrix Gt Gt^T = U S^2 U^T (rank x rank): every
    # quantity below needs V only as Gt^T U S^-1, and S^-1 cancels against Gamma, so no
    # small singular value is ever divided by and the result is as accurate as an SVD
    # (lambda2 bounds the conditioning) at a fraction of the cost.
    e, u = np.linalg.eigh(0.5 * (gram + gram.T))
    e, u = np.clip(e[::-1], 0.0, None), u[:, ::-1]
    s = np.sqrt(e)

    # Step 5: Tikhonov-regularised pseudo-inverse (Hamalainen & Ilmoniemi 1994):
    # K = sqrt(R) V Gamma U^T W M with Gamma = s / (s^2 + lambda2)
    #   = sqrt(R) Gt^T U diag(1 / (s^2 + lambda2)) U^T W M
    #   = R G^T (W M)^T U diag(1 / (s^2 + lambda2)) U^T W M.
    leads = g_sel.T @ (wm.T @ (u / (e + lambda2)))  # sqrt(R) V Gamma, before the row factor R
    leads *= source_var[:, None]
    kernel = sealed(leads @ (u.T @ wm))  # handed on without copies (InverseOperator, bundle)

    # Step 6: noise normalisation.
    if method == "MNE":
        noise_norm = np.ones(n_src)
    else:
        if method == "dSPM":
            # Dale et al. 2000: sqrt(diag(K C K^T)); since W M C M^T W^T = I on the kept
            # subspace this is the row norm of sqrt(R) V Gamma.
            weighted = leads
        else:
            # Pascual-Marqui 2002: sqrt(diag(K G R)) = row norm of sqrt(R) V Gamma
            # sqrt(1 + s^2 / lambda2) (resolution matrix diagonal, whitened form).
            weighted = leads * np.sqrt(1.0 + e / lambda2)
        row_norm2 = np.einsum("ij,ij->i", weighted, weighted)
        # Pool the three orientations of a source (MNE-Python's combine_xyz).
        noise_norm = np.sqrt(row_norm2.reshape(n_src, n_orient).sum(axis=1))
        if np.any(noise_norm <= 0):
            bad = np.flatnonzero(noise_norm <= 0)
            raise InverseError(
                f"{bad.size} source(s) have zero noise norm (indices {_short_list(bad)}); "
                "they are invisible after whitening -- drop them or use method='MNE'"
            )

    logger.info(
        "inverse operator: %s, %d sources x %d orientation(s), %d channels, rank %d, "
        "lambda2 %.4g, loose %.3g, depth %s, largest singular value %.4g",
        method, n_src, n_orient, n_chan, rank, lambda2, loose, depth, s[0],
    )
    return InverseOperator(
        kernel=kernel,
        noise_norm=noise_norm,
        method=method,
        depth=None if depth is None else float(depth),
        singular_values=s,
        output_unit="A*m" if method == "MNE" else "",
        details={"block_ranks": block_ranks},
        **common,
    )


def apply_inverse(op: InverseOperator, data: np.ndarray) -> np.ndarray:
    """Apply an inverse operator to raw data (plain NumPy reference implementation).

    Parameters
    ----------
    op : InverseOperator
        The operator.
    data : ndarray, shape (n_samples, n_chan)
        Raw data in V (T for MEG) in the order of ``op.ch_names``.

    Returns
    -------
    ndarray, shape (n_samples, n_sources)
        For ``n_orient == 3`` the pooled amplitude ``||K_k x|| / noise_norm_k`` (>= 0);
        for ``n_orient == 1`` the signed ``K_k x / noise_norm_k``. In ``op.output_unit``.
    """
    if not isinstance(op, InverseOperator):
        raise InverseError(f"op is a {type(op).__name__}; pass an InverseOperator")
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != op.n_chan:
        raise InverseError(
            f"data has shape {x.shape}; expected (n_samples, {op.n_chan}) in the "
            f"operator's channel order ({_short_list(op.ch_names)})"
        )
    y = x @ op.kernel.T  # (n_samples, n_sources * n_orient)
    if op.n_orient == 3:
        y = np.sqrt(np.sum(y.reshape(x.shape[0], op.n_sources, 3) ** 2, axis=2))
    return y / op.noise_norm
