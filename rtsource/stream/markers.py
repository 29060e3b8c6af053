"""Marker input: an LSL marker stream's samples -> configured event names on the data's clock.

Stimulus software sends markers as strings (PsychoPy, Presentation: ``"S  1"``,
``"target"``) or numbers (a photodiode box or trigger converter: ``1``, ``2.0``). A
:class:`MarkerMap` says which raw values mean which event; :class:`MarkerReader` pulls a
marker stream and returns ``(event, time)`` pairs with LSL's clock offset of the marker
stream's host added (``inlet.time_correction()``), so the times compare with the data
stream's (itself corrected the same way when it comes from another host).

Markers arrive over the network and are hostile until checked: a value longer than
:data:`MAX_MARKER_CHARS`, a non-finite number or an unknown value is counted and dropped,
never parsed further; one pull returns at most ``max_per_pull`` markers.
"""

from __future__ import annotations

import collections
import logging
import math
from dataclasses import dataclass

from ..errors import ConfigError

logger = logging.getLogger(__name__)

MAX_MARKER_CHARS = 256


def _key(value) -> str | None:
    """Canonical form of a raw marker: stripped text, or an integral number as its digits."""
    if isinstance(value, str):
        if len(value) > MAX_MARKER_CHARS:
            return None
        text = value.strip()
        try:  # "1", "1.0" and 1 are the same trigger code
            num = float(text)
        except ValueError:
            return text
        return _key(num) if math.isfinite(num) else text
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return None


@dataclass(frozen=True)
class MarkerMap:
    """Raw marker values (strings or numbers) per event name; an event may have several."""

    events: tuple[tuple[str, tuple[str, ...]], ...]

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for name, raws in self.events:
            if not isinstance(name, str) or not name:
                raise ConfigError(f"[events] event name {name!r} must be a non-empty string")
            for r in raws:
                if r in seen and seen[r] != name:
                    raise ConfigError(f"[events] marker {r!r} is mapped to both {seen[r]!r} and {name!r}; give each marker one event")
                seen[r] = name

    @classmethod
    def from_mapping(cls, mapping: dict) -> "MarkerMap":
        """From ``{event: marker or [markers]}`` (config: ``markers = {target = ["S  1", 11], standard = "S  2"}``)."""
        out = []
        for name, raws in mapping.items():
            raws = raws if isinstance(raws, (list, tuple)) else [raws]
            keys = []
            for r in raws:
                k = _key(r)
                if k is None or k == "":
                    raise ConfigError(f"[events] markers.{name} = {r!r} must be a non-empty string (<= {MAX_MARKER_CHARS} chars) or a finite number")
                keys.append(k)
            if not keys:
                raise ConfigError(f"[events] markers.{name} is empty; give at least one marker value")
            out.append((str(name), tuple(keys)))
        if not out:
            raise ConfigError("[events] markers is empty; map at least one event, e.g. markers = {target = \"S  1\"}")
        return cls(tuple(out))

    def lookup(self) -> dict[str, str]:
        return {k: name for name, keys in self.events for k in keys}


class MarkerReader:
    """Reads an LSL marker stream (string or numeric, one channel) and maps it to events.

    Parameters
    ----------
    info : pylsl.StreamInfo
        The marker stream (e.g. from :func:`rtsource.stream.inlet.resolve_stream`).
    markers : MarkerMap
    max_per_pull : int
        Bound on the markers one :meth:`pull` returns (the rest stay queued in LSL).
    """

    def __init__(self, info, markers: MarkerMap, *, max_per_pull: int = 256, open_timeout: float = 10.0):
        import pylsl

        if info.channel_count() < 1:
            raise ConfigError(f"marker stream {info.name()!r} has no channels")
        self._inlet = pylsl.StreamInlet(info, max_buflen=60, processing_flags=0)
        self._inlet.open_stream(timeout=open_timeout)
        self._lookup = markers.lookup()
        self.max_per_pull = int(max_per_pull)
        self.name = info.name()
        self.counts = collections.Counter(dict.fromkeys(("received", "matched", "unknown", "malformed"), 0))
        self.offset = 0.0

    def pull(self, timeout: float = 0.0) -> list[tuple[str, float]]:
        """Markers received since the last call: ``(event, time on this host's LSL clock)``."""
        out = []
        try:
            self.offset = float(self._inlet.time_correction(timeout=max(timeout, 0.0) or 0.001))
        except Exception:  # noqa: BLE001 - keep the last offset if the marker host is briefly unreachable
            pass
        for _ in range(self.max_per_pull):
            sample, t = self._inlet.pull_sample(timeout=timeout if not out else 0.0)
            if sample is None:
                break
            self.counts["received"] += 1
            key = _key(sample[0]) if len(sample) else None
            if key is None:
                self.counts["malformed"] += 1
                continue
            name = self._lookup.get(key)
            if name is None:
                self.counts["unknown"] += 1
                continue
            self.counts["matched"] += 1
            out.append((name, float(t) + self.offset))
        return out

    def close(self) -> None:
        self._inlet.close_stream()
