"""The head-motion stage in a real StreamLoop over LSL loopback (issue 20): a Vectorview stream
whose head jumps 4 mm; the loop publishes NAME-headpos, removes the cHPI lines, recomputes the
forward for the new pose in the background and swaps the operator between chunks, with no
sample lost or repeated."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from .lsl_helpers import Collector, unique

pytest.importorskip("mne")


@pytest.fixture(scope="module")
def setup():
    from rtsource.bench.headmotion import neuromag_bundle
    from rtsource.pipeline.headmotion import neuromag_array
    from rtsource.pipeline.headmotion_sim import HeadMotionSimulation, StepMotion

    bundle, array, origin = neuromag_bundle(n_sources=300)
    motion = StepMotion(jump_m=0.004, first_s=1.2, interval_s=100.0)
    sim = HeadMotionSimulation(neuromag_array("normal"), 1000.0, motion, bundle.sources.positions_m[:1], bundle.sources.normals[:1], origin, seed=2, block_s=0.05)
    data, _ = sim.next(16000)  # up to 16 s: the test stops once both swaps are live (sooner unless the machine is very busy)
    return bundle, array, origin, sim, data.astype(np.float32)


def test_loop_tracks_the_head_and_swaps_the_operator_for_the_new_pose(setup):
    import pylsl

    from rtsource.bench.headmotion import _meg_outlet
    from rtsource.pipeline.headmotion import PoseRebuilder, chpi_geometry
    from rtsource.session import operator_rebuilder
    from rtsource.stream.chpi import ChpiSettings
    from rtsource.stream.headmotion import HeadMotionOptions
    from rtsource.stream.headpose import pose_displacement_m, quat_to_rot
    from rtsource.stream.inlet import StreamSelector
    from rtsource.stream.loop import LoopOptions, StreamLoop
    from rtsource.stream.outputs import HEADPOS_CHANNELS, HEADPOS_SUFFIX

    bundle, array, origin, sim, data = setup
    name = unique("headmotion")
    outlet = _meg_outlet(name + "-in", array, 1000.0)
    rebuilder = PoseRebuilder(bundle, array, origin)
    options = HeadMotionOptions(chpi_geometry(array), ChpiSettings(sim.coil_freqs_hz, sim.coil_head_m, sim.d0), update_mm=3.0, rebuilder=rebuilder)
    loop = StreamLoop(bundle, LoopOptions(selector=StreamSelector(name=name + "-in"), output_name=name, control=False, wait_for_consumer_s=10.0),
                      rebuilder=operator_rebuilder(), headmotion=options)  # fmt: skip
    loop.connect()
    try:
        sources = Collector(name)
        headpos = Collector(name + HEADPOS_SUFFIX)
        assert [headpos.info.desc().child("channels").child("channel").child_value("label")] == [HEADPOS_CHANNELS[0][0]]
        assert loop.headmotion.wait_warm(60)  # the warm-up rebuild
        # a channel goes bad before the head moves: it must stay out. Its rebuild is waited
        # for, so that it goes live first (one that finished after the head moved would be
        # dropped as outdated: test_newest_pose_and_newest_bad_set_end_live)
        bad = array.ch_names[5]
        loop.mark_bad(bad)
        assert loop.features.hot_swap.wait_idle(60)
        thread = loop.run_in_thread()
        while not loop.stats.started_at:  # the inlet is open: LSL gives it what is pushed from now on
            time.sleep(0.01)
        t0 = pylsl.local_clock()
        stamps = t0 + np.arange(len(data)) / 1000.0
        start = time.perf_counter()
        sent = 0
        while sent < len(data):  # real time; stop early once both swaps happened and 2.5 s went out
            wait = start + sent / 1000.0 - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            outlet.push_chunk(data[sent : sent + 20], stamps[sent : sent + 20].tolist())
            sent += 20
            if sent >= 2500 and loop.stats.operator_swaps >= 2 and loop.headmotion.follows:
                break
        deadline = time.monotonic() + 10
        while loop.stats.samples_out < sent and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        loop.stop()
        thread.join(10)
        sources.stop()
        headpos.stop()
    finally:
        loop.close()
    # every input sample came out exactly once, in order
    _, got = sources.data()
    np.testing.assert_array_equal(got, stamps[:sent])
    assert loop.stats.lost == 0 and loop.stats.samples_in == sent
    # the head positions follow the jump (within 1 mm, against the window's centre)
    rows, _ = headpos.data()
    assert len(rows) >= 8  # 10 per s; a pose due while the previous is still being fitted is skipped
    for t, q1, q2, q3, x, y, z, gof, err, v in rows:
        m = np.eye(4)
        m[:3, :3] = quat_to_rot([q1, q2, q3])
        m[:3, 3] = [x, y, z]
        t_mid = t - t0 - 0.0995
        if abs(t_mid - 1.2) < 0.15:  # the window straddles the jump
            continue
        assert pose_displacement_m(m, sim.dev_head_t(t_mid), sim.coil_head_m) < 1e-3
        assert gof > 0.98 and err < 1e-3
    # the operator was recomputed for the new pose and swapped in between two chunks
    swaps = [e for e in loop.events.recent if e["event"] == "operator_swap" and e["reason"] == "head_motion"]
    moved = [e for e in loop.events.recent if e["event"] == "head_moved"]
    assert len(swaps) == 1 and len(moved) == 1, json.dumps(list(loop.events.recent)[-8:])
    assert 3.0 < swaps[0]["displacement_mm"] < 5.0 and swaps[0]["build_ms"] > 0 and len(swaps[0]["pose"]) == 10
    # the operator in use: the new pose's, without the bad channel
    live = loop.operator.bundle
    assert loop.stats.operator_swaps == 2 and bad not in live.ch_names and live.n_channels == bundle.n_channels - 1
    want = rebuilder.leadfield(np.array(live.provenance["head_pose"]["dev_head_t"]))  # (the pose is stored rounded to 1 nm)
    want = want[[i for i, c in enumerate(bundle.ch_names) if c != bad]]
    scale = np.abs(want).max()
    np.testing.assert_allclose(np.asarray(live.gain), want, rtol=0, atol=1e-4 * scale)
    start_pose = np.asarray(bundle.gain)[[i for i, c in enumerate(bundle.ch_names) if c != bad]]
    assert np.abs(np.asarray(live.gain) - start_pose).max() > 1e-2 * scale  # a 4 mm move changes it
    assert 3.0 < loop.stats.head_displacement_mm < 5.0


def _pose_of(operator) -> list:
    return operator.bundle.provenance["head_pose"]["dev_head_t"]


def test_newest_pose_and_newest_bad_set_end_live(setup):
    """A bad-channel change during a head-pose rebuild is not lost, nor is the pose.

    The head-motion rebase (follow thread) and the bad-channel rebuild (hot-swap thread) run
    concurrently; whichever handed over last used to win, so a pose rebuilt with the old bad
    set, or a bad-channel rebuild from the old pose, could end live. The interleavings are
    forced on a real connected StreamLoop (real LSL inlet, real rebuilders and their
    threads): the operator requested last must be the newest pose without the newest bad set.
    """
    from threadpoolctl import threadpool_limits

    from rtsource.bench.headmotion import _meg_outlet
    from rtsource.pipeline.headmotion import PoseRebuilder
    from rtsource.session import operator_rebuilder
    from rtsource.stream.inlet import StreamSelector
    from rtsource.stream.loop import LoopOptions, StreamLoop
    from rtsource.stream.swap import Swap

    bundle, array, origin, _, _ = setup
    with threadpool_limits(1, user_api="blas"):
        rebuilder = PoseRebuilder(bundle, array, origin)
        start = rebuilder.array.dev_head_t.matrix
        poses = []
        for shift in ((0.004, 0.0, 0.0), (0.0, -0.004, 0.0)):
            m = start.copy()
            m[:3, 3] += shift
            poses.append(rebuilder.for_pose(m))
    p1, p2 = poses
    name = unique("headrace")
    _outlet = _meg_outlet(name + "-in", array, 1000.0)  # the loop's inlet needs it alive
    loop = StreamLoop(bundle, LoopOptions(selector=StreamSelector(name=name + "-in"), output_name=name, control=False, telemetry=False),
                      rebuilder=operator_rebuilder())  # fmt: skip
    loop.connect()
    try:
        x, y = bundle.ch_names[3], bundle.ch_names[40]
        # 1. a channel goes bad; its rebuild starts from the old pose (forced: built here, now)
        loop.mark_bad(x)
        features = loop.features
        stale = features._build_without(frozenset({x}))
        # the head moved meanwhile: the rebase (new pose, bad set {x}) is handed over first
        op, _, hand_over = loop._rebase_checked(p1)
        assert hand_over("head_motion", 0.0)
        assert loop._pending.operator is op and x not in op.bundle.ch_names and _pose_of(op) == p1.provenance["head_pose"]["dev_head_t"]
        # ... then the bad-channel rebuild of the old pose finishes: outdated, dropped
        features._hand_over(Swap(stale, frozenset({x}), "manual", 1, 0.0, 0.0, float("nan")))
        assert loop._pending.operator is op
        assert features.hot_swap.wait_idle(60)
        live = loop._pending.operator.bundle
        assert x not in live.ch_names and live.provenance["head_pose"] == p1.provenance["head_pose"]

        # 2. the head moves again; while that rebase runs (it read the bad set {x}), y goes bad
        op2, _, hand_over = loop._rebase_checked(p2)
        loop.mark_bad(y)  # its rebuild starts from the new pose's bundle
        assert not hand_over("head_motion", 0.0)  # built for {x} only: outdated, dropped
        assert features.hot_swap.wait_idle(60)
        live = loop._pending.operator.bundle
        assert x not in live.ch_names and y not in live.ch_names and live.n_channels == bundle.n_channels - 2
        assert live.provenance["head_pose"] == p2.provenance["head_pose"]
        np.testing.assert_array_equal(live.gain, np.asarray(p2.gain)[[i for i, c in enumerate(bundle.ch_names) if c not in (x, y)]])
    finally:
        loop.close()


def test_a_forward_that_cannot_follow_says_why(setup):
    """No rebuilder (e.g. a BEM forward): a head that moves beyond update_mm gives one head_moved
    event with follows = False and the reason, instead of keeping the old operator silently."""
    from rtsource.bench.headmotion import _meg_outlet
    from rtsource.forward.moving_head import BEM_REASON
    from rtsource.pipeline.headmotion import chpi_geometry
    from rtsource.stream.chpi import ChpiSettings
    from rtsource.stream.headmotion import HeadMotionOptions
    from rtsource.stream.inlet import StreamSelector
    from rtsource.stream.loop import LoopOptions, StreamLoop

    bundle, array, _, sim, data = setup
    name = unique("headnofollow")
    _outlet = _meg_outlet(name + "-in", array, 1000.0)  # the loop's inlet needs it alive
    options = HeadMotionOptions(chpi_geometry(array), ChpiSettings(sim.coil_freqs_hz, sim.coil_head_m, sim.d0), update_mm=3.0, publish=False,
                                no_follow_reason=BEM_REASON)  # fmt: skip
    loop = StreamLoop(bundle, LoopOptions(selector=StreamSelector(name=name + "-in"), output_name=name, control=False, telemetry=False), headmotion=options)
    loop.connect()
    try:
        stage = loop.headmotion
        ts = np.arange(len(data)) / 1000.0
        for i in range(1000, 1600, 20):  # the head jumps 4 mm at 1.2 s; the stage fits a pose every 0.1 s
            stage.process(data[i : i + 20].copy(), 20, ts[i : i + 20])
            time.sleep(0.002)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not [e for e in loop.events.recent if e["event"] == "head_moved"]:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        loop.close()
    moved = [e for e in loop.events.recent if e["event"] == "head_moved"]
    assert len(moved) == 1 and moved[0]["follows"] is False and moved[0]["reason"] == BEM_REASON and 3.0 < moved[0]["displacement_mm"] < 5.0
    assert loop.stats.operator_swaps == 0
