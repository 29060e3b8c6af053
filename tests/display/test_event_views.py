"""The events window (``rtsource view --events``): running average and connectivity matrix from
real NAME-evoked / NAME-connectivity outlets, drawn offscreen to a PNG in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from rtsource.display import gui_binding
from rtsource.display.event_views import connectivity_matrix
from rtsource.stream.event_layout import ConnectivityLayout, EpochLayout
from rtsource.stream.outlets import OutputIdentity, open_event_outlet

from ..stream.lsl_helpers import unique

ROIS = ("V1-lh", "V1-rh", "M1-lh", "M1-rh", "A1-lh")
BANDS = (("alpha", 8.0, 12.0), ("beta", 13.0, 30.0))


def _meta(layout: ConnectivityLayout) -> dict:
    return {"rois": ",".join(layout.rois), "measures": ",".join(layout.measures), "bands": ",".join(f"{n}:{lo:g}-{hi:g}" for n, lo, hi in layout.bands),
            "output": layout.output, "strongest_k": str(layout.strongest_k), "window_s": "1.0"}  # fmt: skip


def test_matrix_from_all_pairs_and_from_the_strongest_edges():
    full = ConnectivityLayout(ROIS, ("coh", "imcoh"), BANDS, 10.0, 1.0)
    row = np.arange(full.n_channels, dtype=np.float32)
    m = connectivity_matrix(row, _meta(full), "imcoh", "beta")
    n_pairs = 10
    block = 1 * 2 + 1
    assert m[0, 1] == -m[1, 0] == block * n_pairs and m[3, 4] == block * n_pairs + 9 and np.isnan(m[2, 2])
    top = ConnectivityLayout(ROIS, ("coh", "imcoh"), BANDS, 10.0, 1.0, output="strongest", strongest_k=2)
    row = np.zeros(top.n_channels, np.float32)
    row[3 * 4 : 3 * 4 + 4] = [9, 0.7, 0, -0.5]  # imcoh beta: pair 9 (3~4) then pair 0 (0~1)
    m = connectivity_matrix(row, _meta(top), "imcoh", "beta")
    assert m[3, 4] == pytest.approx(0.7) and m[0, 1] == pytest.approx(-0.5) and np.isnan(m[0, 2])
    assert m[4, 3] == pytest.approx(-0.7) and m[1, 0] == pytest.approx(0.5)  # imcoh: antisymmetric
    assert connectivity_matrix(row, _meta(top), "coh", "alpha")[1, 0] == connectivity_matrix(row, _meta(top), "coh", "alpha")[0, 1]
    assert top.labels()[:2] == ["coh:alpha:top1:pair", "coh:alpha:top1:value"]


@pytest.mark.skipif(gui_binding() is None, reason='no Qt binding installed (pip install "rtsource[gui]")')
def test_events_window_draws_average_and_matrix(tmp_path):
    name = unique("evview")
    ident = OutputIdentity(name, name)
    sfreq, n_t = 100.0, 51
    epochs = EpochLayout(("target", "standard"), ROIS, -0.1, sfreq, n_t, (), True, "", "roi")
    conn = ConnectivityLayout(ROIS, ("coh", "imcoh"), BANDS, 10.0, 1.0)
    evoked_out = open_event_outlet("evoked", epochs, ident)
    conn_out = open_event_outlet("connectivity", conn, ident)
    t = -0.1 + np.arange(n_t) / sfreq
    avg = np.exp(-0.5 * ((t[:, None] - 0.1) / 0.02) ** 2) * np.array([3.0, 1.0, 0.5, -2.0, 0.2])
    rng = np.random.default_rng(0)
    stop = threading.Event()

    def publish():
        k = 0
        while not stop.is_set():
            k += 1
            evoked_out.push_sample(np.r_[1.0, k, (avg + 0.1 * rng.normal(size=avg.shape) / np.sqrt(k)).ravel()].astype(np.float32))
            conn_out.push_sample(rng.uniform(-1, 1, conn.n_channels).astype(np.float32))
            time.sleep(0.1)

    th = threading.Thread(target=publish, daemon=True)
    th.start()
    png = tmp_path / "events.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    try:
        r = subprocess.run([sys.executable, "-m", "rtsource.cli", "view", name, "--events", "--screenshot", str(png)],
                           env=env, capture_output=True, text=True, timeout=90)  # fmt: skip
    finally:
        stop.set()
        th.join(2)
    assert r.returncode == 0, r.stderr[-2000:]
    assert png.exists()
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB")).astype(float)
    h, w, _ = img.shape
    assert w >= 800 and h >= 300
    # both halves drew something: curves on the left, a coloured matrix on the right
    assert img[:, : w // 2].std() > 10 and img[:, w // 2 :].std() > 10
