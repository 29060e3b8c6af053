"""The minimum-norm inverse family: MNE, dSPM, sLORETA and eLORETA, as MNE-Python defines them.

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
eigendecomposition and rank, as MNE-Python does (:func:`~.whitening.make_whitener`);
the reference matrix must then act on the EEG channels only
(``reference_matrix(ch_names, reference, ch_types=ch_types)``). The LCMV beamformers
(:mod:`rtsource.inverse.beamformer`) return the same :class:`~.operator.LinearInverse` type;
:func:`~.make.make_operator` builds either from typed parameters (:mod:`.params`).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np

from ..arrays import sealed
from ..errors import InverseError
from ._checks import check_channels, check_reference_matrix, check_scalar, short_list
from ._linalg import gram_blocks
from .covariance import DataCovariance, NoiseCovariance
from .operator import LinearInverse
from .params import MINIMUM_NORM_METHODS, EloretaOptions, MinimumNormParams
from .prepared_forward import as_forward
from .whitening import make_whitener

logger = logging.getLogger(__name__)

# The defaults of every parameter (one place: rtsource.inverse.params).
_DEFAULTS = MinimumNormParams()


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
    check_channels(names, noise_cov.ch_names)
    return names


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
    return _depth_prior_from_gram(gram_blocks(g, g), exponent, limit)


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
            short_list(bad),
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


def make_inverse_operator(
    gain: np.ndarray,
    normals: np.ndarray,
    noise_cov: NoiseCovariance,
    *,
    reference: np.ndarray,
    method: str = _DEFAULTS.method,
    snr: float = _DEFAULTS.snr,
    lambda2: float | None = _DEFAULTS.lambda2,
    loose: float = _DEFAULTS.loose,
    depth: float | None = _DEFAULTS.depth,
    fixed: bool = _DEFAULTS.fixed,
    depth_limit: float | None = _DEFAULTS.depth_limit,
    rank: int | Mapping[str, int] | None = None,
    ch_names: Sequence[str] | None = None,
    ch_types: Sequence[str] | None = None,
    eloreta_options: EloretaOptions | Mapping[str, Any] | None = None,
    eloreta_init: np.ndarray | None = None,
) -> LinearInverse:
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
    eloreta_options : EloretaOptions or mapping, optional
        eLORETA only: :class:`~.params.EloretaOptions`, or a mapping as MNE-Python's
        ``eloreta_options``: ``eps`` (1e-6), ``max_iter`` (20), ``force_equal`` (False),
        ``init`` (starting weights). See :mod:`rtsource.inverse.eloreta`.
    eloreta_init : ndarray, optional
        eLORETA only: starting weights, e.g. ``op.source_weights`` of an operator for
        nearly the same channels.

    Returns
    -------
    LinearInverse
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
    fwd = as_forward(gain, normals, n_chan, ch_types)
    n_src = fwd.n_sources
    types_ = fwd.ch_types
    m = check_reference_matrix(reference, n_chan)

    if lambda2 is None:
        snr = check_scalar(
            "snr", snr, low=0.0, low_open=True, fix="pass a positive finite SNR (e.g. 3)"
        )
        lambda2 = 1.0 / snr**2
    else:
        lambda2 = check_scalar(
            "lambda2",
            lambda2,
            low=0.0,
            low_open=True,
            fix="pass a positive finite regularisation (e.g. 1/9) or leave it None",
        )
    loose = check_scalar(
        "loose", loose, low=0.0, low_open=False, high=1.0,
        fix="pass a value in [0, 1] (0.2 on cortex, 1 for free orientation)",
    )
    if depth is not None:
        depth = check_scalar(
            "depth", depth, low=0.0, low_open=False,
            fix="pass a non-negative exponent (0.8 is usual) or None to disable",
        )
    if depth_limit is not None:
        depth_limit = check_scalar(
            "depth_limit", depth_limit, low=1.0, low_open=False,
            fix="pass a ratio >= 1 (10 is usual) or None for no limit",
        )
    if not isinstance(fixed, (bool, np.bool_)):
        raise InverseError(f"fixed is {fixed!r}; pass True or False")
    if fixed or loose == 0.0:
        fixed, loose = True, 0.0
    if method == "eLORETA":
        from . import eloreta as _eloreta

        options, init = _eloreta.check_options(eloreta_options, eloreta_init)
    elif eloreta_options is not None or eloreta_init is not None:
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
            eps=options.eps, max_iter=options.max_iter, force_equal=options.force_equal,
            init=init,
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
        return LinearInverse(
            kernel=kernel, noise_norm=np.ones(n_src), method="eLORETA", depth=None,
            singular_values=s, output_unit="A*m",
            details=dict(fit.report(), block_ranks=block_ranks),
            source_weights=fit.weights, **common,
        )

    kernel, noise_norm, s = minimum_norm_kernel(
        g_sel, fwd.depth_gram, wm, rank, method=method, lambda2=lambda2, n_orient=n_orient,
        orient_var=orient_var, depth=depth, depth_limit=depth_limit,
    )
    logger.info(
        "inverse operator: %s, %d sources x %d orientation(s), %d channels, rank %d, "
        "lambda2 %.4g, loose %.3g, depth %s, largest singular value %.4g",
        method, n_src, n_orient, n_chan, rank, lambda2, loose, depth, s[0],
    )
    return LinearInverse(
        kernel=kernel,
        noise_norm=noise_norm,
        method=method,
        depth=None if depth is None else float(depth),
        singular_values=s,
        output_unit="A*m" if method == "MNE" else "",
        details={"block_ranks": block_ranks},
        **common,
    )


def minimum_norm_kernel(
    g_sel: np.ndarray,
    depth_gram: np.ndarray,
    wm: np.ndarray,
    rank: int,
    *,
    method: str,
    lambda2: float,
    n_orient: int,
    orient_var: np.ndarray,
    depth: float | None,
    depth_limit: float | None,
    dtype=np.float64,
    timings: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 2-6 of the MNE, dSPM and sLORETA operator from the prepared parts (reference section 5).

    What :func:`make_inverse_operator` does after the checks, the whitener and the local
    frames; the head-motion rebuild (:mod:`.pose`) calls it with the parts that do not
    depend on the head pose prepared once.

    Parameters
    ----------
    g_sel : ndarray, shape (n_chan, n_sources * n_orient)
        The gain in the local frames (all three axes, or the normal only), float64 or float32.
    depth_gram : ndarray, shape (n_sources, 3, 3)
        Per-source Gram matrices of the depth channels (:class:`~.prepared_forward.LocalForward`).
    wm : ndarray, shape (rank, n_chan)
        The whitener with the re-referencing, ``W M`` (float64).
    rank : int
    method : {"MNE", "dSPM", "sLORETA"}
    lambda2 : float
    n_orient : int
    orient_var : ndarray, shape (n_sources * n_orient,)
        Orientation prior (``loose`` tangential, 1 normal).
    depth, depth_limit : float or None
        Depth prior (Lin et al. 2006).
    dtype : numpy dtype
        Of the three products over the whole lead field (``G R G^T``, ``G^T C``, the
        kernel): float32 halves their time for a live rebuild (relative output error
        ~1e-6); the small channel-space algebra (whitening, the eigendecomposition) stays
        float64.
    timings : dict, optional
        Filled with the milliseconds of each step (``depth``, ``gram``, ``eigh``,
        ``leads``, ``kernel``, ``noise_norm``), for benchmarks.

    Returns
    -------
    kernel : ndarray, shape (n_sources * n_orient, n_chan), of ``dtype``, read-only
    noise_norm : ndarray, shape (n_sources,)
    s : ndarray, shape (rank,)
        Singular values of the whitened, weighted, scaled gain.
    """
    import time

    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        if timings is not None:
            now = time.perf_counter()
            timings[name] = (now - clock[0]) * 1e3
            clock[0] = now

    n_src = depth_gram.shape[0]
    f64 = np.dtype(dtype) == np.float64
    g_sel = g_sel if g_sel.dtype == dtype else g_sel.astype(dtype)
    # Step 2: depth prior on the raw gain, one value per source (Lin et al. 2006).
    depth_w = _depth_prior_from_gram(depth_gram, depth, depth_limit)

    # Step 3: orientation prior in the normal-aligned frame (Lin et al. 2006).
    source_var = np.repeat(depth_w, n_orient) * orient_var
    lap("depth")

    # Step 4: whitened, weighted gain Gt = W M G sqrt(R), scaled so that tr(Gt Gt^T) =
    # rank; the scale goes into R, so the MNE output stays in A*m. Gt itself (rank x 3
    # n_src) is never formed: everything below needs only its Gram matrix
    # Gt Gt^T = W M (G R G^T) M^T W^T, from the channel-space G R G^T, and Gt^T = sqrt(R)
    # G^T (W M)^T. That saves a pass over the lead field (a third of a hot-swap rebuild).
    gs = g_sel * (np.sqrt(source_var) if f64 else np.sqrt(source_var).astype(dtype))
    gram = wm @ (gs @ gs.T if f64 else (gs @ gs.T).astype(np.float64)) @ wm.T
    del gs
    lap("gram")
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
    lap("eigh")

    # Step 5: Tikhonov-regularised pseudo-inverse (Hamalainen & Ilmoniemi 1994):
    # K = sqrt(R) V Gamma U^T W M with Gamma = s / (s^2 + lambda2)
    #   = sqrt(R) Gt^T U diag(1 / (s^2 + lambda2)) U^T W M
    #   = R G^T (W M)^T U diag(1 / (s^2 + lambda2)) U^T W M.
    c = wm.T @ (u / (e + lambda2))
    leads = g_sel.T @ (c if f64 else c.astype(dtype))  # sqrt(R) V Gamma, before the row factor R
    leads *= source_var[:, None] if f64 else source_var[:, None].astype(dtype)
    lap("leads")
    q = u.T @ wm
    kernel = sealed(leads @ (q if f64 else q.astype(dtype)))  # handed on without copies (LinearInverse, bundle)
    lap("kernel")

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
            weighted = leads * (np.sqrt(1.0 + e / lambda2) if f64 else np.sqrt(1.0 + e / lambda2).astype(dtype))
        row_norm2 = np.einsum("ij,ij->i", weighted, weighted).astype(np.float64, copy=False)
        # Pool the three orientations of a source (MNE-Python's combine_xyz).
        noise_norm = np.sqrt(row_norm2.reshape(n_src, n_orient).sum(axis=1))
        if np.any(noise_norm <= 0):
            bad = np.flatnonzero(noise_norm <= 0)
            raise InverseError(
                f"{bad.size} source(s) have zero noise norm (indices {short_list(bad)}); "
                "they are invisible after whitening -- drop them or use method='MNE'"
            )
    lap("noise_norm")
    return kernel, noise_norm, s
