"""``rtsource bench``: speed measured against baselines in the same run.

    rtsource bench kernels   per-chunk time of rtsource's kernels vs numpy matmul + pooling,
                             one plain GEMV pass over the operator (the memory floor) and
                             MNE-Python's prepared apply_inverse_raw (when installed)
    rtsource bench lowrank   306-channel rank-70 operator: low-rank path vs full rank
    rtsource bench latency   end to end over LSL (producer -> X -> consumer, 3 processes):
                             X = a bare pylsl relay, a relay that publishes as many
                             channels as there are sources, and `rtsource run`
    rtsource bench startup   launch of `rtsource run` to its first published sample, cold
                             (empty numba cache) and warm
    rtsource bench hotswap   bad-channel hot swap in a running `rtsource run` (template head,
                             64 ch x 8192 sources, dSPM, producer and consumer in their own
                             processes): command -> new operator live, against the same
                             rebuild on an idle process
    rtsource bench connectivity  per-step time of the ROI connectivity stage (68 ROIs, 2,278
                             pairs, alpha + beta, five measures, 1 s windows every 100 ms at
                             500 Hz) against NumPy recomputing one window's coherence
    rtsource bench all       everything; --json FILE writes the results

Times are medians and 99th percentiles over many repetitions, each method timed in its
own blocks and the blocks repeated in rounds so that machine noise hits them alike; ratios
compare numbers from the same run. Nothing here asserts a speed: it measures and prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# ---- kernels ----------------------------------------------------------------------------


def _random_bundle(n_chan: int, n_src: int, n_orient: int, sfreq: float = 500.0, seed: int = 0, rank: int | None = None):
    from .anatomy.source_space import SourceSpace
    from .bundle import OperatorBundle

    rng = np.random.default_rng(seed)
    if rank is None:
        kernel = rng.normal(size=(n_src * n_orient, n_chan)) * 1e5
    else:
        kernel = rng.normal(size=(n_src * n_orient, rank)) @ rng.normal(size=(rank, n_chan)) * 1e4
    normals = rng.normal(size=(n_src, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    names = tuple(f"C{i:03d}" for i in range(n_chan))
    sources = SourceSpace(rng.normal(size=(n_src, 3)) * 0.05, normals, np.ones(n_src) * 1e-5, np.zeros(n_src), "template", f"random-{n_src}")
    return OperatorBundle(
        kernel=kernel, noise_norm=rng.uniform(0.5, 2.0, n_src) * 1e5, n_orient=n_orient, method="dSPM", output_unit="",
        ch_names=names, ch_types=("eeg",) * n_chan, ch_units=("V",) * n_chan, reference="average", sfreq=sfreq,
        sources=sources, channel_positions_m=np.zeros((n_chan, 3)), channel_frame="template",
    )  # fmt: skip


def _timeit(fns: dict, reps: int, warmup: int = 5, rounds: int = 3) -> dict:
    """{name: (median_ms, p99_ms)}, each method timed in its own block, blocks repeated.

    Methods run in separate blocks (never alternating call by call): the thread pools of
    numba (OpenMP) and of OpenBLAS keep spinning after each call, and alternating them
    makes both wait for each other (8 ms instead of 0.6 + 2.6 ms on 2 cores). The blocks
    go round-robin ``rounds`` times, so slow drifts of the machine hit every method alike.
    """
    times = {k: [] for k in fns}
    per_round = max(1, reps // rounds)
    for _ in range(rounds):
        for k, f in fns.items():
            for _ in range(warmup):
                f()
            for _ in range(per_round):
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
    return {k: (float(np.median(v)) * 1e3, float(np.percentile(v, 99)) * 1e3) for k, v in times.items()}


def _mne_prepared(n_chan: int, n_src: int, loose: float, fixed: bool):
    """MNE-Python's prepared inverse of the same size, and a function applying it to n samples."""
    import warnings

    import mne

    from .sensors.montage import CAP_64, standard_montage

    mne.set_log_level("ERROR")
    names = list(CAP_64[:n_chan])
    info = mne.create_info(names, 500.0, "eeg")
    pos = standard_montage("standard_1005").pick(names).electrodes.positions_m
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info.set_montage(mne.channels.make_dig_montage(dict(zip(names, pos)), coord_frame="head"))
    sphere = mne.make_sphere_model(r0=(0.0, -0.019, 0.002), head_radius=0.095)
    rng = np.random.default_rng(0)
    u = rng.normal(size=(n_src, 3))
    u[:, 2] = np.abs(u[:, 2])
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    rr = u * rng.uniform(0.03, 0.07, size=(n_src, 1)) + np.array([0.0, -0.019, 0.002])
    src = mne.setup_volume_source_space(pos=dict(rr=rr, nn=u), sphere=sphere)
    fwd = mne.make_forward_solution(info, mne.transforms.Transform("mri", "head"), src, sphere, meg=False, eeg=True)
    cov = mne.make_ad_hoc_cov(info)
    raw = mne.io.RawArray(rng.normal(size=(n_chan, 64)) * 1e-5, info)
    raw.set_eeg_reference(projection=True)
    inv = mne.minimum_norm.make_inverse_operator(raw.info, fwd, cov, loose="auto" if fixed else loose, depth=0.8, fixed=fixed)
    prepared = mne.minimum_norm.prepare_inverse_operator(inv, nave=1, lambda2=1 / 9, method="dSPM")

    def apply(n):
        return lambda: mne.minimum_norm.apply_inverse_raw(raw, prepared, 1 / 9, "dSPM", start=0, stop=n, prepared=True)

    return apply


