"""``rtsource bench hotswap``: bad-channel hot swap in a running ``rtsource run``.

Template head, 64 channels x 8192 sources, dSPM; producer and consumer in their own
processes. Measured: command -> new operator live, against the same rebuild on an idle
process.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .processes import start_helper, start_run, stop


def _template_bundle(n_sources: int = 8192, sfreq: float = 500.0, method: str = "dSPM"):
    """A real operator on the template head: the 64-channel cap, ``n_sources`` cortical
    sources (every 5th of ico5 in each hemisphere), exact sphere forward, ad hoc noise."""
    import dataclasses

    from ..anatomy.template import load_template, template_source_space
    from ..build import build_bundle
    from ..config import NoiseCovSettings, Settings
    from ..forward.head_model import SphereHead, sphere_model_for_template
    from ..forward.leadfield import make_leadfield
    from ..sensors.montage import CAP_64, standard_montage

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
        from ..inverse.covariance import estimate_data_covariance

        rng = np.random.default_rng(0)
        x = rng.normal(size=(5000, 64)) * 1e-6
        x += rng.normal(size=(5000, 2)) @ (lf.gain[:, [3 * 100 + 2, 3 * 5000 + 2]] * 20e-9).T
        data_cov = estimate_data_covariance(x, lf.ch_names)
    return build_bundle(s, sfreq=sfreq, leadfield=slf, data_cov=data_cov)


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

    from ..bundle import save_bundle
    from ..inverse.rebuild import prepare_bundle_forward, rebuild_without_channels
    from ..stream.channels import ChannelMap
    from ..stream.operator import StreamOperator
    from ..stream.outputs import CONTROL_SUFFIX, CONTROL_TYPE, EVENTS_SUFFIX

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
        start_helper("--produce", in_name, 64, sfreq, seconds + 30, chunk, "cap64"),
        start_run(path, in_name, out_name, "--idle-timeout", "3"),
        start_helper("--consume", out_name, seconds + 30),
    ]
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
        from ..stream.control_auth import default_key_path, read_key, sign_command

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
        from ..stream.outputs import TELEMETRY_CHANNELS, TELEMETRY_SUFFIX

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
        stop(*procs)
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


def run(*, quick: bool, method: str, progress) -> dict:
    """``rtsource bench hotswap`` (``--quick``: 4 swaps instead of 10)."""
    return bench_hotswap(n_swaps=4 if quick else 10, method=method, progress=progress)
