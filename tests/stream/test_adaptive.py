"""The exponentially weighted covariance and the adaptive rebuild loop (rtsource.stream.adaptive)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from rtsource.errors import ConfigError
from rtsource.stream import _covariance_kernels as k
from rtsource.stream.adaptive import AdaptiveOperator, ExpWeightedCovariance
from rtsource.stream.outputs import TELEMETRY_CHANNELS

SFREQ = 500.0


def twin_ew(x, lam, scale):
    """Closed form of the recursion: weights (1 - lam) lam^(N-1-t) per sample."""
    y = x.astype(np.float64) * scale
    n = len(y)
    w = (1 - lam) * lam ** (n - 1 - np.arange(n))
    s = (y * w[:, None]).T @ y
    m = w @ y
    total = w.sum()
    age = (w @ (n - 1 - np.arange(n))) / total
    return s, m, total, age


def test_kernel_matches_closed_form_in_any_chunking():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(700, 6)).astype(np.float32)
    scale = rng.uniform(0.5, 2, 6)
    lam = 0.99
    s_ref, m_ref, w_ref, age_ref = twin_ew(x, lam, scale)
    for chunk in (1, 13, 700):
        sxx, sx, state = np.zeros((6, 6)), np.zeros(6), np.zeros(4)
        for i in range(0, 700, chunk):
            m = min(chunk, 700 - i)
            k.ew_cov_update(x[i : i + m], m, lam, scale, sxx, sx, state)
        assert np.allclose(np.triu(sxx), np.triu(s_ref), rtol=1e-10)
        assert np.allclose(sx, m_ref) and np.isclose(state[0], w_ref) and np.isclose(state[1], age_ref) and state[2] == 700


def test_snapshot_is_the_weighted_covariance_and_skips_nan_rows():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(1000, 5)) + rng.normal(size=5) * 3).astype(np.float32)
    x_nan = np.insert(x, [100, 500, 500], np.nan, axis=0).astype(np.float32)
    est = ExpWeightedCovariance(5, SFREQ, half_life_s=0.5, ch_names=list("abcde"))
    est.warm_up()
    assert est.snapshot() is None
    for i in range(0, len(x_nan), 10):
        est.update(x_nan[i : i + 10], min(10, len(x_nan) - i), last_timestamp=float(i))
    assert est.n_samples == 1000 and est.n_skipped == 3
    snap = est.snapshot()
    s_ref, m_ref, w_ref, _ = twin_ew(x, est.lam, np.ones(5))
    mu = m_ref / w_ref
    assert np.allclose(snap.data, s_ref / w_ref - np.outer(mu, mu), rtol=1e-9, atol=1e-12)
    assert np.allclose(snap.mean, mu) and snap.ch_names == tuple("abcde")
    assert not snap.data.flags.writeable and np.array_equal(snap.data, snap.data.T)
    assert snap.last_timestamp == 1000.0  # the last update's newest sample


def test_stationary_data_converge_to_the_covariance():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(4, 4))
    true = a @ a.T
    x = (rng.normal(size=(60000, 4)) @ a.T).astype(np.float32)
    est = ExpWeightedCovariance(4, SFREQ, half_life_s=20.0)
    est.update(x, len(x))
    assert np.allclose(est.snapshot().data, true, rtol=0.1, atol=0.1 * np.abs(true).max())


def test_half_life_and_age():
    est = ExpWeightedCovariance(3, SFREQ, half_life_s=2.0, demean=False)
    ones = np.ones((int(40 * SFREQ), 3), np.float32)
    est.update(ones, len(ones))  # long history at covariance 1
    age = est.age_s
    lam = est.lam
    assert np.isclose(age, lam / (1 - lam) / SFREQ, rtol=1e-3) and 2.8 < age < 2.9  # ~1.44 half-lives
    est.update(3 * ones[: int(2 * SFREQ)], int(2 * SFREQ))  # one half-life at covariance 9
    assert np.allclose(est.snapshot().data, 0.5 * 1 + 0.5 * 9, rtol=1e-3)
    snap = est.snapshot()
    t = snap.taken_at
    assert np.isclose(snap.age_at(t + 1.5), snap.age_s + 1.5)


def test_updates_and_snapshots_from_two_threads_stay_consistent():
    """Rows with all channels equal give a covariance whose entries are all equal: a torn read would not."""
    est = ExpWeightedCovariance(16, SFREQ, half_life_s=0.2)
    rng = np.random.default_rng(3)
    stop = threading.Event()

    def writer():
        block = np.zeros((64, 16), np.float32)
        while not stop.is_set():
            block[:] = rng.normal(size=(64, 1))
            est.update(block, 64)

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    try:
        seen = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            snap = est.snapshot()
            if snap is not None:
                assert np.ptp(snap.data) <= 1e-12 * max(1.0, np.abs(snap.data).max())
                seen += 1
    finally:
        stop.set()
        th.join(5)
    assert seen > 10


def test_seed_and_validation():
    est = ExpWeightedCovariance(3, SFREQ, half_life_s=1.0, demean=False)
    est.seed(np.diag([1.0, 2.0, 3.0]))
    assert np.allclose(est.snapshot().data, np.diag([1.0, 2.0, 3.0]))
    with pytest.raises(ConfigError, match="half_life_s"):
        ExpWeightedCovariance(3, SFREQ, half_life_s=0)
    with pytest.raises(ConfigError, match="shape"):
        est.seed(np.eye(4))
    with pytest.raises(ConfigError, match="interval_s"):
        AdaptiveOperator(est, lambda s: s, interval_s=-1)


def test_adaptive_operator_builds_periodically_from_enough_data():
    est = ExpWeightedCovariance(4, SFREQ, half_life_s=1.0)
    snaps = []

    def build(snap):
        snaps.append(snap)
        return np.linalg.inv(snap.data + np.eye(4))

    ad = AdaptiveOperator(est, build, interval_s=0.02)  # min_samples: one half-life = 500
    try:
        assert ad.min_samples == 500
        assert np.isnan(ad.covariance_age_s) and ad.request_now() is None
        x = np.random.default_rng(4).normal(size=(100, 4)).astype(np.float32)
        ad.update(x, 100)
        time.sleep(0.1)
        assert ad.take() is None and ad.rebuilder.stats.skipped >= 1  # 100 < 500 samples: nothing built
        for _ in range(5):
            ad.update(x, 100)
        assert ad.rebuilder.wait_ready(5)
        swap = ad.take()
        assert swap.payload.n_samples >= 500 and np.allclose(swap.value, np.linalg.inv(swap.payload.data + np.eye(4)))
        assert ad.live_snapshot is swap.payload and ad.covariance_age_s > 0
        tel = ad.telemetry()
        assert set(tel) == {"operator_swaps", "last_swap_ms", "covariance_age_s"} <= {n for n, _ in TELEMETRY_CHANNELS}
        assert tel["operator_swaps"] == 1.0
    finally:
        ad.close()


def test_adaptive_operator_push_style_hand_over():
    est = ExpWeightedCovariance(3, SFREQ, half_life_s=0.1)
    handed = []
    ready = threading.Event()

    def on_built(swap):
        handed.append(swap)
        ready.set()

    ad = AdaptiveOperator(est, lambda snap: snap.n_samples, interval_s=0.02, min_samples=10, on_built=on_built)
    try:
        ad.update(np.random.default_rng(5).normal(size=(50, 3)).astype(np.float32), 50)
        assert ready.wait(5)
        assert handed[0].value == 50 and ad.take() is None and ad.live_snapshot is handed[0].payload
    finally:
        ad.close()
