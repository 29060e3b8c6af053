"""Head motion: cHPI tracking accuracy, localisation while moving, and the forward that follows.

:func:`evaluate_headmotion` (``tools/headmotion_acceptance.py``): Vectorview-306 with four
cHPI coils (83-331 Hz), a head that moves 10 mm (and 3 degrees) over 30 s, data computed with
the moving forward (:mod:`rtsource.pipeline.headmotion_sim`). Measured: tracked pose against
the simulated one (coil displacement error, rotation error), and the localisation error of a
fixed cortical source per 1 s window -- head still, head moving without operator updates,
head moving with the operator recomputed whenever the tracked head moved more than
``update_mm`` from the operator's pose.

:func:`bench_headmotion` (``rtsource bench headmotion``): a real :class:`StreamLoop` on a
live LSL stream of 306 channels at 1 kHz whose head jumps by more than the threshold every
few seconds; 8k sources, sphere model, dSPM. Measured per jump: the loop's swap time
(``head_moved`` request -> operator live, the ``operator_swap`` event) and the time from the
first sample after the jump to the operator being live (includes the tracking window);
and sample continuity on the source outlet (no sample lost or repeated).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import numpy as np


def neuromag_bundle(spacing: str = "ico4", n_sources: int | None = None, sfreq: float = 1000.0, method: str = "dSPM"):
    """(bundle, array, origin): a Vectorview-306 operator on the template (sphere model, ad hoc noise).

    ``n_sources``: every 5th of ico5 in each hemisphere (8192 as the hot-swap benchmark);
    else the ``spacing`` source space.
    """
    from ..anatomy.template import load_template, template_source_space
    from ..build import build_bundle
    from ..config import NoiseCovSettings, Settings
    from ..forward.head_model import SphereHead
    from ..forward.leadfield import make_leadfield
    from ..forward.meg_sphere import meg_sphere_origin
    from ..pipeline.headmotion import neuromag_array

    tpl = load_template()
    origin, _ = meg_sphere_origin(tpl.surfaces.inner_skull)
    array = neuromag_array("normal")
    if n_sources:
        dense = template_source_space("ico5")
        half = n_sources // 2
        pick = np.arange(0, dense.n_sources, 5)[:half].tolist() + np.arange(2, dense.n_sources, 5)[: n_sources - half].tolist()
        sources = dense.subset(pick, name=f"fsaverage-ico5-{n_sources}")
    else:
        sources = template_source_space(spacing)
    slf = make_leadfield(sources, array, SphereHead(meg_origin_m=origin, inner_skull=tpl.surfaces.inner_skull), use_cache=False)
    s = dataclasses.replace(Settings(), noise_cov=NoiseCovSettings(source="ad_hoc"))
    s = dataclasses.replace(s, inverse=dataclasses.replace(s.inverse, method=method))
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):  # a 306 x 306 eigh takes seconds with contended BLAS threads
        return build_bundle(s, sfreq=sfreq, leadfield=slf), array, origin


def _visible_source(bundle, origin: np.ndarray) -> int:
    """A cortical source MEG sees well: tangential (|n.r| < 0.3) with the largest gain along its normal."""
    pos = bundle.sources.positions_m - origin
    nrm = bundle.sources.normals
    radial = np.abs(np.sum(pos * nrm, axis=1)) / np.linalg.norm(pos, axis=1)
    g = np.asarray(bundle.gain).reshape(bundle.n_channels, -1, 3)
    mags = [i for i, t in enumerate(bundle.ch_types) if t == "mag"]
    gn = np.linalg.norm(np.einsum("cnj,nj->cn", g[mags], nrm), axis=0)
    gn[radial > 0.3] = 0.0
    return int(np.argmax(gn))


def _peak_error_m(bundle, amplitude: np.ndarray, true_m: np.ndarray) -> float:
    """Distance (m) from the true source to the source with the largest pooled estimate of ``amplitude``.

    ``amplitude`` (n_channels,) complex: the data's Fourier coefficient at the source frequency.
    """
    y = bundle.kernel @ amplitude  # (n_src * n_orient,)
    p = np.sum(np.abs(y.reshape(bundle.n_sources, bundle.n_orient)) ** 2, axis=1) / bundle.noise_norm**2
    return float(np.linalg.norm(bundle.sources.positions_m[int(np.argmax(p))] - true_m))


def evaluate_headmotion(duration_s: float = 30.0, spacing: str = "ico4", update_mm: float = 2.0, window_s: float = 1.0, sfreq: float = 1000.0,
                        chunk: int = 50, method: str = "sLORETA", progress=print) -> dict:  # fmt: skip
    """The acceptance measurement (see the module doc); returns a JSON-ready dict.

    The localisation uses sLORETA by default: its noise-free single-source localisation
    error is zero (Pascual-Marqui 2002), so the errors measure the head motion, not the
    method's own bias (dSPM's peak lies 1-4 cm from a cortical MEG source even without noise).
    """
    from ..pipeline.headmotion import PoseRebuilder, chpi_geometry, neuromag_array
    from ..pipeline.headmotion_sim import HeadMotionSimulation, MotionSpec, rotation_angle_deg
    from ..stream.channels import StreamDescription
    from ..stream.chpi import ChpiSettings, ChpiTracker
    from ..stream.headpose import pose_displacement_m

    bundle, array, origin = neuromag_bundle(spacing, sfreq=sfreq, method=method)
    k = _visible_source(bundle, origin)
    true_m = bundle.sources.positions_m[k]
    sim_array = neuromag_array("accurate")
    motion = MotionSpec(duration_s=duration_s)
    src_f = 11.0

    def simulation(moving: bool) -> HeadMotionSimulation:
        return HeadMotionSimulation(sim_array, sfreq, motion if moving else None, true_m[None], bundle.sources.normals[k][None], origin,
                                    source_freqs_hz=(src_f,), seed=1)  # fmt: skip

    geometry = chpi_geometry(array)
    desc = StreamDescription("sim", "MEG", "sim", sfreq, array.n_channels, "float32", array.ch_names, array.whitening_groups, array.ch_units)
    rebuilder = PoseRebuilder(bundle, array, origin)
    n_win = int(round(window_s * sfreq))
    results: dict = {"setup": {"channels": bundle.n_channels, "sources": bundle.n_sources, "method": bundle.method, "duration_s": duration_s,
                               "update_mm": update_mm, "coil_freqs_hz": list(simulation(True).coil_freqs_hz), "motion_mm": 10.0,
                               "rotation_deg": motion.rotation_deg, "source_index": k}}  # fmt: skip
    for moving in (False, True):
        sim = simulation(moving)
        settings = ChpiSettings(sim.coil_freqs_hz, sim.coil_head_m, sim.d0, window_s=0.2, step_s=0.1)
        tracker = ChpiTracker(geometry, settings, sfreq)
        tracker.bind(desc)
        fixed = bundle  # the operator built for the start pose
        follow, follow_pose, rebuilds = bundle, sim.d0, []
        track_err, rot_err = [], []
        err_fixed, err_follow = [], []
        total = int(round(duration_s * sfreq))
        done = 0
        acc = np.zeros(array.n_channels, complex)
        acc_n = 0
        win_op = follow
        t0 = time.perf_counter()
        while done < total:
            n = min(chunk, total - done)
            x, t = sim.next(n)
            buf = x.astype(np.float32)
            window = tracker.process(buf, n, t)
            # the operator in use for this chunk (updates take effect from the next chunk)
            acc += np.exp(-2j * np.pi * src_f * t) @ buf.astype(float)
            acc_n += n
            if acc_n >= n_win:
                err_fixed.append(_peak_error_m(fixed, acc, true_m))
                err_follow.append(_peak_error_m(win_op, acc, true_m))
                acc[:] = 0
                acc_n = 0
                win_op = follow
            if window is not None:
                pose = tracker.fit_pose(window)
                if pose is not None:
                    t_mid = pose.time - (tracker.window - 1) / (2 * sfreq)
                    truth = sim.dev_head_t(t_mid)
                    track_err.append(pose_displacement_m(pose.matrix, truth, sim.coil_head_m))
                    rot_err.append(rotation_angle_deg(pose.matrix, truth))
                    moved = pose_displacement_m(pose.matrix, follow_pose, sim.coil_head_m)
                    if moved * 1e3 > update_mm:
                        follow = rebuilder.for_pose(pose.matrix)
                        follow_pose = pose.matrix
                        rebuilds.append({"time_s": round(float(pose.time), 3), "moved_mm": round(moved * 1e3, 3), "ms": round(rebuilder.last_ms, 1)})
            done += n
        key = "moving" if moving else "still"
        res = {
            "poses": tracker.poses,
            "rejected": tracker.rejected,
            "track_error_mm_max": round(float(np.max(track_err)) * 1e3, 4) if track_err else None,
            "track_error_mm_median": round(float(np.median(track_err)) * 1e3, 4) if track_err else None,
            "rotation_error_deg_max": round(float(np.max(rot_err)), 4) if rot_err else None,
            "loc_error_mm_fixed_operator": [round(e * 1e3, 2) for e in err_fixed],
            "loc_error_mm_following": [round(e * 1e3, 2) for e in err_follow],
            "rebuilds": rebuilds,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        results[key] = res
        progress(
            f"{key}: {tracker.poses} poses ({tracker.rejected} rejected), tracking error max {res['track_error_mm_max']} mm / "
            f"{res['rotation_error_deg_max']} deg; localisation error (mm) fixed operator mean {np.mean(err_fixed) * 1e3:.2f} "
            f"max {np.max(err_fixed) * 1e3:.2f}, following mean {np.mean(err_follow) * 1e3:.2f} max {np.max(err_follow) * 1e3:.2f}; "
            f"{len(rebuilds)} rebuilds"
        )
    still = np.array(results["still"]["loc_error_mm_fixed_operator"])
    mov_fixed = np.array(results["moving"]["loc_error_mm_fixed_operator"])
    mov_follow = np.array(results["moving"]["loc_error_mm_following"])
    m = min(len(still), len(mov_follow))
    results["acceptance"] = {
        "tracking_within_1mm_1deg": bool(results["moving"]["track_error_mm_max"] <= 1.0 and results["moving"]["rotation_error_deg_max"] <= 1.0),
        "loc_excess_mm_following_max": round(float(np.max(mov_follow[:m] - still[:m])), 2),
        "loc_excess_mm_fixed_max": round(float(np.max(mov_fixed[:m] - still[:m])), 2),
        "following_within_3mm": bool(np.max(mov_follow[:m] - still[:m]) <= 3.0),
    }
    progress(f"acceptance: {json.dumps(results['acceptance'])}")
    return results


def _meg_outlet(name: str, array, sfreq: float):
    """A pylsl outlet describing ``array``'s channels (labels, MEG types, SI units)."""
    import pylsl

    from ..sensors.meg import channel_metadata

    info = pylsl.StreamInfo(name, "MEG", array.n_channels, sfreq, pylsl.cf_float32, name + "-src")
    chans = info.desc().append_child("channels")
    for meta in channel_metadata(array):
        ch = chans.append_child("channel")
        for key in ("label", "type", "unit"):
            ch.append_child_value(key, meta[key])
    return pylsl.StreamOutlet(info, chunk_size=0, max_buffered=360)


