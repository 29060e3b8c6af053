"""The health panel's artifact line, from telemetry values as the loop publishes them."""

from __future__ import annotations

import os

import pytest

from rtsource.display import gui_binding

pytestmark = pytest.mark.skipif(gui_binding() is None, reason='no Qt binding installed (pip install "rtsource[gui]")')


def test_the_health_panel_shows_the_repair_only_when_the_loop_runs_it():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from rtsource.display.health import artifact_row

    assert artifact_row({"artifact_delay_ms": 0.0, "artifact_ms_p50": 0.0}) is None  # no artifact stage
    assert artifact_row({}) is None  # a loop from before the artifact channels
    row = artifact_row({"artifact_delay_ms": 250.0, "artifact_repaired": 0.123, "artifact_channels": 0.25, "artifact_episodes": 7,
                        "artifact_ms_p50": 0.05, "artifact_ms_p99": 1.5})  # fmt: skip
    assert row.label == "artifact repair" and row.level == "ok"
    assert "12.3% of samples repaired (25% of channels in them), 7 episode(s)" in row.value and "look-ahead 250 ms" in row.value
    assert artifact_row({"artifact_delay_ms": 250.0, "artifact_repaired": 0.4}).level == "warn"  # repairing most of the time


def test_the_health_panel_follows_a_live_recalibration_from_its_events():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import json

    from rtsource.display.buffers import EventLog
    from rtsource.display.health import recalibration_row

    log = EventLog()
    assert recalibration_row(log.recalibration()) is None  # none yet: no line
    rows = []
    for ev in ({"state": "recording", "seconds": 60, "methods": ["projection"]}, {"state": "ready", "fit_ms": 120.0, "methods": ["projection"]},
               {"state": "live", "swap_ms": 310.0, "methods": ["projection"]}, {"state": "failed", "error": "projection refit found no ocular component"}):  # fmt: skip
        log.add(json.dumps({"event": "artifact_calibration", "time": 1.0, **ev}))
        log.add(json.dumps({"event": "operator_swap", "time": 1.0}))  # other events do not hide it
        rows.append(recalibration_row(log.recalibration()))
    assert [r.level for r in rows] == ["info", "info", "ok", "warn"]
    assert rows[0].value == "recording 60 s for projection" and rows[2].value == "projection live 310 ms after the recording"
    assert rows[3].value.startswith("failed: projection refit found no ocular component")
