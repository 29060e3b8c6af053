"""The bad-channel hot-swap rebuild: a bundle's operator without some channels.

:func:`rebuild_without_channels` recomputes a bundle's operator for the channels that
remain when some go bad at run time, from what the bundle caches: the raw lead field
``gain``, the noise covariance ``noise_cov``, the typed parameters in ``bundle.params``
(an :class:`~.params.OperatorRecord`), and for LCMV a data covariance. It builds through
:func:`~.make.make_operator`, so the result is exactly what a fresh setup on the remaining
channels would give. The average reference is recomputed over the remaining channels (a
named reference channel that goes bad is an error: the data are referenced to it). The
new bundle lists only the remaining channels, so the streaming loop maps them by name
again. Rebuild from the original bundle with the whole current set of bad channels (a
channel that recovers simply leaves the set). An LCMV bundle given a new ``data_cov`` is
rebuilt even without bad channels (adaptive beamformer).

Speed (``tools/bench_rebuild.py``, 64 channels x 8196 sources, one BLAS thread, with the
lead field prepared once by :func:`prepare_bundle_forward`, as the streaming loop does):
dSPM/sLORETA 45-55 ms, LCMV ~75 ms; eLORETA iterates (~240 ms on this problem), so a live
swap can first use one iteration from the previous weights (``eloreta_max_iter=1``,
~140 ms, within ~1e-2 of the converged operator) and then swap in the converged one.
Multi-threaded OpenBLAS on a busy machine is slower than one thread: run rebuild workers
with one BLAS thread.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Sequence

import numpy as np

from ..errors import InverseError
from ._checks import short_list
from .covariance import DataCovariance, NoiseCovariance
from .make import make_operator, operator_record, weights_for_bundle, weights_from_bundle
from .operator import LinearInverse
from .params import MinimumNormParams, OperatorRecord
from .prepared_forward import LocalForward, prepare_forward
from .ssp import projectors_from_provenance

logger = logging.getLogger(__name__)


def _bad_list(bad, names: tuple[str, ...]) -> list[str]:
    if isinstance(bad, (str, bytes)):
        raise InverseError(f"bad is {bad!r}; pass a list of channel names, e.g. [{bad!r}]")
    try:
        bad = list(bad)
    except TypeError:
        raise InverseError(
            f"bad is a {type(bad).__name__}; pass a list of channel names"
        ) from None
    out = []
    for b in bad:
        b = str(b)
        if b not in names:
            raise InverseError(
                f"bad channel {b!r} is not in the bundle's channels "
                f"({short_list(names)}); pass names exactly as the bundle lists them"
            )
        if b not in out:
            out.append(b)
    return out


def _record_of(bundle) -> OperatorRecord:
    params = bundle.params
    if isinstance(params, OperatorRecord):
        return params
    return OperatorRecord.from_json(params, method=bundle.method, reference=bundle.reference)


def _check_cached(bundle) -> None:
    if bundle.gain is None or bundle.noise_cov is None:
        missing = [n for n in ("gain", "noise_cov") if getattr(bundle, n) is None]
        raise InverseError(
            f"the bundle does not cache {' and '.join(missing)}, so its operator cannot "
            "be recomputed without a channel; rebuild it with `rtsource setup` (bundles "
            "from build_bundle keep both)"
        )


def prepare_bundle_forward(bundle) -> LocalForward:
    """The bundle's cached lead field, checked and in the sources' local frames, once.

    Pass it as ``forward=`` to every rebuild of the same bundle: each rebuild then only
    drops the bad channels' rows from it (:meth:`~.prepared_forward.LocalForward.drop`)
    instead of checking and rotating the whole lead field again.
    """
    _check_cached(bundle)
    return prepare_forward(bundle.gain, bundle.sources.normals, bundle.ch_types)


def rebuild_operator(
    bundle,
    bad: Sequence[str],
    *,
    data_cov: np.ndarray | DataCovariance | None = None,
    eloreta_weights: np.ndarray | None = None,
    eloreta_max_iter: int | None = None,
    forward: LocalForward | None = None,
) -> tuple[LinearInverse, np.ndarray, LocalForward]:
    """The operator of :func:`rebuild_without_channels`, without wrapping it in a bundle.

    Returns
    -------
    op : LinearInverse
        On the remaining channels (``op.ch_names``); for eLORETA ``op.source_weights``
        are the weights to warm-start the next rebuild from.
    keep : ndarray of int
        Indices of the remaining channels in ``bundle.ch_names``.
    forward : LocalForward
        The lead field on the remaining channels (its ``gain`` is the new bundle's).
    """
    names = tuple(bundle.ch_names)
    bad_list = _bad_list(bad, names)
    _check_cached(bundle)
    if forward is None:
        forward = prepare_bundle_forward(bundle)
    elif forward.n_chan != len(names) or forward.n_sources != bundle.n_sources:
        raise InverseError(
            f"forward was prepared for {forward.n_chan} channels x {forward.n_sources} "
            f"sources but the bundle has {len(names)} x {bundle.n_sources}; pass "
            "prepare_bundle_forward(bundle) of this bundle"
        )
    reference = bundle.reference
    if reference != "average" and reference in bad_list:
        raise InverseError(
            f"channel {reference!r} is the reference the data are re-referenced to and "
            "cannot be dropped: every channel would carry its artefact. Fix the "
            "electrode, or set reference = 'average' and rebuild the bundle"
        )
    keep = np.array([i for i, c in enumerate(names) if c not in bad_list], dtype=int)
    new_names = tuple(names[i] for i in keep)
    types_ = tuple(bundle.ch_types)
    new_types = tuple(types_[i] for i in keep)
    n_eeg = sum(t == "eeg" for t in new_types)
    if not new_names or (reference == "average" and 0 < n_eeg < 2) or (
        n_eeg == 0 and all(t == "eeg" for t in types_)
    ):
        raise InverseError(
            f"dropping {len(bad_list)} channel(s) ({short_list(bad_list)}) leaves "
            f"{len(new_names)} channel(s); the operator needs at least two -- stop the "
            "stream and check the cap"
        )
    ix = np.ix_(keep, keep)
    gain = forward.drop([names.index(b) for b in bad_list])
    noise = NoiseCovariance(np.asarray(bundle.noise_cov)[ix], new_names, 0, "empirical", 0.0)
    record = _record_of(bundle)
    params = record.inverse
    method = params.method
    dcov = None
    if method == "LCMV":
        src = data_cov if data_cov is not None else getattr(bundle, "data_cov", None)
        if src is None:
            raise InverseError(
                "the bundle holds an LCMV beamformer but no data covariance; pass "
                "data_cov= (the calibration data covariance on the bundle's channels) or "
                "rebuild the bundle with one"
            )
        arr = src.data if isinstance(src, NoiseCovariance) else np.asarray(src, dtype=np.float64)
        if arr.shape != (len(names), len(names)):
            raise InverseError(
                f"data_cov has shape {arr.shape}; expected ({len(names)}, {len(names)}) on "
                "the bundle's channels"
            )
        meta = dict(record.data_cov or {})
        dcov = DataCovariance(arr[ix], new_names, int(meta.get("n_samples", 0)),
                              str(meta.get("method", "empirical")), 0.0)
    init = None
    if method == "eLORETA":
        w = eloreta_weights if eloreta_weights is not None else getattr(bundle, "source_weights", None)
        init = weights_from_bundle(w)
        if eloreta_max_iter is not None:
            if init is None:
                logger.warning(
                    "eloreta_max_iter=%s ignored: no eLORETA weights to warm-start from "
                    "(pass eloreta_weights=); iterating to convergence", eloreta_max_iter,
                )
            elif isinstance(params, MinimumNormParams):
                params = dataclasses.replace(
                    params, eloreta=dataclasses.replace(params.eloreta, max_iter=int(eloreta_max_iter))
                )
    # an artifact projection folded into the operator stays folded in, on the remaining channels
    artifacts = getattr(bundle, "artifacts", None)
    projector = artifacts.projector(new_names) if artifacts is not None else None
    op = make_operator(
        params, gain, bundle.sources.normals, noise, reference=reference,
        ch_names=new_names, ch_types=new_types, data_cov=dcov, eloreta_init=init, projector=projector,
        projectors=projectors_from_provenance(getattr(bundle, "provenance", {})),  # SSP on the remaining channels
    )
    return op, keep, gain


def rebuild_without_channels(
    bundle,
    bad: Sequence[str],
    *,
    data_cov: np.ndarray | DataCovariance | None = None,
    eloreta_weights: np.ndarray | None = None,
    eloreta_max_iter: int | None = None,
    forward: LocalForward | None = None,
    force: bool = False,
):
    """The bundle's operator recomputed without the ``bad`` channels.

    Parameters
    ----------
    bundle : rtsource.bundle.OperatorBundle
        A bundle that caches ``gain`` (raw lead field) and ``noise_cov``; for LCMV also
        a data covariance (``bundle.data_cov`` when the bundle has that field, else the
        ``data_cov`` argument).
    bad : sequence of str
        Channels to drop, named as in ``bundle.ch_names``.
    data_cov : ndarray, shape (n_chan, n_chan), or DataCovariance, optional
        LCMV only: the data covariance on the bundle's channels, when the bundle does not
        carry one or a newer one should be used (an adaptive beamformer). With a
        ``data_cov`` an LCMV bundle is rebuilt even if ``bad`` is empty.
    eloreta_weights : ndarray, optional
        eLORETA only: weights to warm-start from (``LinearInverse.source_weights`` of
        the bundle's operator, or the 2-D layout of :func:`weights_for_bundle`;
        ``bundle.source_weights`` if the bundle has that field).
    eloreta_max_iter : int, optional
        eLORETA only, with warm-start weights: cap the iterations (e.g. 1 for a quick
        first swap, followed by a converged rebuild); the operator then records
        ``converged = False`` unless it did converge.
    forward : LocalForward, optional
        :func:`prepare_bundle_forward` of ``bundle``, shared by its rebuilds (prepared
        here if not given).
    force : bool
        Recompute even with no channel to drop: the bundle's folded artifact projection
        (``bundle.artifacts``) changed (a live recalibration).

    Returns
    -------
    OperatorBundle
        Same sources, method and parameters; ``ch_names``/``ch_types``/``ch_units``/
        ``channel_positions_m``/``gain``/``noise_cov`` restricted to the remaining
        channels; kernel and noise norm recomputed (average reference over the remaining
        channels); ``params.bad_channels`` lists every channel dropped so far;
        ``provenance["rebuild"]`` records what was dropped and how long it took.

    Raises
    ------
    InverseError
        If a name is unknown, the bundle caches no gain or noise covariance, the
        reference channel is among the bad ones, fewer than two EEG channels (or no
        channels) remain, or an LCMV bundle has no data covariance.
    """
    t0 = time.perf_counter()
    names = tuple(bundle.ch_names)
    bad_list = _bad_list(bad, names)
    if not bad_list and not force and (data_cov is None or bundle.method != "LCMV"):
        logger.info("rebuild_without_channels: no channel to drop; bundle unchanged")
        return bundle
    # (an LCMV bundle with a new data_cov and no bad channel: the adaptive beamformer's
    # periodic rebuild with a fresh covariance)
    op, keep, fwd = rebuild_operator(
        bundle, bad_list, data_cov=data_cov, eloreta_weights=eloreta_weights,
        eloreta_max_iter=eloreta_max_iter, forward=forward,
    )
    record = _record_of(bundle)
    # the configured parameters (not a quick swap's iteration cap) stay the bundle's
    new_params = dataclasses.replace(
        operator_record(op, record.inverse, reference=bundle.reference,
                        bad_channels=record.bad_channels + tuple(bad_list)),
        data_cov=record.data_cov, notes=record.notes,
    )
    elapsed = time.perf_counter() - t0
    provenance = dict(bundle.provenance)
    provenance["rebuild"] = {
        "dropped": bad_list,
        "from_n_channels": len(names),
        "seconds": round(elapsed, 4),
    }
    fields = {f.name for f in dataclasses.fields(bundle)}
    changes: dict[str, Any] = dict(
        kernel=op.kernel,
        noise_norm=op.noise_norm,
        n_orient=op.n_orient,
        output_unit=op.output_unit,
        ch_names=op.ch_names,
        ch_types=tuple(bundle.ch_types[i] for i in keep),
        ch_units=tuple(bundle.ch_units[i] for i in keep),
        channel_positions_m=np.asarray(bundle.channel_positions_m)[keep],
        params=new_params,
        provenance=provenance,
        gain=fwd.gain,  # the remaining rows, read-only: shared, not copied
        noise_cov=np.asarray(bundle.noise_cov)[np.ix_(keep, keep)],
        source_rotation=op.source_rotation,
        created_utc="",
    )
    if "data_cov" in fields and op.method == "LCMV":
        src = data_cov if data_cov is not None else getattr(bundle, "data_cov", None)
        arr = src.data if isinstance(src, NoiseCovariance) else np.asarray(src)
        changes["data_cov"] = arr[np.ix_(keep, keep)]
    if "source_weights" in fields:
        changes["source_weights"] = weights_for_bundle(op)
    new = dataclasses.replace(bundle, **changes)
    logger.info(
        "rebuilt %s operator without %s: %d -> %d channels in %.0f ms",
        op.method, short_list(bad_list), len(names), len(op.ch_names), elapsed * 1e3,
    )
    return new


class BundleRebuilder:
    """Rebuilds of an :class:`~rtsource.bundle.OperatorBundle` without some channels, for a
    running loop: the :class:`rtsource.stream.services.OperatorRebuilder` the pipeline
    injects (``StreamLoop(..., rebuilder=BundleRebuilder())``).

    :meth:`prepare` checks and rotates the bundle's cached lead field once
    (:func:`prepare_bundle_forward`); every later :meth:`without_channels` of that bundle
    then only drops rows from it. Thread-safe: the prepared forward is read-only and is
    replaced by one assignment.
    """

    def __init__(self) -> None:
        self._prepared: tuple[object, LocalForward] | None = None  # (bundle, its forward)

    def prepare(self, bundle) -> None:
        """Prepare ``bundle``'s lead field for the rebuilds that follow (slow: call it once)."""
        self._prepared = (bundle, prepare_bundle_forward(bundle))

    def without_channels(self, bundle, channels: Sequence[str], *, data_cov: np.ndarray | None = None, max_iter: int | None = None, force: bool = False):
        """:func:`rebuild_without_channels` of ``bundle`` (``max_iter``: eLORETA's cap; ``force``: even without channels)."""
        prepared = self._prepared
        forward = prepared[1] if prepared is not None and prepared[0] is bundle else None
        extra: dict[str, Any] = {}
        if max_iter is not None:
            extra["eloreta_max_iter"] = max_iter
        return rebuild_without_channels(bundle, list(channels), data_cov=data_cov, forward=forward, force=force, **extra)