def bench_headmotion(n_jumps: int = 6, n_sources: int = 8192, sfreq: float = 1000.0, chunk: int = 20, jump_mm: float = 4.0,
                     interval_s: float = 5.0, update_mm: float = 3.0, method: str = "dSPM", progress=print) -> dict:  # fmt: skip
    """``rtsource bench headmotion`` (see the module doc); returns a JSON-ready dict."""
    import pylsl

    from ..pipeline.headmotion import PoseRebuilder, chpi_geometry, neuromag_array
    from ..pipeline.headmotion_sim import HeadMotionSimulation, StepMotion
    from ..stream.chpi import ChpiSettings
    from ..stream.headmotion import HeadMotionOptions
    from ..stream.inlet import StreamSelector
    from ..stream.loop import LoopOptions, StreamLoop

    bundle, array, origin = neuromag_bundle(n_sources=n_sources, sfreq=sfreq, method=method)
    rebuilder = PoseRebuilder(bundle, array, origin)
    motion = StepMotion(jump_m=jump_mm * 1e-3, first_s=3.0, interval_s=interval_s)
    duration = motion.first_s + n_jumps * interval_s
    idle = _idle_rebuilds(bundle, rebuilder, progress)
    idle_ms = np.array(idle["wall_ms"])
    k = _visible_source(bundle, origin)
    sim = HeadMotionSimulation(neuromag_array("accurate"), sfreq, motion, bundle.sources.positions_m[k][None], bundle.sources.normals[k][None], origin)
    total = int(round(duration * sfreq))
    data, _ = sim.next(total)
    data = data.astype(np.float32)
    progress(f"simulated {duration:.0f} s of 306-channel data with {n_jumps} head jumps of {jump_mm:g} mm")

    tag = f"headmotion-{int(time.time() * 1000) % 10**9}"
    outlet = _meg_outlet(tag + "-in", array, sfreq)
    geometry = chpi_geometry(array)
    chpi = ChpiSettings(sim.coil_freqs_hz, sim.coil_head_m, sim.d0)
    options = LoopOptions(selector=StreamSelector(name=tag + "-in"), output_name=tag + "-out", control=False, max_chunk=256, wait_for_consumer_s=10.0)
    loop = StreamLoop(bundle, options, headmotion=HeadMotionOptions(geometry, chpi, update_mm=update_mm, rebuilder=rebuilder))
    loop.connect()
    # consumer of the source outlet: every timestamp it receives
    received: list[np.ndarray] = []
    stop = threading.Event()

    def consume():
        found = pylsl.resolve_byprop("name", tag + "-out", minimum=1, timeout=30)
        inlet = pylsl.StreamInlet(found[0], max_buflen=360, processing_flags=0)
        inlet.open_stream(timeout=30)
        buf = np.zeros((1024, bundle.n_sources), np.float32)
        while not stop.is_set():
            _, ts = inlet.pull_chunk(timeout=0.2, max_samples=1024, dest_obj=buf)
            if ts:
                received.append(np.asarray(ts))
        while True:
            _, ts = inlet.pull_chunk(timeout=1.0, max_samples=1024, dest_obj=buf)
            if not ts:
                break
            received.append(np.asarray(ts))

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    # wait for the follow thread's warm-up (a first rebuild) before streaming
    loop.headmotion.wait_warm(120)
    thread = loop.run_in_thread()
    while not loop.stats.started_at:  # the inlet is open: LSL gives it what is pushed from now on
        time.sleep(0.01)
    time.sleep(0.5)
    t0 = pylsl.local_clock()
    stamps = t0 + np.arange(total) / sfreq
    start = time.perf_counter()
    for i in range(0, total, chunk):
        due = start + i / sfreq
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        outlet.push_chunk(data[i : i + chunk], stamps[i : i + chunk].tolist())
    time.sleep(3.0)
    loop.stop()
    thread.join(30)
    stop.set()
    consumer.join(30)
    loop.close()
    got = np.concatenate(received) if received else np.zeros(0)
    swaps = [e for e in loop.events.recent if e["event"] == "operator_swap" and e.get("reason") == "head_motion"]
    jumps = [t0 + j for j in motion.jump_times(duration)]
    rows = []
    for e in swaps:
        before = [j for j in jumps if j <= e["time"]]
        rows.append({"swap_ms": float(e["swap_ms"]), "build_ms": float(e["build_ms"]), "displacement_mm": float(e["displacement_mm"]),
                     "build_thread_cpu_ms": e.get("build_thread_cpu_ms"), "stages_ms": e.get("stages_ms"),
                     "motion_to_live_ms": round((e["time"] - before[-1]) * 1e3, 1) if before else None})  # fmt: skip
    live = np.array([r["swap_ms"] for r in rows]) if rows else np.array([np.nan])
    m2l = np.array([r["motion_to_live_ms"] for r in rows if r["motion_to_live_ms"] is not None] or [np.nan])
    unique = np.unique(got)
    res = {
        "setup": {"channels": bundle.n_channels, "sources": bundle.n_sources, "method": method, "sfreq": sfreq, "chunk": chunk, "jumps": n_jumps,
                  "jump_mm": jump_mm, "update_mm": update_mm},  # fmt: skip
        "idle_rebuild_ms_median": round(float(np.median(idle_ms)), 1),
        "idle": idle,
        "swaps": rows,
        "swap_ms_median": round(float(np.median(live)), 1),
        "swap_ms_max": round(float(np.max(live)), 1),
        "motion_to_live_ms_median": round(float(np.median(m2l)), 1),
        "motion_to_live_ms_max": round(float(np.max(m2l)), 1),
        "samples_in": int(loop.stats.samples_in),
        "samples_out": int(loop.stats.samples_out),
        "lost": int(loop.stats.lost),
        "consumer_samples": int(len(got)),
        "consumer_repeated": int(len(got) - len(unique)),
        "consumer_missing": int(len(np.setdiff1d(stamps, unique))),
        "poses": int(loop.headmotion.tracker.poses),
        "skipped_poses": int(loop.headmotion.skipped_poses),
    }
    progress(
        f"head motion -> operator live ({len(rows)} swaps): request -> live median {res['swap_ms_median']} ms, max {res['swap_ms_max']} ms; "
        f"first moved sample -> live median {res['motion_to_live_ms_median']} ms, max {res['motion_to_live_ms_max']} ms "
        f"(includes the {chpi.window_s:g} s tracking window and {chpi.step_s:g} s pose step); build vs idle {res['idle_rebuild_ms_median']} ms; "
        f"samples in {res['samples_in']} out {res['samples_out']} lost {res['lost']}, consumer got {res['consumer_samples']} "
        f"(missing {res['consumer_missing']}, repeated {res['consumer_repeated']})"
    )
    return res


