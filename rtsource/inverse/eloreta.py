"""eLORETA: exact low resolution electromagnetic tomography (reference section 5, step 7).

eLORETA (Pascual-Marqui 2007, arXiv:0710.3341; Pascual-Marqui et al. 2011, Phil Trans R
Soc A 369:3768) is a weighted minimum-norm inverse whose source weights ``R`` are chosen so
that the estimate of any single point source has zero localisation error, also with
noise (the weights are the fixed point of ``R_k = (G_k^T N G_k)^(-1/2)`` with
``N = (G R G^T + lambda2 I)^+``). No depth weighting and no noise normalisation are
needed: the weights compensate depth themselves, and the output is a current estimate
in A*m.

The algorithm follows MNE-Python's ``minimum_norm/_eloreta.py`` (adapted there from Guido
Nolte's reference code) so that results agree with it:

- ``G`` is the whitened gain (``W M G``, rows = kept whitened dimensions), columns per
  source in the local frame (tangential 1, tangential 2, normal) or the normal only.
- With a loose orientation prior ``p = (loose, loose, 1)`` the gain is scaled by
  ``sqrt(p)`` during the iteration and the prior is re-applied to the weights after each
  update, element-wise, ``R_k <- R_k o (sqrt(p) sqrt(p)^T)`` ("eLORETA undoes it"); for
  free orientation (loose = 1) and fixed orientation this is the plain algorithm.
- After each update ``R`` is scaled so that ``tr(G R G^T) = rank``, which keeps
  ``lambda2`` comparable with the MNE/dSPM/sLORETA operators.
- Convergence: ``||R_new - R_old||_F / ||R_old||_F < eps`` (default 1e-6) within
  ``max_iter`` (default 20) iterations; otherwise a warning is logged and the operator
  records ``converged = False``.
- Finally ``A = G R^(1/2)`` (unscaled gain), ``A = U S V^T`` and the kernel is
  ``K = R^(1/2) V Gamma U^T W M`` with ``Gamma = s / (s^2 + lambda2)``, computed as
  ``R G^T U diag(1 / (s^2 + lambda2)) U^T W M`` from the eigenpairs of ``G R G^T``.
"""

from __future__ import annotations

import logging
import types
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import InverseError
from ._linalg import sym_pow
from .params import EloretaOptions

logger = logging.getLogger(__name__)

#: Defaults of ``eloreta_options`` (as MNE-Python's; one place: :class:`.params.EloretaOptions`).
_DEFAULTS = EloretaOptions()
DEFAULT_OPTIONS: Mapping[str, Any] = types.MappingProxyType(_DEFAULTS.to_json())


@dataclass(frozen=True, eq=False)
class EloretaFit:
    """The eLORETA source weights and how the fixed-point iteration went.

    Attributes
    ----------
    weights : ndarray, shape (n_sources, 3, 3) or (n_sources * n_orient,)
        The weights ``R`` as iterated: 3x3 blocks in the local source frame for a
        free/loose orientation, one value per row for a fixed orientation or
        ``force_equal``. Scaled so that ``tr(Gb R Gb^T) = rank`` with ``Gb`` the
        prior-scaled whitened gain the iteration uses. Read-only.
    iterations : int
        Number of updates computed.
    final_change : float
        ``||R_new - R_old||_F / ||R_old||_F`` of the last update.
    converged : bool
        ``final_change < eps``.
    changes : tuple of float
        The relative change of every update.
    eps : float
    max_iter : int
    force_equal : bool
    """

    weights: np.ndarray
    iterations: int
    final_change: float
    converged: bool
    changes: tuple[float, ...] = field(default_factory=tuple)
    eps: float = _DEFAULTS.eps
    max_iter: int = _DEFAULTS.max_iter
    force_equal: bool = _DEFAULTS.force_equal

    def __post_init__(self) -> None:
        w = np.array(self.weights, dtype=np.float64)
        w.flags.writeable = False
        object.__setattr__(self, "weights", w)

    def report(self) -> dict:
        """JSON-friendly summary (what the operator's ``details`` record)."""
        return {
            "iterations": int(self.iterations),
            "final_change": float(self.final_change),
            "converged": bool(self.converged),
            "eps": float(self.eps),
            "max_iter": int(self.max_iter),
            "force_equal": bool(self.force_equal),
        }


