"""LCMV beamformers (reference section 6), as :class:`~.operator.LinearInverse` s.

A linearly constrained minimum-variance beamformer (Van Veen et al. 1997, IEEE TBME
44:867) passes the activity of one source with unit gain while minimising the output
power, so it needs the covariance ``C`` of the data themselves (activity included), from
a calibration recording. Everything happens in the noise-whitened space: with the
whitener ``W M`` of :func:`~.whitening.make_whitener` (re-referencing included, one
block per sensor type),

    G = W M G_raw (per source the local frame: tangential 1, tangential 2, normal)
    C = W M C_raw M^T W^T

and the weights finally act on raw data in V: ``kernel = W_lcmv W M``.

Regularisation and rank (Gross & Ioannides 1999, Phys Med Biol 44:2081, eq. 25; the
rank handling of MNE-Python's ``_reg_pinv``): ``C^-1`` is the pseudo-inverse of
``C + mu I`` on its top ``k`` eigenpairs, ``mu = reg * tr(C) / n_chan`` (the mean
eigenvalue of the ``n_chan x n_chan`` whitened covariance, whose directions removed by
the reference count as zero, as in MNE-Python), ``k`` = the numerical rank of ``C``
(at most the whitener's rank; an average reference removes one).

Per source ``k`` with lead field ``G_k`` (``n x 3``, or ``n x 1``):

- unit gain (Van Veen et al. 1997): ``W_k = (G_k^T C^-1 G_k)^-1 G_k^T C^-1``, so
  ``W_k G_k = I``; output in A*m.
- unit-noise gain (Sekihara & Nagarajan 2008, "Adaptive spatial filters for
  electromagnetic brain imaging", sec. 4.4; weight-normalised beamformer): every row
  ``w`` of the unit-gain ``W_k`` divided by ``||w||``. In the whitened space
  ``||w|| = 1``, i.e. each output has unit variance when the data are noise with the
  noise covariance (``w_raw C_noise w_raw^T = 1``); dimensionless.
- unit-noise gain, rotation invariant (Sekihara & Nagarajan 2008, sec. 4.4; MNE-Python's
  ``"unit-noise-gain-invariant"``): ``W_k = (G_k^T C^-2 G_k)^(-1/2) G_k^T C^-1``;
  ``W_k W_k^T = I``.
- NAI, neural activity index (Van Veen et al. 1997; Sekihara & Nagarajan 2008): the
  unit-noise-gain weights divided by ``sqrt(max(e_k, mu))``, ``e_k`` the smallest
  retained eigenvalue of ``C`` (the noise level in the whitened space).

Orientation: ``"free"`` keeps three rows per source (output ``||W_k x||``);
``"fixed"`` uses the cortical normal; ``"max-power"`` (Sekihara et al. 2004, IEEE TBME
51:1726; Sekihara & Nagarajan 2008 eq. 4.47) picks per source the eigenvector
with the largest eigenvalue of ``(G^T C^-2 G)^-1 (G^T C^-1 G)`` for the normalised
variants and of ``(G^T C^-1 G)^-1`` for unit gain, sign aligned to the normal; both
give a signed output.
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np

from ..errors import InverseError
from ._checks import check_channels, check_reference_matrix, check_scalar, short_list
from ._linalg import apply_blocks, eigh, gram_blocks, sym_pow
from .covariance import DataCovariance, NoiseCovariance
from .operator import LinearInverse
from .params import ORIENTATIONS, LcmvParams
from .params import WEIGHT_NORMS as _NAMED_WEIGHT_NORMS
from .prepared_forward import as_forward
from .whitening import make_whitener

logger = logging.getLogger(__name__)

#: ``weight_norm`` values: None (unit gain, MNE-Python's spelling) or a name.
WEIGHT_NORMS = (None,) + _NAMED_WEIGHT_NORMS

# The defaults of every parameter (one place: rtsource.inverse.params).
_DEFAULTS = LcmvParams()

# Relative eigenvalue cut of the small per-source (3x3) inversions, as MNE-Python.
_RCOND = 1e-7


def _check_data_cov(data_cov, names: tuple[str, ...]) -> DataCovariance:
    if not isinstance(data_cov, DataCovariance):
        extra = (
            " (a NoiseCovariance was given: pass the covariance of the calibration data "
            "including the activity, estimate_data_covariance)"
            if isinstance(data_cov, NoiseCovariance)
            else ""
        )
        raise InverseError(
            f"data_cov is a {type(data_cov).__name__}; pass a DataCovariance "
            f"(estimate_data_covariance){extra}"
        )
    if data_cov.ch_names != names:
        try:
            check_channels(names, data_cov.ch_names)
        except InverseError as exc:
            raise InverseError(
                str(exc).replace("noise_cov.ch_names", "data_cov.ch_names")
            ) from None
    return data_cov


def _regularised_inverse(
    cov_w: np.ndarray, reg: float, n_chan: int
) -> tuple[np.ndarray, float, int, np.ndarray]:
    """``(C + mu I)^+`` on the top ``k`` eigenpairs of the whitened data covariance.

    Returns
    -------
    c_inv : ndarray, shape (r, r)
    loading : float
        ``mu = reg * tr(C) / n_chan`` (Gross & Ioannides 1999, eq. 25).
    k : int
        Number of eigenpairs kept (numerical rank of ``C``).
    eig : ndarray, shape (r,)
        Eigenvalues of ``C`` (unregularised), descending.
    """
    r = cov_w.shape[0]
    e, vec = np.linalg.eigh(cov_w)
    e, vec = e[::-1], vec[:, ::-1]
    if not e[0] > 0:
        raise InverseError(
            "the whitened data covariance is zero; estimate data_cov from a recording "
            "with signal (estimate_data_covariance)"
        )
    if e[-1] < -1e-7 * e[0]:
        logger.warning(
            "the data covariance is not positive semi-definite (smallest whitened "
            "eigenvalue %.3g, largest %.3g); the beamformer will be unreliable",
            e[-1], e[0],
        )
    k = int(np.sum(e > e[0] * r * np.finfo(float).eps))
    loading = reg * float(np.sum(e)) / n_chan
    d = e[:k] + loading
    c_inv = (vec[:, :k] / d) @ vec[:, :k].T
    return 0.5 * (c_inv + c_inv.T), loading, k, e


def _max_power_orientation(
    denom: np.ndarray, ori_denom: np.ndarray | None
) -> np.ndarray:
    """Per-source unit orientation of maximum output power, local frame, normal > 0.

    ``ori_denom is None`` (unit gain): the eigenvector of the largest eigenvalue of
    ``(G^T C^-1 G)^+``, i.e. of the smallest non-zero one of ``G^T C^-1 G``. Otherwise
    (normalised weights, Sekihara & Nagarajan 2008 eq. 4.47): the eigenvector of the
    largest eigenvalue of ``B^+ A`` with ``A = G^T C^-1 G``, ``B = G^T C^-2 G``, found
    from the symmetric form ``B^(-1/2) A B^(-1/2) y = lambda y``, ``eta = B^(-1/2) y``.
    """
    if ori_denom is None:
        s, u = eigh(denom)
        limit = s[:, -1:] * _RCOND
        inv = np.where(s > limit, 1.0 / np.where(s > limit, s, 1.0), 0.0)
        pick = np.argmax(inv, axis=1)
        eta = u[np.arange(len(u)), :, pick]
    else:
        b_ih = sym_pow(ori_denom, -0.5, _RCOND)
        sym = np.matmul(np.matmul(b_ih, denom), b_ih)
        sym = 0.5 * (sym + np.swapaxes(sym, -1, -2))
        _, u = eigh(sym)
        y = u[:, :, -1]
        eta = np.einsum("kij,kj->ki", b_ih, y)
    norm = np.linalg.norm(eta, axis=1, keepdims=True)
    norm[norm == 0] = 1.0
    eta = eta / norm
    # the sign of an eigenvector is arbitrary: align it with the normal (last local axis)
    sign = np.sign(eta[:, 2:3])
    sign[sign == 0] = 1.0
    return eta * sign


def make_lcmv(
    gain: np.ndarray,
    normals: np.ndarray,
    data_cov: DataCovariance,
    noise_cov: NoiseCovariance | None,
    *,
    reference: np.ndarray,
    reg: float = _DEFAULTS.reg,
    weight_norm: str | None = _DEFAULTS.weight_norm,
    orientation: str = _DEFAULTS.orientation,
    rank: int | Mapping[str, int] | None = None,
    ch_names: Sequence[str] | None = None,
    ch_types: Sequence[str] | None = None,
    depth: float | None = _DEFAULTS.depth,
) -> LinearInverse:
    """Build an LCMV beamformer as an inverse operator (reference section 6).

    Parameters
    ----------
    gain : ndarray, shape (n_chan, 3 * n_sources), or LocalForward
        Raw (un-referenced) lead field in V/(A*m) (T/(A*m) for MEG), dipole-major x, y, z,
        or the same prepared with :func:`~.prepared_forward.prepare_forward`.
    normals : ndarray, shape (n_sources, 3)
        Unit source normals (ignored with a LocalForward).
    data_cov : DataCovariance
        Covariance of calibration data containing the activity, V^2, same channels and
        order as the gain (:func:`~.covariance.estimate_data_covariance`).
    noise_cov : NoiseCovariance or None
        Noise covariance for whitening (V^2). None whitens with an identity in SI units
        (MNE-Python's ``make_ad_hoc_cov(std=1)``); only sensible for one sensor type.
    reference : ndarray, shape (n_chan, n_chan)
        Re-referencing matrix ``M`` (folded into the weights, applied to ``G`` and ``C``).
    reg : float
        Diagonal loading as a fraction of the mean eigenvalue of the whitened data
        covariance (0.05 by default, 0 for none).
    weight_norm : {"unit-gain", "unit-noise-gain", "unit-noise-gain-invariant", "nai"} or None
        "unit-gain" (or None) for the unit-gain filter (output in A*m); the others are
        dimensionless.
    orientation : {"max-power", "free", "fixed"}
        ``"free"``: three rows per source, output ``||W_k x||`` (``n_orient`` 3);
        ``"fixed"``: along the normal; ``"max-power"``: per-source orientation of
        maximum power (stored in ``orientations``), sign aligned to the normal. The last
        two are signed (``n_orient`` 1).
    rank : int, mapping or None
        Rank of the noise whitener (see :func:`~.whitening.make_whitener`); the data
        covariance is inverted on at most this many eigenpairs.
    ch_names : sequence of str, optional
        Names of the gain's rows (default: the covariance's).
    ch_types : sequence of {"eeg", "mag", "grad"}, optional
        Sensor types: one whitening block per type (the reference then acts on EEG only).
    depth : float or None
        Depth weighting exponent as MNE-Python's ``make_lcmv(depth=...)``: the whitened
        gain of source k is scaled by ``||G_k||_F^-depth`` (no limit). It changes only
        the scale of unit-gain outputs (then reported in arbitrary units); None (default)
        for none.

    Returns
    -------
    LinearInverse
        ``method == "LCMV"``, ``kernel`` = the weights for raw data (reference and noise
        whitener included), ``noise_norm`` all ones, ``lambda2`` 0, ``details`` with
        ``reg``, ``loading``, ``weight_norm``, ``orientation``, ``data_rank`` and
        ``noise_level``; ``singular_values`` are the eigenvalues of the whitened data
        covariance.

    Notes
    -----
    Regularisation and forward-model errors: when the lead field of the active source is
    off by a relative error ``epsilon`` (a template head, an off-grid source), a weakly
    loaded beamformer treats the mismatched part as interference and cancels the source
    itself once its whitened power exceeds about ``(noise + mu) / epsilon^2``; diagonal
    loading is exactly the remedy (robust Capon beamforming: Li, Stoica & Wang 2003,
    IEEE TSP 51:1702). Measured with rtsource's simulator (another head model and
    cortex than the inverse's, 10 dB single dipoles, 64 channels): the normalised variants
    at ``reg=0.05`` miss ~30-50 % of the dipoles by several cm while ``reg >= 0.3`` finds
    all of them within 10 mm (``tools/localisation.py``); unit gain with max-power
    orientation was robust already at 0.05.
    """
    if weight_norm not in WEIGHT_NORMS:
        raise InverseError(
            f"weight_norm is {weight_norm!r}; use one of "
            f"{', '.join(repr(w) for w in WEIGHT_NORMS)}"
        )
    if weight_norm == "unit-gain":
        weight_norm = None
    if orientation not in ORIENTATIONS:
        raise InverseError(
            f"orientation is {orientation!r}; use one of {', '.join(map(repr, ORIENTATIONS))}"
        )
    reg = check_scalar(
        "reg", reg, low=0.0, low_open=False,
        fix="pass a non-negative fraction of the mean eigenvalue (0.05 is usual)",
    )
    if depth is not None:
        depth = check_scalar(
            "depth", depth, low=0.0, low_open=False,
            fix="pass a non-negative exponent or None to disable",
        )
    if noise_cov is None:
        if not isinstance(data_cov, DataCovariance):
            _check_data_cov(data_cov, ())  # raises: names the type and the fix
        names = data_cov.ch_names if ch_names is None else tuple(str(c) for c in ch_names)
        noise = NoiseCovariance(np.eye(len(names)), names, 0, "ad_hoc", 0.0)
    else:
        if not isinstance(noise_cov, NoiseCovariance) or isinstance(noise_cov, DataCovariance):
            raise InverseError(
                f"noise_cov is a {type(noise_cov).__name__}; pass a NoiseCovariance "
                "(estimate_noise_covariance on a noise-only recording) or None"
            )
        names = noise_cov.ch_names if ch_names is None else tuple(str(c) for c in ch_names)
        check_channels(names, noise_cov.ch_names)
        noise = noise_cov
    data_cov = _check_data_cov(data_cov, names)
    n_chan = len(names)
    fwd = as_forward(gain, normals, n_chan, ch_types)
    n_src = fwd.n_sources
    types_ = fwd.ch_types
    m = check_reference_matrix(reference, n_chan)

    whitener = make_whitener(
        NoiseCovariance(noise.data, names, noise.n_samples, noise.method, noise.shrinkage),
        reference=m, ch_types=types_, rank=rank,
    )
    wm, r = whitener.matrix, whitener.rank

    rot = fwd.rotation
    g3 = (wm @ fwd.local.reshape(n_chan, 3 * n_src)).reshape(r, n_src, 3)
    if depth:
        # MNE-Python's depth_sparse: combine_xyz="fro" on the whitened gain, no limit
        d = np.sum(g3 * g3, axis=(0, 2))
        d[d == 0] = np.min(d[d > 0])
        g3 = g3 * np.sqrt((1.0 / d) ** depth)[None, :, None]

    cov_w = wm @ data_cov.data @ wm.T
    cov_w = 0.5 * (cov_w + cov_w.T)
    c_inv, loading, k, eig = _regularised_inverse(cov_w, reg, n_chan)
    if k < r:
        logger.warning(
            "the whitened data covariance has rank %d, below the noise whitener's rank "
            "%d: the beamformer inverts it on its top %d eigenpairs (record longer "
            "calibration data, or pass rank=%d)", k, r, k, k,
        )
    if k < r and reg == 0:
        logger.warning("reg = 0 with a rank-deficient data covariance: weights may be noisy")

    cg3 = (c_inv @ g3.reshape(r, -1)).reshape(r, n_src, 3)  # C^-1 G_k
    eta = None
    if orientation == "free":
        n_orient = 3
        gk, cgk = g3, cg3
    else:
        n_orient = 1
        if orientation == "fixed":
            eta = np.tile([0.0, 0.0, 1.0], (n_src, 1))
        else:
            denom3 = gram_blocks(g3, cg3)
            ori_denom = None if weight_norm is None else gram_blocks(cg3, cg3)
            eta = _max_power_orientation(denom3, ori_denom)
        gk = np.einsum("cki,ki->ck", g3, eta)[:, :, None]
        cgk = np.einsum("cki,ki->ck", cg3, eta)[:, :, None]

    # Unit-gain filter, W_k^T = C^-1 G_k (G_k^T C^-1 G_k)^-1 (Van Veen et al. 1997).
    if n_orient == 3:
        denom = gram_blocks(gk, cgk)
        denom = 0.5 * (denom + np.swapaxes(denom, -1, -2))
        wt = apply_blocks(sym_pow(denom, -1.0, _RCOND), cgk)  # (r, n_src, 3)
    else:
        denom = np.sum(gk[:, :, 0] * cgk[:, :, 0], axis=0)
        inv = np.zeros_like(denom)
        ok = denom > 0
        inv[ok] = 1.0 / denom[ok]
        wt = cgk * inv[None, :, None]

    noise_level = None
    if weight_norm in ("unit-noise-gain", "nai"):
        # Sekihara & Nagarajan 2008: w / ||w|| per row (whitened space: unit noise gain)
        norms = np.sqrt(np.sum(wt * wt, axis=0))  # (n_src, n_orient)
        norms[norms == 0] = np.inf
        wt = wt / norms[None]
        if weight_norm == "nai":
            # noise level: smallest retained eigenvalue of C, at least the loading
            noise_level = float(max(eig[k - 1], loading))
            wt = wt / np.sqrt(noise_level)
    elif weight_norm == "unit-noise-gain-invariant":
        # (G^T C^-2 G)^(-1/2) G^T C^-1 (Sekihara & Nagarajan 2008; rotation invariant)
        if n_orient == 3:
            inner = gram_blocks(cgk, cgk)
            inner = 0.5 * (inner + np.swapaxes(inner, -1, -2))
            wt = apply_blocks(sym_pow(inner, -0.5, _RCOND), cgk)
        else:
            norms = np.sqrt(np.sum(cgk * cgk, axis=0))
            norms[norms == 0] = np.inf
            wt = cgk / norms[None]

    weights = wt.reshape(r, n_src * n_orient).T  # (n_rows, r), whitened space
    kernel = weights @ wm

    orientations = None
    if orientation == "max-power":
        orientations = np.einsum("kji,kj->ki", rot, eta)  # local -> gain frame
    if weight_norm is None:
        unit = "a.u." if depth else "A*m"
    else:
        unit = ""
    details = {
        "reg": float(reg),
        "loading": float(loading),
        "weight_norm": weight_norm,
        "orientation": orientation,
        "data_rank": int(k),
        "noise_level": noise_level,
        "block_ranks": dict(whitener.block_ranks),
        "data_cov_n_samples": int(data_cov.n_samples),
        "data_cov_method": data_cov.method,
    }
    logger.info(
        "LCMV beamformer: %s, %s orientation, %d sources, %d channels, noise rank %d, "
        "data rank %d, reg %.3g (loading %.3g)",
        weight_norm or "unit-gain", orientation, n_src, n_chan, r, k, reg, loading,
    )
    if not np.all(np.isfinite(kernel)):
        bad = np.flatnonzero(~np.all(np.isfinite(kernel), axis=1)) // n_orient
        raise InverseError(
            f"the beamformer weights are not finite for {bad.size} source(s) (indices "
            f"{short_list(np.unique(bad))}); raise reg or check the covariances"
        )
    return LinearInverse(
        kernel=kernel,
        noise_norm=np.ones(n_src),
        n_orient=n_orient,
        method="LCMV",
        lambda2=0.0,
        loose=1.0 if orientation == "free" else 0.0,
        depth=None if not depth else float(depth),
        rank=r,
        ch_names=names,
        source_rotation=rot,
        singular_values=eig,
        output_unit=unit,
        ch_types=types_ or (),
        details=details,
        orientations=orientations,
    )