def _idle_rebuilds(bundle, rebuilder, progress, n: int = 5) -> dict:
    """Pose rebuilds + stream operators with nothing else running in the process, one BLAS thread.

    Per rebuild: wall and process CPU time (less sensitive to a shared machine's load),
    the stages (:attr:`PoseRebuilder.last_stages` and the stream operator's preparation);
    the float32 operator's output error against the float64 one; and the bound: the three
    products over the lead field at the measured single-thread sgemm rate.
    """
    from threadpoolctl import threadpool_limits

    from ..inverse.operator import apply_inverse
    from ..stream.channels import ChannelMap
    from ..stream.operator import StreamOperator

    wall, cpu, stages = [], [], []
    with threadpool_limits(1, user_api="blas"):
        rebuilder.prepare()  # as the loop's follow thread does first
        m = rebuilder.array.dev_head_t.matrix.copy()
        for i in range(n + 1):
            m[:3, 3] += 0.001 * (-1) ** i
            t, c = time.perf_counter(), time.process_time()
            nb = rebuilder.for_pose(m)
            t1 = time.perf_counter()
            k = nb.n_channels
            StreamOperator(nb, ChannelMap(np.arange(k), np.ones(k), ("T",) * k, (), False), max_chunk=64).warm_up()
            if i:  # the first pays for allocations and caches
                wall.append((time.perf_counter() - t) * 1e3)
                cpu.append((time.process_time() - c) * 1e3)
                stages.append({**rebuilder.last_stages, "stream_operator": (time.perf_counter() - t1) * 1e3})
        stage_ms = {key: round(float(np.median([s.get(key, np.nan) for s in stages])), 1) for key in stages[0]}
        # float32 against float64 (the same PoseInverse): relative output error on random data
        err = float("nan")
        moving, inverse = rebuilder._prepared()
        if inverse is not None:
            g = moving.gain(rebuilder.head_to_model @ m)
            x = np.random.default_rng(0).normal(size=(32, k))
            y64 = apply_inverse(inverse.operator(g, dtype=np.float64), x)
            err = float(np.abs(apply_inverse(inverse.operator(g), x) - y64).max() / np.abs(y64).max())
        # the machine's single-thread sgemm rate, on a product of the operator's shape
        n3 = 3 * bundle.n_sources
        a = np.random.default_rng(1).normal(size=(k, k)).astype(np.float32)
        g32 = np.random.default_rng(2).normal(size=(k, n3)).astype(np.float32)
        ts = []
        for _ in range(4):
            t = time.perf_counter()
            a @ g32
            ts.append(time.perf_counter() - t)
    gflop = (2 * k * k * n3 * 2 + k * k * n3) / 1e9  # G^T C and (G^T C) Q as gemm, G R G^T as syrk
    rate = 2 * k * k * n3 / 1e9 / min(ts)
    res = {
        "wall_ms": [round(x, 1) for x in wall], "cpu_ms": [round(x, 1) for x in cpu], "stages_ms": stage_ms,
        "float32_rel_error": err, "products_gflop": round(gflop, 2), "sgemm_gflops_1thread": round(rate, 1),
        "products_bound_ms": round(gflop / rate * 1e3, 1),
    }  # fmt: skip
    progress(
        f"idle pose rebuild + stream operator, {k} ch x {bundle.n_sources} sources {bundle.method}: median {np.median(wall):.0f} ms "
        f"(CPU {np.median(cpu):.0f} ms), max {max(wall):.0f} ms; stages (median ms): " + ", ".join(f"{key} {v:g}" for key, v in stage_ms.items())
    )
    progress(
        f"bound: the three products over the lead field are {gflop:.1f} GFLOP, {gflop / rate * 1e3:.0f} ms at this machine's "
        f"single-thread sgemm rate ({rate:.0f} GFLOP/s now); float32 operator vs float64: relative output error {err:.1e}"
    )
    return res


def run(*, quick: bool, method: str, progress) -> dict:
    """``rtsource bench headmotion`` (``--quick``: 3 jumps and 2k sources instead of 6 and 8k)."""
    if quick:
        return bench_headmotion(n_jumps=3, n_sources=2048, method=method, progress=progress)
    return bench_headmotion(method=method, progress=progress)
