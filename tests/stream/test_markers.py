"""Marker input over real LSL: string and numeric marker streams mapped to configured events."""

from __future__ import annotations

import time

import pylsl
import pytest

from rtsource.errors import ConfigError
from rtsource.stream.markers import MAX_MARKER_CHARS, MarkerMap, MarkerReader

from .lsl_helpers import unique


def _read_all(reader, n_expected, timeout=10.0):
    got, t_end = [], time.monotonic() + timeout
    while reader.counts["received"] < n_expected and time.monotonic() < t_end:
        got += reader.pull(timeout=0.2)
    return got


def _outlet(name, fmt):
    info = pylsl.StreamInfo(name, "Markers", 1, pylsl.IRREGULAR_RATE, fmt, name)
    return pylsl.StreamOutlet(info), info


def test_string_markers_map_to_events_with_their_times():
    name = unique("mk")
    outlet, _ = _outlet(name, pylsl.cf_string)
    found = pylsl.resolve_byprop("name", name, minimum=1, timeout=10)
    reader = MarkerReader(found[0], MarkerMap.from_mapping({"target": ["S  1", 11], "standard": "S  2"}))
    time.sleep(0.5)  # the inlet is connected before the first push
    t0 = pylsl.local_clock()
    sent = [("S  1", t0), ("S  2", t0 + 0.1), ("junk", t0 + 0.2), ("x" * (MAX_MARKER_CHARS + 1), t0 + 0.3), (" 11 ", t0 + 0.4), ("11.0", t0 + 0.5)]
    for value, t in sent:
        outlet.push_sample([value], t)
    got = _read_all(reader, len(sent))
    assert [g[0] for g in got] == ["target", "standard", "target", "target"]
    assert [g[1] for g in got] == pytest.approx([t0, t0 + 0.1, t0 + 0.4, t0 + 0.5], abs=1e-3)  # same host: offset ~0
    assert dict(reader.counts) == {"received": 6, "matched": 4, "unknown": 1, "malformed": 1}
    reader.close()


def test_numeric_trigger_codes():
    name = unique("mknum")
    outlet, _ = _outlet(name, pylsl.cf_int32)
    found = pylsl.resolve_byprop("name", name, minimum=1, timeout=10)
    reader = MarkerReader(found[0], MarkerMap.from_mapping({"left": 1, "right": "2"}), max_per_pull=2)
    time.sleep(0.5)
    for code in (1, 2, 3, 1):
        outlet.push_sample([code])
    got = _read_all(reader, 4)
    assert [g[0] for g in got] == ["left", "right", "left"] and reader.counts["unknown"] == 1
    reader.close()


def test_marker_map_errors():
    with pytest.raises(ConfigError, match="both"):
        MarkerMap.from_mapping({"a": "S  1", "b": ["S  1"]})
    with pytest.raises(ConfigError, match="finite number"):
        MarkerMap.from_mapping({"a": float("nan")})
    with pytest.raises(ConfigError, match="empty"):
        MarkerMap.from_mapping({})