def check_options(
    options: EloretaOptions | Mapping[str, Any] | None, init: np.ndarray | None = None
) -> tuple[EloretaOptions, np.ndarray | None]:
    """``eloreta_options`` as typed options and the warm start, every value checked.

    ``options`` is an :class:`~.params.EloretaOptions`, or a mapping as MNE-Python's
    ``eloreta_options`` (``eps``, ``max_iter``, ``force_equal``, and ``init``, the starting
    weights) whose missing keys take the defaults. ``init`` is the warm start when the
    options are typed.
    """
    if options is None:
        options = {}
    if isinstance(options, EloretaOptions):
        return options, init
    if not isinstance(options, Mapping):
        raise InverseError(
            f"eloreta_options is a {type(options).__name__}; pass EloretaOptions(...) or a "
            "mapping such as {'eps': 1e-6, 'max_iter': 20}"
        )
    known = set(DEFAULT_OPTIONS) | {"init"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InverseError(
            f"eloreta_options has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known keys are {', '.join(sorted(known))}"
        )
    out = dict(DEFAULT_OPTIONS, init=init)
    out.update(options)
    try:
        eps = float(out["eps"])
    except (TypeError, ValueError):
        eps = float("nan")
    if not (np.isfinite(eps) and eps > 0):
        raise InverseError(
            f"eloreta_options['eps'] is {out['eps']!r}; pass a positive tolerance (1e-6)"
        )
    mi = out["max_iter"]
    if isinstance(mi, bool) or not isinstance(mi, (int, np.integer)) or mi < 1:
        raise InverseError(
            f"eloreta_options['max_iter'] is {mi!r}; pass a positive integer (20)"
        )
    fe = out["force_equal"]
    if fe is None:
        fe = False
    if not isinstance(fe, (bool, np.bool_)):
        raise InverseError(f"eloreta_options['force_equal'] is {fe!r}; pass True or False")
    return EloretaOptions(eps=eps, max_iter=int(mi), force_equal=bool(fe)), out["init"]


# --------------------------------------------------------------------------------------
# The fixed-point iteration
# --------------------------------------------------------------------------------------


def _is_blocks(weights: np.ndarray) -> bool:
    return weights.ndim == 3


# Internally the gain is kept transposed, ``gt = G^T`` with shape (n_cols, rank), rows
# source-major (3 k + i): per-source blocks are then contiguous (``gt.reshape(n_src, 3,
# rank)`` holds ``G_k^T``) and every product is a BLAS call or a batched 3x3 matmul.


def _rg(gt: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``R G^T`` (n_cols, rank) for block-diagonal ``R``."""
    if _is_blocks(weights):
        n_src = weights.shape[0]
        return np.matmul(weights, gt.reshape(n_src, 3, -1)).reshape(gt.shape)
    return gt * weights[:, None]


def _grg(gt: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``G R G^T`` for block-diagonal ``R``; shape (rank, rank)."""
    out = gt.T @ _rg(gt, weights)
    return 0.5 * (out + out.T)


def _normalise(gt: np.ndarray, weights: np.ndarray, rank: int):
    """Scale ``R`` so that ``tr(G R G^T) = rank`` (keeps lambda2 meaningful)."""
    grg = _grg(gt, weights)
    norm = np.trace(grg) / rank
    if not (np.isfinite(norm) and norm > 0):
        raise InverseError(
            "eLORETA weights collapsed (tr(G R G^T) is "
            f"{np.trace(grg)!r}); the whitened gain is zero or not finite -- check the "
            "gain, the reference and the noise covariance"
        )
    return grg / norm, weights / norm


def _regularised_pinv(grg: np.ndarray, lambda2: float, rank: int) -> np.ndarray:
    """``N = (G R G^T + lambda2 I)^+`` on the top ``rank`` eigenpairs (Pascual-Marqui 2007)."""
    s, u = np.linalg.eigh(grg)
    s = np.abs(s)
    order = np.argsort(s)[::-1][:rank]
    s, u = s[order], u[:, order]
    inv = np.zeros_like(s)
    pos = s > 0
    inv[pos] = 1.0 / (s[pos] + lambda2)
    return (u * inv) @ u.T


def _step(gt_b, weights, lambda2, rank, source_std, n_orient, force_equal, grg=None):
    """One update on the transposed prior-scaled gain (see :func:`eloreta_step`)."""
    if grg is None:
        grg = _grg(gt_b, weights)
    n_mat = _regularised_pinv(grg, lambda2, rank)
    ngt = gt_b @ n_mat  # (N G)^T, rows per gain column
    if n_orient == 3:
        n_src = gt_b.shape[0] // 3
        # G_k^T N G_k, (n_src, 3, 3)
        m = np.matmul(ngt.reshape(n_src, 3, -1), gt_b.reshape(n_src, 3, -1).transpose(0, 2, 1))
        m = 0.5 * (m + m.transpose(0, 2, 1))
        if force_equal:
            # one weight per source: 1 / mean of the singular values of M_k^(1/2)
            s = _sym_sqrt_eigs(m)
            with np.errstate(divide="ignore"):
                new = np.repeat(1.0 / np.mean(s, axis=-1), 3)
            prior = source_std**2
        else:
            new = sym_pow(m, -0.5)
            prior = source_std.reshape(-1, 1, 3) * source_std.reshape(-1, 3, 1)
    else:
        d = np.einsum("ij,ij->i", ngt, gt_b)  # diag(G^T N G)
        with np.errstate(divide="ignore"):
            new = 1.0 / np.sqrt(d)
        prior = source_std**2
    new = new * prior  # re-apply the orientation prior (MNE-Python: "eLORETA undoes it")
    grg, new = _normalise(gt_b, new, rank)
    return new, grg


def eloreta_step(
    g_biased: np.ndarray,
    weights: np.ndarray,
    lambda2: float,
    rank: int,
    source_std: np.ndarray,
    *,
    n_orient: int,
    force_equal: bool = _DEFAULTS.force_equal,
) -> tuple[np.ndarray, np.ndarray]:
    """One eLORETA weight update (Pascual-Marqui 2007, the fixed-point equations).

    Parameters
    ----------
    g_biased : ndarray, shape (rank, n_sources * n_orient)
        Whitened gain times ``source_std`` per column.
    weights : ndarray
        Current ``R`` (see :class:`EloretaFit`), normalised.
    lambda2 : float
    rank : int
    source_std : ndarray, shape (n_sources * n_orient,)
        Square root of the orientation prior per column.
    n_orient : {1, 3}
    force_equal : bool
        One weight per source for all three orientations (MNE-Python's option).

    Returns
    -------
    weights : ndarray
        ``N = (G R G^T + lambda2 I)^+`` (top ``rank``), ``R_k = (G_k^T N G_k)^(-1/2)``
        (3x3, or the scalar ``(g_k^T N g_k)^(-1/2)``) times the prior element-wise,
        normalised so that ``tr(G R G^T) = rank``.
    grg : ndarray, shape (rank, rank)
        ``G R G^T`` for the new weights.
    """
    gt_b = np.ascontiguousarray(np.asarray(g_biased, dtype=np.float64).T)
    return _step(gt_b, np.asarray(weights, dtype=np.float64), lambda2, rank,
                 np.asarray(source_std, dtype=np.float64), n_orient, force_equal)


def _sym_sqrt_eigs(m: np.ndarray, rcond: float = 1e-7) -> np.ndarray:
    """sqrt of the eigenvalues of symmetric 3x3 blocks, those below rcond * max -> inf
    (as MNE-Python's ``sqrtm_sym(..., inv=True)`` returns them)."""
    s = np.linalg.eigvalsh(m)
    limit = s[..., -1:] * rcond
    s = np.where(s <= limit, np.inf, s)
    return np.sqrt(s)


def fit_eloreta_weights(
    gain_w: np.ndarray,
    n_orient: int,
    lambda2: float,
    rank: int,
    *,
    source_std: np.ndarray | None = None,
    eps: float = _DEFAULTS.eps,
    max_iter: int = _DEFAULTS.max_iter,
    force_equal: bool = _DEFAULTS.force_equal,
    init: np.ndarray | None = None,
) -> EloretaFit:
    """Iterate the eLORETA weights to their fixed point.

    Parameters
    ----------
    gain_w : ndarray, shape (rank, n_sources * n_orient)
        Whitened gain ``W M G`` in the local source frames (per source: tangential 1,
        tangential 2, normal; or the normal only for ``n_orient == 1``).
    n_orient : {1, 3}
    lambda2 : float
        Regularisation (``1 / snr**2``).
    rank : int
        Rank of the whitened space.
    source_std : ndarray, shape (n_sources * n_orient,), optional
        Square root of the orientation prior (``sqrt(loose)`` for tangential columns, 1
        for normal ones); default ones (free orientation).
    eps, max_iter, force_equal
        See :data:`DEFAULT_OPTIONS`.
    init : ndarray, optional
        Starting weights (same shape as :attr:`EloretaFit.weights`), e.g. those of an
        operator for nearly the same channels: a warm start converges in fewer
        iterations to the same fixed point (within ``eps``).

    Returns
    -------
    EloretaFit
    """
    g = np.asarray(gain_w, dtype=np.float64)
    n_rows, n_cols = g.shape
    if n_orient not in (1, 3) or n_cols % n_orient:
        raise InverseError(f"n_orient is {n_orient!r} for {n_cols} gain columns; use 1 or 3")
    std = np.ones(n_cols) if source_std is None else np.asarray(source_std, dtype=np.float64)
    if std.shape != (n_cols,):
        raise InverseError(f"source_std has shape {std.shape}; expected ({n_cols},)")
    n_src = n_cols // n_orient
    blocks = n_orient == 3 and not force_equal
    gt_b = np.ascontiguousarray((g * std).T)  # prior-scaled gain (as MNE-Python), transposed
    if blocks:
        prior = std.reshape(n_src, 1, 3) * std.reshape(n_src, 3, 1)
        start = np.broadcast_to(np.eye(3), (n_src, 3, 3)) * prior
        shape = (n_src, 3, 3)
    else:
        prior = std**2
        start = np.ones(n_cols) * prior
        shape = (n_cols,)
    if init is not None:
        start = np.array(init, dtype=np.float64)
        if start.shape != shape or not np.all(np.isfinite(start)):
            raise InverseError(
                f"eloreta_options['init'] has shape {start.shape}; expected finite weights "
                f"of shape {shape} (EloretaFit.weights of a matching operator)"
            )
    grg, weights = _normalise(gt_b, np.array(start), rank)

    changes = []
    converged = False
    for _ in range(max_iter):
        last = weights
        weights, grg = _step(gt_b, weights, lambda2, rank, std, n_orient, force_equal, grg)
        delta = float(np.linalg.norm((weights - last).ravel()) / np.linalg.norm(last.ravel()))
        changes.append(delta)
        if delta < eps:
            converged = True
            break
    if converged:
        logger.info(
            "eLORETA weights converged after %d iteration(s) (relative change %.2g < %.2g)",
            len(changes), changes[-1], eps,
        )
    else:
        logger.warning(
            "eLORETA weights did not converge in %d iterations (last relative change "
            "%.3g >= eps %.3g); the operator is usable but not at the fixed point -- raise "
            "eloreta_options['max_iter'] or loosen 'eps'",
            max_iter, changes[-1], eps,
        )
    return EloretaFit(
        weights=weights,
        iterations=len(changes),
        final_change=changes[-1],
        converged=converged,
        changes=tuple(changes),
        eps=float(eps),
        max_iter=int(max_iter),
        force_equal=bool(force_equal),
    )


def eloreta_decomposition(
    gain_w: np.ndarray, fit: EloretaFit, rank: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Factors of the eLORETA kernel for the fitted weights (the last step of section 5.7).

    The weights are first rescaled so that ``tr(G R G^T) = rank`` for the unscaled
    whitened gain (as MNE-Python does after undoing the prior scaling). With
    ``A = G R^(1/2) = U S V^T`` the kernel ``R^(1/2) V Gamma U^T`` equals
    ``R G^T U diag(1 / (s^2 + lambda2)) U^T``, and ``A A^T = G R G^T``: so only the small
    ``G R G^T`` is decomposed and ``R^(1/2)`` is never formed.

    Parameters
    ----------
    gain_w : ndarray, shape (rank, n_sources * n_orient)
        Whitened gain (not prior-scaled).
    fit : EloretaFit
    rank : int

    Returns
    -------
    leads : ndarray, shape (n_sources * n_orient, rank)
        ``R G^T U``.
    s2 : ndarray, shape (rank,)
        ``s^2``: eigenvalues of ``G R G^T`` (squared singular values of ``G R^(1/2)``),
        descending.
    u : ndarray, shape (rank, rank)
        Their eigenvectors.
    """
    gt = np.ascontiguousarray(np.asarray(gain_w, dtype=np.float64).T)
    grg, weights = _normalise(gt, fit.weights, rank)
    e, u = np.linalg.eigh(grg)
    e, u = np.clip(e[::-1], 0.0, None), u[:, ::-1]
    return _rg(gt, weights) @ u, e, u
