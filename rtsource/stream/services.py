"""The narrow interfaces between the loop, its features and the offline side.

The stream depends on the bundle and its own modules only (a one-way door). What it needs
from elsewhere comes in through the small types here:

- :class:`OperatorRebuilder`: the operator recomputed without some channels (a bad channel,
  the adaptive beamformer's new covariance). The offline side implements it
  (:class:`rtsource.inverse.rebuild.BundleRebuilder`) and the pipeline injects it
  (``StreamLoop(..., rebuilder=...)``, see :func:`rtsource.session.operator_rebuilder`).
- :class:`LoopServices`: what :class:`~rtsource.stream.features.Features` may use of the loop
  that runs them (its counters, its events, the swap request), instead of the whole loop.
- :class:`PendingSwap`: an operator (and ROI stage) waiting for the gap between two chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

import numpy as np

if TYPE_CHECKING:  # annotations only
    from ..bundle import OperatorBundle
    from .events import EventPublisher
    from .operator import StreamOperator
    from .roi import RoiStage
    from .telemetry import LoopStats


class OperatorRebuilder(Protocol):
    """Rebuilds a bundle's operator without some channels (runs in worker threads).

    Both methods are called from background threads, never from the loop's; several calls
    may run at once (the hot swap and the adaptive beamformer have a thread each).
    """

    def prepare(self, bundle: OperatorBundle) -> None:
        """Get ready for fast rebuilds of ``bundle`` (once, before the first rebuild).

        Optional work: :meth:`without_channels` must also work without it, only slower.
        """

    def without_channels(
        self, bundle: OperatorBundle, channels: Sequence[str], *, data_cov: np.ndarray | None = None, max_iter: int | None = None,
        force: bool = False,
    ) -> OperatorBundle:
        """``bundle``'s operator recomputed without ``channels`` (names as in ``bundle.ch_names``).

        Parameters
        ----------
        bundle : OperatorBundle
            The bundle the loop started with (rebuilds never chain).
        channels : sequence of str
            Channels to drop (may be empty with a ``data_cov``).
        data_cov : ndarray, shape (n_channels, n_channels), optional
            LCMV: a newer data covariance on ``bundle.ch_names`` (V^2).
        max_iter : int, optional
            Iterative methods (eLORETA): cap the iterations for a quick first operator.
        force : bool
            Recompute even with no channel to drop (``bundle.artifacts``' folded projection
            changed: a live recalibration, :mod:`.artifacts`).
        """
        ...


@dataclass(frozen=True)
class LoopServices:
    """What the features of a loop may use of it.

    Attributes
    ----------
    stats : LoopStats
        The loop's live counters (features write ``covariance_age_s``, ``hot_swap_ready``,
        ``rebuild_failures``).
    events : EventPublisher
        The loop's events stream.
    request_swap : callable
        ``request_swap(operator, reason, requested_at, roi_stage=None, **details)``:
        :meth:`~rtsource.stream.loop.StreamLoop.request_swap` (thread-safe).
    prepare_operator : callable
        ``prepare_operator(bundle) -> StreamOperator`` for the connected stream's layout
        (:meth:`~rtsource.stream.loop.StreamLoop.prepare_operator`).
    current_operator : callable
        ``current_operator() -> StreamOperator``: the operator in use (it changes with swaps).
    rebuilder : OperatorRebuilder or None
        None: the operator cannot be rebuilt (no channel can be dropped while streaming).
    time_correction : callable
        ``time_correction() -> float``: the input stream's LSL clock offset (s) as the loop
        last measured it (marker times are moved onto the input's clock with it).
    """

    stats: LoopStats
    events: EventPublisher
    request_swap: Callable[..., None]
    prepare_operator: Callable[[OperatorBundle], StreamOperator]
    current_operator: Callable[[], StreamOperator]
    rebuilder: OperatorRebuilder | None = None
    time_correction: Callable[[], float] = lambda: 0.0


@dataclass(frozen=True)
class PendingSwap:
    """An operator waiting to be installed between two chunks (newest request wins).

    Attributes
    ----------
    operator : StreamOperator
    reason : str
        For the ``operator_swap`` event.
    requested_at : float
        ``time.perf_counter()`` when the need arose (the swap time covers the rebuild).
    roi_stage : RoiStage or None
        The ROI stage folded with the new operator (None: keep the running one).
    details : mapping
        Extra keys of the ``operator_swap`` event (``bad_channels``, ``build_ms``).
    """

    operator: StreamOperator
    reason: str
    requested_at: float
    roi_stage: RoiStage | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
