"""Background rebuilds and atomic swaps (rtsource.stream.swap, .adaptive) - unit tests and a real
LSL loopback test: a minimal loop (pull -> apply the current kernel -> push) while swaps happen."""

from __future__ import annotations

import threading
import time

import numpy as np
import pylsl
import pytest

from rtsource.stream.adaptive import AdaptiveOperator, ExpWeightedCovariance
from rtsource.stream.inlet import Inlet, StreamSelector, resolve_stream
from rtsource.stream.outputs import TELEMETRY_CHANNELS
from rtsource.stream.swap import BackgroundRebuilder

from .lsl_helpers import Collector, eeg_outlet, unique

SFREQ = 500.0


# ---- BackgroundRebuilder unit tests ----

def test_request_build_take():
    with BackgroundRebuilder(lambda p: p * 2) as rb:
        assert rb.take() is None
        rid = rb.request(21, "test")
        assert rb.wait_ready(5.0)
        swap = rb.take()
        assert swap.value == 42 and swap.payload == 21 and swap.reason == "test" and swap.request_id == rid
        assert swap.taken_at >= swap.built_at >= swap.requested_at and swap.swap_ms >= swap.build_ms >= 0
        assert rb.take() is None
        assert rb.stats.swaps == 1 and rb.stats.builds == 1 and rb.stats.last_swap_ms == swap.swap_ms


def test_warm_up_runs_first_and_a_failing_one_is_only_logged(caplog):
    order = []
    gate = threading.Event()

    def warm_up():
        order.append("warm")
        gate.wait(5)

    rb = BackgroundRebuilder(lambda p: order.append(p) or p, warm_up=warm_up)
    rb.request("a")  # arrives during the warm-up: waits for it
    assert rb.busy
    gate.set()
    assert rb.wait_ready(5.0) and rb.take().value == "a"
    assert order == ["warm", "a"]
    rb.close()

    def broken():
        raise RuntimeError("no lead field")

    with BackgroundRebuilder(lambda p: p, warm_up=broken) as rb:
        rb.request(1)
        assert rb.wait_ready(5.0) and rb.take().value == 1
    assert "warm-up" in caplog.text and "no lead field" in caplog.text


def test_requests_coalesce_and_newer_results_supersede():
    gate = threading.Event()
    started = threading.Event()
    built = []

    def build(p):
        started.set()
        gate.wait(5)
        built.append(p)
        return p

    rb = BackgroundRebuilder(build)
    rb.request("a")
    assert started.wait(5)  # "a" is building
    rb.request("b")
    rb.request("c")  # replaces "b" before it was built
    gate.set()
    assert rb.wait_idle(5)
    assert built == ["a", "c"]
    swap = rb.take()
    assert swap.value == "c" and swap.coalesced == 1
    assert rb.stats.superseded == 1 and rb.stats.requests == 3 and rb.stats.builds == 2
    rb.close()


def test_a_failed_build_keeps_the_old_operator(caplog):
    def build(p):
        if p == "bad":
            raise ValueError("singular covariance")
        return p

    with BackgroundRebuilder(build) as rb:
        rb.request("bad")
        assert rb.wait_idle(5)
        assert rb.take() is None
        assert rb.stats.failures == 1 and "singular covariance" in rb.stats.last_error
        assert "keeping the current operator" in caplog.text
        rb.request("good")
        assert rb.wait_ready(5) and rb.take().value == "good"


def test_periodic_builds_skip_until_there_is_something_to_build():
    calls = []

    def payload():
        calls.append(1)
        return None if len(calls) < 3 else len(calls)

    with BackgroundRebuilder(lambda p: p, interval_s=0.02, payload_fn=payload, periodic_reason="adaptive") as rb:
        assert rb.wait_ready(5)
        swap = rb.take()
        assert swap.reason == "adaptive" and swap.value >= 3
        assert rb.stats.skipped >= 2
    with pytest.raises(ValueError, match="payload_fn"):
        BackgroundRebuilder(lambda p: p, interval_s=1.0)


