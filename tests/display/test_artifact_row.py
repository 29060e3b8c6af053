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
