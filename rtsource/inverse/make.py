"""One entry point that builds every operator from typed parameters, and its record.

:func:`make_operator` builds MNE, dSPM, sLORETA, eLORETA (:mod:`.minimum_norm`) and LCMV
(:mod:`.beamformer`) from a :class:`~.params.MinimumNormParams` or
:class:`~.params.LcmvParams`. The offline build, the bad-channel rebuild and the
localisation sweep all go through it, so a bundle rebuilt without a channel is exactly
what a fresh setup on the remaining channels would give. :func:`operator_record` is what
a bundle keeps of the result (:class:`~.params.OperatorRecord`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InverseError
from .beamformer import make_lcmv
from .covariance import DataCovariance, NoiseCovariance
from .minimum_norm import make_inverse_operator
from .operator import LinearInverse
from .params import InverseParams, LcmvParams, MinimumNormParams, OperatorRecord, params_for
from .reference import reference_matrix
from .ssp import projector_reference_matrix


def make_operator(
    params: InverseParams | str,
    gain: np.ndarray,
    normals: np.ndarray,
    noise_cov: NoiseCovariance,
    *,
    reference: str,
    ch_names: Sequence[str] | None = None,
    ch_types: Sequence[str] | None = None,
    data_cov: DataCovariance | None = None,
    eloreta_init: np.ndarray | None = None,
    projectors: Sequence = (),
    projector: np.ndarray | None = None,
) -> LinearInverse:
    """Build the operator of any method.

    Parameters
    ----------
    params : MinimumNormParams, LcmvParams or str
        The method and its parameters; a method name (``"dSPM"``, ``"LCMV"``, ...) means
        that method with the defaults.
    gain : ndarray, shape (n_chan, 3 * n_sources), or LocalForward
        Raw lead field (V or T per A*m), dipole-major x, y, z, or the same prepared with
        :func:`~.prepared_forward.prepare_forward` for these channels and ``ch_types``.
    normals : ndarray, shape (n_sources, 3)
        Unit source normals (ignored with a LocalForward).
    noise_cov : NoiseCovariance
        Noise covariance on the operator's channels.
    reference : str
        ``"average"`` or the name of the reference channel (EEG only with ``ch_types``).
    ch_names : sequence of str, optional
        Operator channels (default ``noise_cov.ch_names``).
    ch_types : sequence of {"eeg", "mag", "grad"}, optional
        Per-channel sensor types (per-type whitening).
    data_cov : DataCovariance, optional
        Required for LCMV.
    eloreta_init : ndarray, optional
        eLORETA warm start (``LinearInverse.source_weights`` of an operator for nearly the
        same channels).
    projectors : sequence of SspProjector, optional
        SSP projectors applied with the reference, as MNE-Python does (``K P``, whitener on
        ``P C P^T`` with the rank reduced): :func:`.ssp.projector_reference_matrix`.
    projector : ndarray, shape (n_chan, n_chan), optional
        A signal-space projector ``P = I - U U^T`` (artifact patterns; Uusitalo & Ilmoniemi
        1997) applied after the re-referencing (the patterns re-referenced too, ``U ->
        orth(M U)``): the operator is built from ``P M G`` and ``P M C M^T P`` and applied
        as ``K P M``, as MNE-Python applies SSP projectors, so the whitener's rank drops by
        the projected dimensions.

    Returns
    -------
    LinearInverse
    """
    if isinstance(params, str):
        params = params_for(params)
    if not isinstance(params, (MinimumNormParams, LcmvParams)):
        raise InverseError(
            f"params is a {type(params).__name__}; pass MinimumNormParams(...), "
            "LcmvParams(...) or a method name"
        )
    names = noise_cov.ch_names if ch_names is None else tuple(str(c) for c in ch_names)
    m = operator_reference(names, reference, ch_types, projectors, projector)
    if isinstance(params, LcmvParams):
        if data_cov is None:
            raise InverseError(
                "method 'LCMV' needs a data covariance (data_cov); capture a calibration "
                "recording with the activity ([data_cov] seconds = ...) or pick another "
                "method"
            )
        return make_lcmv(
            gain, normals, data_cov, noise_cov, reference=m, reg=params.reg,
            weight_norm=params.weight_norm, orientation=params.orientation,
            rank=_rank_arg(params.rank), ch_names=names, ch_types=ch_types, depth=params.depth,
        )
    elo = params.method == "eLORETA"
    return make_inverse_operator(
        gain, normals, noise_cov, reference=m, method=params.method, snr=params.snr,
        lambda2=params.lambda2, loose=params.loose, depth=params.depth,
        fixed=params.fixed, depth_limit=params.depth_limit, rank=_rank_arg(params.rank),
        ch_names=names, ch_types=ch_types, eloreta_options=params.eloreta if elo else None,
        eloreta_init=eloreta_init if elo else None,
    )


def operator_reference(names: Sequence[str], reference: str, ch_types: Sequence[str] | None = None, projectors: Sequence = (),
                       projector: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """The matrix every operator of :func:`make_operator` applies before whitening: the
    re-referencing, the SSP ``projectors`` and an artifact ``projector`` (see there), shape
    (n_chan, n_chan). It does not depend on the lead field, so a rebuild for another head
    pose computes it once (:mod:`.pose`)."""
    names = tuple(names)
    m = projector_reference_matrix(names, reference, ch_types, projectors)[0] if projectors else reference_matrix(names, reference, ch_types)
    if projector is not None:
        p = np.asarray(projector, dtype=np.float64)
        if p.shape != m.shape or not np.all(np.isfinite(p)):
            raise InverseError(f"projector has shape {p.shape}; pass a finite ({len(names)}, {len(names)}) matrix on the operator's channels")
        # the patterns as the re-referenced data carry them (an average reference recomputed
        # over fewer channels shifts them), orthonormalised: P' = I - Q Q^T, Q = orth(M U)
        evals, evecs = np.linalg.eigh(np.eye(len(p)) - 0.5 * (p + p.T))
        u = m @ evecs[:, evals > 0.5]
        q, sv, _ = np.linalg.svd(u, full_matrices=False)
        q = q[:, sv > 1e-6]
        m = (np.eye(len(p)) - q @ q.T) @ m
    return m


def _rank_arg(rank):
    return dict(rank) if hasattr(rank, "items") else rank


def operator_record(
    op: LinearInverse,
    params: InverseParams,
    *,
    reference: str,
    bad_channels: Sequence[str] = (),
    data_cov: DataCovariance | None = None,
) -> OperatorRecord:
    """What a bundle keeps of an operator: its parameters and what the build found.

    :func:`make_operator` with ``record.inverse`` rebuilds the same operator.

    Parameters
    ----------
    op : LinearInverse
        The operator built with ``params``.
    params : MinimumNormParams or LcmvParams
        The parameters it was built with.
    reference : str
        The reference name it was built for.
    bad_channels : sequence of str
        Channels dropped by rebuilds so far.
    data_cov : DataCovariance, optional
        LCMV: the data covariance (its sample count and estimator are recorded).
    """
    if op.method != params.method:
        raise InverseError(
            f"the operator is {op.method!r} but params are for {params.method!r}; pass the "
            "parameters the operator was built with"
        )
    d = op.details
    if op.method == "eLORETA":
        fit = {k: d[k] for k in ("iterations", "final_change", "converged")}
    elif op.method == "LCMV":
        fit = {k: d[k] for k in ("data_rank", "loading", "noise_level")}
    else:
        fit = {}
    return OperatorRecord(
        inverse=params, reference=reference, rank=int(op.rank),
        block_ranks=dict(d.get("block_ranks", {})), bad_channels=tuple(bad_channels), fit=fit,
        data_cov=None if data_cov is None else {"n_samples": int(data_cov.n_samples),
                                                "method": str(data_cov.method)},
    )


def weights_for_bundle(op: LinearInverse) -> np.ndarray | None:
    """eLORETA weights as a 2-D array for a bundle (``source_weights``), else None.

    Block weights (n_sources, 3, 3) are stored as (n_sources, 9); scalar weights
    (n_rows,) as (n_rows, 1). :func:`weights_from_bundle` reads either layout.
    """
    w = op.source_weights
    if w is None:
        return None
    return w.reshape(w.shape[0], 9) if w.ndim == 3 else w.reshape(-1, 1)


def weights_from_bundle(w) -> np.ndarray | None:
    """The inverse of :func:`weights_for_bundle` (other shapes pass unchanged)."""
    if w is None:
        return None
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 2 and w.shape[1] == 9:
        return w.reshape(-1, 3, 3)
    if w.ndim == 2 and w.shape[1] == 1:
        return w.ravel()
    return w