def test_on_built_hands_results_to_a_push_style_install_slot():
    handed = []
    done = threading.Event()

    def on_built(swap):
        handed.append(swap)
        done.set()

    with BackgroundRebuilder(lambda p: p + 1, on_built=on_built) as rb:
        rb.request(1, "bad_channel")
        assert done.wait(5)
        assert rb.take() is None  # nothing kept for take()
        assert handed[0].value == 2 and handed[0].reason == "bad_channel" and handed[0].built_at >= handed[0].requested_at
        assert rb.stats.builds == 1 and rb.stats.swaps == 0


def test_close_is_idempotent_and_refuses_new_requests():
    rb = BackgroundRebuilder(lambda p: (time.sleep(0.05), p)[1])
    rb.request(1)
    rb.close()
    rb.close()
    with pytest.raises(RuntimeError, match="closed"):
        rb.request(2)


# ---- over real LSL: a minimal loop-like driver ----

def _lcmv_unit_gain(gain, cov, reg=0.05):
    """NumPy unit-gain LCMV W = (G^T C^-1 G)^-1 G^T C^-1 with Tikhonov regularisation (test builder)."""
    c = cov + reg * np.trace(cov) / len(cov) * np.eye(len(cov))
    ci_g = np.linalg.solve(c, gain)
    return np.linalg.solve(gain.T @ ci_g, ci_g.T)


def _run_driver(source_of_swaps, n_chan, n_out, n_samples, data, initial_kernel, on_chunk=None):
    """pull -> apply current kernel -> push; install swaps between chunks. Returns what was sent and the swaps."""
    in_name, out_name = unique("swap-in"), unique("swap-out")
    ch_names = [f"E{i}" for i in range(n_chan)]
    src = eeg_outlet(in_name, ch_names, sfreq=SFREQ, unit="volts", fmt=pylsl.cf_double64)
    inlet = Inlet(resolve_stream(StreamSelector(name=in_name), 20.0), max_chunk=32)
    out_info = pylsl.StreamInfo(out_name, "Test", n_out + 1, SFREQ, pylsl.cf_double64, out_name)
    outlet = pylsl.StreamOutlet(out_info, chunk_size=0, max_buffered=60)
    coll = Collector(out_name)
    inlet.open()
    time.sleep(0.3)
    ts_all = 5000.0 + np.arange(n_samples) / SFREQ
    done = threading.Event()

    def produce():
        for i in range(0, n_samples, 10):
            src.push_chunk(data[i : i + 10], ts_all[i : i + 10].tolist())
            time.sleep(0.002)  # about 10x real time
        done.set()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    current_id, kernel = 0, initial_kernel
    kernels = {0: initial_kernel}
    swaps = []  # (output row where the new kernel starts, kernel id, swap)
    got = 0
    deadline = time.monotonic() + 60
    while got < n_samples and time.monotonic() < deadline:
        swap = source_of_swaps.take()  # between chunks: the only place the kernel changes
        if swap is not None:
            current_id, kernel = swap.request_id, swap.value
            kernels[current_id] = kernel
            swaps.append((got, current_id, swap))
        ts = inlet.pull(timeout=0.2)
        n = len(ts)
        if not n:
            continue
        x = inlet.buffer[:n]
        if on_chunk is not None:
            on_chunk(x, n, ts)
        y = np.empty((n, n_out + 1))
        y[:, :n_out] = x @ kernel.T
        y[:, n_out] = current_id
        outlet.push_chunk(y, ts)
        got += n
    producer.join(10)
    end = time.monotonic() + 20
    while coll.n_samples < n_samples and time.monotonic() < end:
        time.sleep(0.05)
    coll.stop()
    coll.inlet.close_stream()
    inlet.close()
    del outlet, src
    out, stamps = coll.data()
    return out, stamps, ts_all, kernels, swaps


def _check_no_loss_no_duplicate_and_exact_kernels(out, stamps, ts_all, data, kernels, swaps, n_out):
    assert len(stamps) == len(ts_all), f"{len(stamps)} samples out for {len(ts_all)} in"
    assert np.array_equal(stamps, ts_all)  # every sample once, in order, with its own timestamp
    ids = out[:, n_out].astype(int)
    # the kernel id changes exactly at the recorded swap points and nowhere else (two swaps
    # before the same chunk: only the second is ever used)
    live_from = {}
    for row, kid, _ in swaps:
        live_from[row] = kid
    change_rows = np.flatnonzero(np.diff(ids)) + 1
    assert change_rows.tolist() == sorted(r for r in live_from if 0 < r < len(ids))
    for row, kid in live_from.items():
        if row < len(ids):
            assert ids[row] == kid
    # before/after each swap: the output is that kernel applied to the same input samples
    for kid in np.unique(ids):
        rows = ids == kid
        assert np.allclose(out[rows, :n_out], data[rows] @ kernels[kid].T, rtol=1e-12, atol=1e-12 * np.abs(out[:, :n_out]).max())


