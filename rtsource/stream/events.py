"""The loop's event stream: one JSON object per event on an LSL marker stream.

Events are rare (a gap, a lost stream, a bad channel, an operator swap), so they are
published as they happen; the most recent ones are also kept for the CLI summary.
See :mod:`rtsource.stream.outputs` for the kinds and their keys.
"""

from __future__ import annotations

import collections
import json
import logging

from .outlets import OutputIdentity, open_events_outlet
from .outputs import EVENT_KINDS

logger = logging.getLogger(__name__)


class EventPublisher:
    """Publishes events on ``NAME-events`` (or only records them when ``publish`` is False)."""

    def __init__(self, output_name: str, source_id: str, bundle_path: str = "", publish: bool = True, keep: int = 1000):
        self.recent: collections.deque = collections.deque(maxlen=keep)
        self.counts: collections.Counter = collections.Counter()
        self._outlet = None
        if publish:
            self._outlet = open_events_outlet(OutputIdentity(output_name, source_id, bundle_path))

    def publish(self, kind: str, time: float, **fields) -> dict:
        """Record and publish one event; returns it."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        event = {"event": kind, "time": round(float(time), 6), **fields}
        self.recent.append(event)
        self.counts[kind] += 1
        if self._outlet is not None:
            self._outlet.push_sample([json.dumps(event, default=float)], time)
        return event