def bench_kernels(channels=(64, 306), sources=(8000, 20000), chunks=(1, 4, 10, 32, 64), orients=(3, 1), reps=200, mne_peer=True, progress=print):
    from .stream.channels import ChannelMap
    from .stream.operator import StreamOperator

    rows = []
    try:
        import mne  # noqa: F401

        have_mne = mne_peer
    except ImportError:
        have_mne = False
    for n_chan in channels:
        for n_src in sources:
            for n_orient in orients:
                b = _random_bundle(n_chan, n_src, n_orient)
                cmap = ChannelMap(np.arange(n_chan), np.ones(n_chan), ("V",) * n_chan, (), False)
                op = StreamOperator(b, cmap, max_chunk=max(chunks), low_rank="off")
                op.warm_up()
                k32 = b.kernel.astype(np.float32)
                inv_norm = (1.0 / b.noise_norm).astype(np.float32)
                mne_apply = None
                if have_mne and n_chan == 64 and n_src == 8000:
                    mne_apply = _mne_prepared(n_chan, n_src, loose=0.2 if n_orient == 3 else 0.0, fixed=n_orient == 1)
                rng = np.random.default_rng(1)
                x = rng.normal(size=(max(chunks), n_chan)).astype(np.float32)
                for n in chunks:
                    def numpy_way(n=n):
                        y = x[:n] @ k32.T
                        if n_orient == 3:
                            y = np.sqrt((y.reshape(n, -1, 3) ** 2).sum(axis=2))
                        return y * inv_norm

                    fns = {
                        "rtsource": lambda n=n: op.process(x, n),
                        "numpy": numpy_way,
                        "gemv": lambda: k32 @ x[0],
                    }
                    if mne_apply is not None:
                        fns["mne"] = mne_apply(n)
                    big = n_chan * n_src * n_orient * n > 5e7
                    t = _timeit(fns, reps=max(20, reps // (5 if big else 1)))
                    import numba

                    all_threads = numba.get_num_threads()
                    if all_threads > 1:  # the loop's default leaves a core free: report one thread too
                        numba.set_num_threads(1)
                        t.update(_timeit({"rtsource_1t": lambda n=n: op.process(x, n)}, reps=max(20, reps // (5 if big else 1))))
                        numba.set_num_threads(all_threads)
                    row = {
                        "channels": n_chan, "sources": n_src, "orient": "free" if n_orient == 3 else "fixed", "chunk": n,
                        **{f"{k}_ms": round(v[0], 4) for k, v in t.items()},
                        **{f"{k}_p99_ms": round(v[1], 4) for k, v in t.items()},
                        "speedup_vs_numpy": round(t["numpy"][0] / t["rtsource"][0], 2),
                        "vs_gemv": round(t["rtsource"][0] / t["gemv"][0], 2),
                    }  # fmt: skip
                    if "mne" in t:
                        row["speedup_vs_mne"] = round(t["mne"][0] / t["rtsource"][0], 1)
                    if "rtsource_1t" in t:
                        row["speedup_1t_vs_numpy"] = round(t["numpy"][0] / t["rtsource_1t"][0], 2)
                    rows.append(row)
                    progress(_fmt_kernel_row(row))
    return rows


def _fmt_kernel_row(r) -> str:
    mne_part = f"  mne {r['mne_ms']:8.3f} ms (x{r['speedup_vs_mne']:.0f})" if "mne_ms" in r else ""
    one = f" [1 thread {r['rtsource_1t_ms']:.3f}, p99 {r['rtsource_1t_p99_ms']:.3f}]" if "rtsource_1t_ms" in r else ""
    return (
        f"{r['channels']:4d} ch {r['sources']:6d} src {r['orient']:5s} chunk {r['chunk']:3d}: "
        f"rtsource {r['rtsource_ms']:7.3f} ms (p99 {r['rtsource_p99_ms']:7.3f}){one}  numpy {r['numpy_ms']:7.3f} ms "
        f"(x{r['speedup_vs_numpy']:.1f})  gemv {r['gemv_ms']:6.3f} ms (kernel/gemv {r['vs_gemv']:.2f}){mne_part}"
    )


def bench_lowrank(n_chan=306, n_src=8000, rank=70, chunks=(1, 4, 10, 32), reps=200, progress=print):
    from .stream.channels import ChannelMap
    from .stream.operator import StreamOperator

    b = _random_bundle(n_chan, n_src, 3, rank=rank)
    cmap = ChannelMap(np.arange(n_chan), np.ones(n_chan), ("V",) * n_chan, (), False)
    full = StreamOperator(b, cmap, max_chunk=max(chunks), low_rank="off")
    low = StreamOperator(b, cmap, max_chunk=max(chunks), low_rank="auto")
    full.warm_up()
    low.warm_up()
    x = np.random.default_rng(2).normal(size=(max(chunks), n_chan)).astype(np.float32)
    rows = []
    for n in chunks:
        t = _timeit({"full": lambda n=n: full.process(x, n), "low_rank": lambda n=n: low.process(x, n)}, reps)
        row = {"channels": n_chan, "sources": n_src, "rank": low.rank, "chunk": n, "full_ms": round(t["full"][0], 4), "low_rank_ms": round(t["low_rank"][0], 4), "speedup": round(t["full"][0] / t["low_rank"][0], 2)}
        rows.append(row)
        progress(f"{n_chan} ch rank {low.rank} {n_src} src chunk {n:3d}: full {row['full_ms']:.3f} ms  low-rank {row['low_rank_ms']:.3f} ms  (x{row['speedup']:.1f})")
    return rows


# ---- end to end over LSL ----------------------------------------------------------------


def _produce(name: str, n_chan: int, sfreq: float, seconds: float, chunk: int, labels: str = "") -> None:
    """Hidden mode: push `seconds` of data in `chunk`-sample chunks at the real pace.

    Channels are labelled C000, C001, ... or, with ``labels="cap64"``, as the 64-channel cap.
    """
    import pylsl

    from .sensors.montage import CAP_64

    from .lsl_config import configure_liblsl

    configure_liblsl()
    names = list(CAP_64) if labels == "cap64" else [f"C{i:03d}" for i in range(n_chan)]
    info = pylsl.StreamInfo(name, "EEG", n_chan, sfreq, pylsl.cf_float32, name)
    chans = info.desc().append_child("channels")
    for i in range(n_chan):
        c = chans.append_child("channel")
        c.append_child_value("label", names[i])
        c.append_child_value("type", "EEG")
        c.append_child_value("unit", "microvolts")
    outlet = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=360)
    outlet.wait_for_consumers(120)
    data = (np.random.default_rng(0).normal(size=(chunk, n_chan)) * 10).astype(np.float32)
    t0 = pylsl.local_clock() + 0.5
    for k in range(0, int(seconds * sfreq), chunk):
        ts = t0 + (k + np.arange(chunk)) / sfreq
        wait = ts[-1] - pylsl.local_clock()
        if wait > 0:
            time.sleep(wait)
        outlet.push_chunk(data, ts.tolist())
    time.sleep(1.0)


def _relay(in_name: str, out_name: str, seconds: float, out_channels: int = 0) -> None:
    """Hidden mode: the bare relay, pull a chunk and push it on with its timestamps.

    With ``out_channels`` it pushes that many channels (the input's values, repeated) instead:
    a relay that moves as many bytes as rtsource's source stream, and computes nothing.
    """
    import pylsl

    from .lsl_config import configure_liblsl

    configure_liblsl()
    found = pylsl.resolve_byprop("name", in_name, minimum=1, timeout=60)
    inlet = pylsl.StreamInlet(found[0], max_buflen=360)
    info = inlet.info()
    n_in = info.channel_count()
    n_out = out_channels or n_in
    out = pylsl.StreamOutlet(pylsl.StreamInfo(out_name, "Relay", n_out, info.nominal_srate(), pylsl.cf_float32, out_name), chunk_size=0, max_buffered=360)
    buf = np.zeros((1024, n_in), np.float32)
    wide = np.zeros((1024, n_out), np.float32)
    inlet.open_stream(timeout=30)
    end = time.monotonic() + seconds + 60
    while time.monotonic() < end:
        _, ts = inlet.pull_chunk(timeout=0.5, max_samples=1024, dest_obj=buf, min_samples=1, as_numpy=True)
        n = len(ts)
        if n and n_out == n_in:
            out.push_chunk(buf[:n], ts.tolist())
        elif n:
            for j in range(0, n_out, n_in):  # the input repeated across the wide output
                w = min(n_in, n_out - j)
                wide[:n, j : j + w] = buf[:n, :w]
            out.push_chunk(wide[:n], ts.tolist())


def _consume(out_name: str, n_channels: int, seconds: float, skip: float = 2.0) -> np.ndarray:
    """End-to-end latencies (s) of every received chunk, after the first `skip` seconds."""
    import pylsl

    found = pylsl.resolve_byprop("name", out_name, minimum=1, timeout=120)
    if not found:
        raise RuntimeError(f"{out_name!r} never appeared")
    inlet = pylsl.StreamInlet(found[0], max_buflen=360)
    inlet.open_stream(timeout=30)
    offset = inlet.time_correction(timeout=5)
    buf = np.zeros((1024, n_channels), np.float32)
    lat = []
    t_first = None
    end = time.monotonic() + seconds + 60
    while time.monotonic() < end:
        _, ts = inlet.pull_chunk(timeout=2.0, max_samples=1024, dest_obj=buf, min_samples=1, as_numpy=True)
        if not len(ts):
            if t_first is not None:
                break
            continue
        now = pylsl.local_clock()
        t_first = t_first or now
        if now - t_first > skip:
            lat.append(now - (ts[-1] + offset))
    return np.array(lat)


def bench_latency(n_chan=64, n_src=8000, sfreq=500.0, chunk=10, seconds=30.0, progress=print) -> dict:
    from .bundle import save_bundle

    tag = f"bench-{os.getpid()}-{int(time.time())}"
    tmp = Path(tempfile.mkdtemp(prefix="rtsource-bench-"))
    bundle_path = save_bundle(_random_bundle(n_chan, n_src, 3, sfreq=sfreq), tmp / "bench_bundle.npz")
    results = {}
    for kind in ("relay", "wide_relay", "rtsource"):
        in_name, out_name = f"{tag}-{kind}-in", f"{tag}-{kind}-out"
        prod = subprocess.Popen([sys.executable, "-m", "rtsource.bench", "--produce", in_name, str(n_chan), str(sfreq), str(seconds), str(chunk)])
        if kind == "relay":
            mid = subprocess.Popen([sys.executable, "-m", "rtsource.bench", "--relay", in_name, out_name, str(seconds)])
            n_out = n_chan
        elif kind == "wide_relay":
            mid = subprocess.Popen([sys.executable, "-m", "rtsource.bench", "--relay", in_name, out_name, str(seconds), str(n_src)])
            n_out = n_src
        else:
            mid = subprocess.Popen(
                [sys.executable, "-m", "rtsource.cli", "run", str(bundle_path), "--stream-name", in_name, "--outlet-name", out_name, "--idle-timeout", "3"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            n_out = n_src
        try:
            lat = _consume(out_name, n_out, seconds)
        finally:
            for p in (mid, prod):
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
        results[kind] = {"p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 3), "p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 3), "chunks": int(len(lat))}
        progress(f"{kind:9s}: end-to-end latency p50 {results[kind]['p50_ms']:.3f} ms, p99 {results[kind]['p99_ms']:.3f} ms over {len(lat)} chunks")
    results["added_p50_ms"] = round(results["rtsource"]["p50_ms"] - results["relay"]["p50_ms"], 3)
    results["added_p99_ms"] = round(results["rtsource"]["p99_ms"] - results["relay"]["p99_ms"], 3)
    results["added_over_wide_p50_ms"] = round(results["rtsource"]["p50_ms"] - results["wide_relay"]["p50_ms"], 3)
    results["added_over_wide_p99_ms"] = round(results["rtsource"]["p99_ms"] - results["wide_relay"]["p99_ms"], 3)
    results["setup"] = {"channels": n_chan, "sources": n_src, "sfreq": sfreq, "chunk": chunk, "seconds": seconds}
    progress(f"rtsource adds {results['added_p50_ms']:.3f} ms at p50, {results['added_p99_ms']:.3f} ms at p99 over the bare relay")
    progress(
        f"rtsource adds {results['added_over_wide_p50_ms']:.3f} ms at p50, {results['added_over_wide_p99_ms']:.3f} ms at p99 over a relay "
        f"that publishes as many channels ({n_src}) and computes nothing"
    )
    return results


# ---- bad-channel hot swap ---------------------------------------------------------------


def _template_bundle(n_sources: int = 8192, sfreq: float = 500.0, method: str = "dSPM"):
    """A real operator on the template head: the 64-channel cap, ``n_sources`` cortical
    sources (every 5th of ico5 in each hemisphere), exact sphere forward, ad hoc noise."""
    import dataclasses

    from .anatomy.template import load_template, template_source_space
    from .build import build_bundle
    from .config import NoiseCovSettings, Settings
    from .forward.head_model import SphereHead, sphere_model_for_template
    from .forward.leadfield import make_leadfield
    from .sensors.montage import CAP_64, standard_montage

    s = dataclasses.replace(Settings(), noise_cov=NoiseCovSettings(source="ad_hoc"))
    s = dataclasses.replace(s, inverse=dataclasses.replace(s.inverse, method=method))
    dense = template_source_space("ico5")
    half = n_sources // 2
    pick = np.arange(0, dense.n_sources, 5)[:half].tolist() + np.arange(2, dense.n_sources, 5)[: n_sources - half].tolist()
    sources = dense.subset(pick, name=f"fsaverage-ico5-{n_sources}")
    head = SphereHead(sphere_model_for_template(load_template(), s.forward.relative_radii, s.forward.conductivities))
    slf = make_leadfield(sources, standard_montage("standard_1005").pick(CAP_64), head, use_cache=False)
    lf = slf.leadfield
    data_cov = None
    if method == "LCMV":  # a calibration recording: 1 uV sensor noise and two active 20 nAm dipoles
        from .inverse.covariance import estimate_data_covariance

        rng = np.random.default_rng(0)
        x = rng.normal(size=(5000, 64)) * 1e-6
        x += rng.normal(size=(5000, 2)) @ (lf.gain[:, [3 * 100 + 2, 3 * 5000 + 2]] * 20e-9).T
        data_cov = estimate_data_covariance(x, lf.ch_names)
    return build_bundle(s, sfreq=sfreq, leadfield=slf, data_cov=data_cov)


def _consume_quietly(out_name: str, seconds: float) -> None:
    """Hidden mode: a consumer that pulls everything, as a display or a recorder would."""
    import pylsl

    from .lsl_config import configure_liblsl

    configure_liblsl()
    found = pylsl.resolve_byprop("name", out_name, minimum=1, timeout=120)
    inlet = pylsl.StreamInlet(found[0], max_buflen=360)
    buf = np.zeros((1024, found[0].channel_count()), np.float32)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        inlet.pull_chunk(timeout=0.5, max_samples=1024, dest_obj=buf)


def bench_hotswap(n_swaps: int = 10, n_sources: int = 8192, sfreq: float = 500.0, chunk: int = 10, method: str = "dSPM", progress=print) -> dict:
    """Mark channels bad (and good again) in a running `rtsource run`; time each swap.

    Producer, `rtsource run` and a consumer of the sources run in their own processes, at
    the real pace. The swap time is the loop's own: from the moment it executes the
    command between two chunks to the chunk boundary at which the new operator is live
    (the ``operator_swap`` events carry it and the build time). The baseline, measured in
    this process before the pipeline starts, is the same work on an idle core: the rebuild
    (prepared lead field, one BLAS thread) and the stream operator made from it.
    """
    import pylsl
    from threadpoolctl import threadpool_limits

    from .bundle import save_bundle
    from .inverse.rebuild import prepare_bundle_forward, rebuild_without_channels
    from .stream.channels import ChannelMap
    from .stream.operator import StreamOperator
    from .stream.outputs import CONTROL_SUFFIX, CONTROL_TYPE, EVENTS_SUFFIX

    bundle = _template_bundle(n_sources, sfreq, method)
    names = list(bundle.ch_names)
    victims = [names[(7 * i + 5) % len(names)] for i in range(n_swaps)]
    idle = []
    with threadpool_limits(1, user_api="blas"):
        fwd = prepare_bundle_forward(bundle)
        for ch in [victims[0]] + victims:  # the first is a warm-up, as the loop does one
            t = time.perf_counter()
            nb = rebuild_without_channels(bundle, [ch], forward=fwd)
            n = nb.n_channels
            StreamOperator(nb, ChannelMap(np.arange(n), np.ones(n), ("V",) * n, (), False), max_chunk=64).warm_up()
            idle.append(time.perf_counter() - t)
    idle_ms = np.array(idle[1:]) * 1e3
    progress(f"idle rebuild + stream operator, {len(names)} ch x {bundle.n_sources} sources {method}: median {np.median(idle_ms):.1f} ms, max {idle_ms.max():.1f} ms")

    tag = f"hotswap-{os.getpid()}-{int(time.time())}"
    tmp = Path(tempfile.mkdtemp(prefix="rtsource-hotswap-"))
    path = save_bundle(bundle, tmp / "bundle.npz")
    in_name, out_name = tag + "-in", tag + "-out"
    seconds = 8.0 + 2.2 * n_swaps
    procs = [
        subprocess.Popen([sys.executable, "-m", "rtsource.bench", "--produce", in_name, "64", str(sfreq), str(seconds + 30), str(chunk), "cap64"]),
        subprocess.Popen(
            [sys.executable, "-m", "rtsource.cli", "run", str(path), "--stream-name", in_name, "--outlet-name", out_name, "--idle-timeout", "3"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen([sys.executable, "-m", "rtsource.bench", "--consume", out_name, str(seconds + 30)]),
    ]  # fmt: skip
    swaps: list[dict] = []
    try:
        found = pylsl.resolve_byprop("name", out_name + EVENTS_SUFFIX, minimum=1, timeout=120)
        if not found:
            raise RuntimeError(f"{out_name + EVENTS_SUFFIX!r} never appeared: did `rtsource run` start?")
        events = pylsl.StreamInlet(found[0], max_buflen=60)
        events.open_stream(timeout=30)
        info = pylsl.StreamInfo(out_name + CONTROL_SUFFIX, CONTROL_TYPE, 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, tag + "-control")
        control = pylsl.StreamOutlet(info)
        if not control.wait_for_consumers(60):
            raise RuntimeError("the loop never listened on its control stream")
        from .stream.control_auth import default_key_path, read_key, sign_command

        key = read_key(default_key_path(out_name))  # created by the loop, as for `rtsource mark-bad`

        def wait_event(kind: str, what: str) -> dict:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                sample, _ = events.pull_sample(timeout=0.5)
                if sample:
                    ev = json.loads(sample[0])
                    if ev.get("event") == kind:
                        return ev
            raise RuntimeError(f"no {kind} event within 30 s of {what}")

        # ready when the telemetry says so (an event pushed before we connected would be missed)
        from .stream.outputs import TELEMETRY_CHANNELS, TELEMETRY_SUFFIX

        found = pylsl.resolve_byprop("name", out_name + TELEMETRY_SUFFIX, minimum=1, timeout=60)
        telemetry = pylsl.StreamInlet(found[0])
        column = [label for label, _ in TELEMETRY_CHANNELS].index("hot_swap_ready")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sample, _ = telemetry.pull_sample(timeout=1.0)
            if sample and sample[column] == 1.0:
                break
        else:
            raise RuntimeError("the loop's telemetry never reported hot_swap_ready within 60 s")
        telemetry.close_stream()
        time.sleep(1.0)

        def command(cmd: str, ch: str) -> dict:
            control.push_sample([sign_command(key, out_name, cmd, ch)])
            return wait_event("operator_swap", f"{cmd} {ch}")

        for ch in victims:
            for cmd in ("mark_bad", "mark_good"):
                ev = command(cmd, ch)
                swaps.append({"command": cmd, "channel": ch, "swap_ms": float(ev["swap_ms"]), "build_ms": float(ev.get("build_ms", float("nan")))})
                time.sleep(1.0)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
    live = np.array([w["swap_ms"] for w in swaps])
    build = np.array([w["build_ms"] for w in swaps])
    res = {
        "setup": {"channels": len(names), "sources": bundle.n_sources, "method": method, "sfreq": sfreq, "chunk": chunk, "swaps": len(swaps)},
        "idle_rebuild_ms_median": round(float(np.median(idle_ms)), 1),
        "swap_ms_median": round(float(np.median(live)), 1),
        "swap_ms_p90": round(float(np.percentile(live, 90)), 1),
        "swap_ms_max": round(float(live.max()), 1),
        "build_ms_median": round(float(np.median(build)), 1),
        "within_200_ms": int(np.sum(live <= 200.0)),
        "swaps": swaps,
    }
    progress(
        f"hot swap under load ({len(swaps)} swaps, mark bad / good): command -> live median {res['swap_ms_median']:.1f} ms, "
        f"p90 {res['swap_ms_p90']:.1f} ms, max {res['swap_ms_max']:.1f} ms ({res['within_200_ms']}/{len(swaps)} within 200 ms); "
        f"build median {res['build_ms_median']:.1f} ms vs {res['idle_rebuild_ms_median']:.1f} ms on an idle core "
        f"(x{res['build_ms_median'] / res['idle_rebuild_ms_median']:.1f})"
    )
    return res


# ---- start-up ---------------------------------------------------------------------------


def bench_startup(n_chan=64, n_src=8000, sfreq=500.0, progress=print) -> dict:
    """Seconds from launching `rtsource run` to its first published sample, cold and warm."""
    import pylsl

    from .bundle import save_bundle

    tmp = Path(tempfile.mkdtemp(prefix="rtsource-startup-"))
    bundle_path = save_bundle(_random_bundle(n_chan, n_src, 3, sfreq=sfreq), tmp / "bundle.npz")
    cache = tmp / "numba-cache"
    tag = f"startup-{os.getpid()}-{int(time.time())}"
    in_name = tag + "-in"
    prod = subprocess.Popen([sys.executable, "-m", "rtsource.bench", "--produce", in_name, str(n_chan), str(sfreq), "600", "10"])
    results = {}
    try:
        for kind in ("cold", "warm"):
            out_name = f"{tag}-{kind}"
            env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
            t0 = pylsl.local_clock()
            run = subprocess.Popen(
                [sys.executable, "-m", "rtsource.cli", "run", str(bundle_path), "--stream-name", in_name, "--outlet-name", out_name],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            )  # fmt: skip
            try:
                found = pylsl.resolve_byprop("name", out_name, minimum=1, timeout=120)
                inlet = pylsl.StreamInlet(found[0])
                inlet.open_stream(timeout=30)
                sample, _ = inlet.pull_sample(timeout=60)
                t1 = pylsl.local_clock()
            finally:
                run.terminate()
                run.wait(timeout=15)
            if sample is None:
                raise RuntimeError("no sample from rtsource run")
            results[f"{kind}_s"] = round(t1 - t0, 3)
            progress(f"{kind} start to first published sample: {t1 - t0:.2f} s")
    finally:
        prod.terminate()
        prod.wait(timeout=15)
    return results


# ---- entry point ------------------------------------------------------------------------


# ---- connectivity -------------------------------------------------------------------------


def bench_connectivity(n_roi=68, sfreq=500.0, window_s=1.0, step_s=0.1, steps=300, measures=None, progress=print) -> dict:
    """Per-step time of the connectivity stage (alpha + beta, all pairs), one chunk = one step.

    Baseline in the same run: NumPy recomputing the spectral measures of one window from
    scratch (rfft of its segments, cross-spectra, band means), as an offline tool would.
    """
    from .stream.connectivity import MEASURES, ConnectivitySpec, ConnectivityStage

    spec = ConnectivitySpec(measures=tuple(measures or MEASURES), window_s=window_s, step_s=step_s)
    stage = ConnectivityStage(spec, [f"roi{i}" for i in range(n_roi)], sfreq, max_chunk=int(round(step_s * sfreq)))
    rng = np.random.default_rng(0)
    s = stage.step
    n_fill = stage.window // s
    x = rng.normal(size=((n_fill + steps + 1) * s, n_roi)).astype(np.float32)
    ts = np.arange(len(x)) / sfreq
    times = []
    for k in range(n_fill + steps):
        t = time.perf_counter()
        vals, _ = stage.process(x[k * s : (k + 1) * s], ts[k * s : (k + 1) * s], s)
        if k >= n_fill:
            times.append(time.perf_counter() - t)
    bins = spec.bins(sfreq)
    iu = np.triu_indices(n_roi, 1)
    seg_ends = np.arange(stage.window - stage.seg_len + stage.seg_len, stage.window + 1, stage.hop)
    win = x[: stage.window].astype(np.float64)
    taper = np.hanning(stage.seg_len)

    def numpy_window():
        segs = np.stack([win[e - stage.seg_len : e] for e in seg_ends])
        segs = segs - segs.mean(axis=1, keepdims=True)
        spec_ = np.fft.rfft(segs * taper[None, :, None], axis=1)
        for kb in bins:
            z = spec_[:, kb]
            csd = z[:, :, iu[0]] * np.conj(z[:, :, iu[1]])
            p = (np.abs(z) ** 2).mean(0)
            np.abs(csd.mean(0)) / np.sqrt(p[:, iu[0]] * p[:, iu[1]])

    base = _timeit({"numpy": numpy_window}, reps=max(10, steps // 10), warmup=2, rounds=1)["numpy"]
    res = {
        "n_roi": n_roi, "n_pairs": stage.n_pairs, "bands": [b.name for b in spec.bands], "measures": list(spec.measures),
        "n_out": stage.n_out, "window_s": window_s, "step_s": step_s, "sfreq": sfreq, "steps": steps,
        "median_ms": float(np.median(times)) * 1e3, "p99_ms": float(np.percentile(times, 99)) * 1e3,
        "max_ms": float(np.max(times)) * 1e3, "budget_ms": step_s * 1e3,
        "numpy_coherence_only_median_ms": base[0],
    }  # fmt: skip
    progress(
        f"connectivity {n_roi} ROIs ({stage.n_pairs} pairs) x {len(spec.bands)} bands x {len(spec.measures)} measures, "
        f"{window_s:g} s windows every {step_s * 1e3:g} ms at {sfreq:g} Hz: median {res['median_ms']:.2f} ms, "
        f"p99 {res['p99_ms']:.2f} ms, max {res['max_ms']:.2f} ms per step (budget {res['budget_ms']:g} ms); "
        f"NumPy window recompute (coherence only) {base[0]:.2f} ms"
    )
    return res


def run_bench(what: str, json_path: str | None = None, quick: bool = False, method: str = "dSPM", progress=print) -> dict:
    results: dict = {"machine": {"cpus": os.cpu_count()}, "numba_threads": _numba_threads()}
    if what in ("kernels", "all"):
        if quick:
            results["kernels"] = bench_kernels(channels=(64,), sources=(8000,), chunks=(1, 10), orients=(3,), reps=50, progress=progress)
        else:
            results["kernels"] = bench_kernels(progress=progress)
    if what in ("lowrank", "all"):
        results["lowrank"] = bench_lowrank(reps=50 if quick else 200, progress=progress)
    if what in ("latency", "all"):
        results["latency"] = bench_latency(seconds=10.0 if quick else 30.0, progress=progress)
    if what in ("startup", "all"):
        results["startup"] = bench_startup(progress=progress)
    if what in ("hotswap", "all"):
        results["hotswap"] = bench_hotswap(n_swaps=4 if quick else 10, method=method, progress=progress)
    if what in ("connectivity", "all"):
        results["connectivity"] = bench_connectivity(steps=100 if quick else 600, progress=progress)
    if what in ("artifacts", "all"):
        from .artifacts.bench import bench_artifacts

        results["artifacts"] = bench_artifacts(seconds=10.0 if quick else 30.0, progress=progress)
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=1))
    return results


def _numba_threads() -> int:
    import numba

    return int(numba.get_num_threads())


if __name__ == "__main__":  # hidden helper processes of the latency and start-up benchmarks
    if sys.argv[1] == "--produce":
        _produce(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), *sys.argv[7:8])
    elif sys.argv[1] == "--consume":
        _consume_quietly(sys.argv[2], float(sys.argv[3]))
    elif sys.argv[1] == "--relay":
        _relay(sys.argv[2], sys.argv[3], float(sys.argv[4]), *[int(a) for a in sys.argv[5:6]])