def test_requested_swaps_over_lsl_lose_and_duplicate_no_sample():
    n_chan, n_out, n_samples = 8, 4, 6000
    rng = np.random.default_rng(0)
    data = rng.normal(size=(n_samples, n_chan)) * 1e-5

    def build(seed):
        time.sleep(0.005)  # some work
        return np.random.default_rng(seed).normal(size=(n_out, n_chan))

    stop = threading.Event()
    with BackgroundRebuilder(build) as rb:

        def requester():
            seed = 1
            while not stop.is_set():
                rb.request(seed, "bad_channel")
                seed += 1
                time.sleep(0.03)

        th = threading.Thread(target=requester, daemon=True)
        th.start()
        # request ids are the payload seeds: map id -> kernel through the swap values
        out, stamps, ts_all, kernels, swaps = _run_driver(rb, n_chan, n_out, n_samples, data, np.eye(n_out, n_chan))
        stop.set()
        th.join(5)
    assert len(swaps) >= 5, f"only {len(swaps)} swaps happened"
    _check_no_loss_no_duplicate_and_exact_kernels(out, stamps, ts_all, data, kernels, swaps, n_out)
    ms = np.array([s.swap_ms for _, _, s in swaps])
    print(f"{len(swaps)} requested swaps over LSL; request -> live median {np.median(ms):.1f} ms, max {ms.max():.1f} ms")


def test_adaptive_lcmv_swaps_over_lsl():
    n_chan, n_out, n_samples = 8, 3, 6000
    rng = np.random.default_rng(1)
    gain = rng.normal(size=(n_chan, n_out))
    mixing = rng.normal(size=(n_chan, n_chan))
    data = (rng.normal(size=(n_samples, n_chan)) @ mixing.T) * 1e-5
    cov = ExpWeightedCovariance(n_chan, SFREQ, half_life_s=0.5)
    built = {}

    def build(snapshot):
        w = _lcmv_unit_gain(gain, snapshot.data)
        built[snapshot.taken_at] = (snapshot, w)
        return w

    adaptive = AdaptiveOperator(cov, build, interval_s=0.05, min_samples=200)
    try:
        x32 = np.zeros((32, n_chan), np.float32)

        def feed(x, n, ts):  # the loop folds each prepared chunk into the covariance
            x32[:n] = x
            adaptive.update(x32, n, float(ts[-1]))

        out, stamps, ts_all, kernels, swaps = _run_driver(adaptive, n_chan, n_out, n_samples, data, np.zeros((n_out, n_chan)), on_chunk=feed)
        tel = adaptive.telemetry()
    finally:
        adaptive.close()
    assert len(swaps) >= 3, f"only {len(swaps)} adaptive swaps"
    _check_no_loss_no_duplicate_and_exact_kernels(out, stamps, ts_all, data, kernels, swaps, n_out)
    for _, _, s in swaps:  # each live kernel is the LCMV of the snapshot it was built from
        assert np.allclose(s.value, _lcmv_unit_gain(gain, s.payload.data))
        assert np.allclose(s.value @ gain, np.eye(n_out), atol=1e-8)  # unit gain
        assert s.payload.n_samples >= 200 and s.reason == "adaptive"
    labels = {name for name, _ in TELEMETRY_CHANNELS}
    assert set(tel) <= labels and tel["operator_swaps"] == len(swaps)
    assert np.isfinite(tel["covariance_age_s"]) and tel["covariance_age_s"] > 0 and np.isfinite(tel["last_swap_ms"])
    ms = np.array([s.swap_ms for _, _, s in swaps])
    print(f"{len(swaps)} adaptive swaps over LSL; snapshot -> live median {np.median(ms):.1f} ms; covariance age {tel['covariance_age_s']:.2f} s")
