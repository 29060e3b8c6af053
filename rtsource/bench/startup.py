"""``rtsource bench startup``: launch of ``rtsource run`` to its first published sample, cold (empty numba cache) and warm."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from .common import random_bundle
from .processes import start_helper, start_run, stop


def bench_startup(n_chan=64, n_src=8000, sfreq=500.0, progress=print) -> dict:
    """Seconds from launching `rtsource run` to its first published sample, cold and warm."""
    import pylsl

    from ..bundle import save_bundle

    tmp = Path(tempfile.mkdtemp(prefix="rtsource-startup-"))
    bundle_path = save_bundle(random_bundle(n_chan, n_src, 3, sfreq=sfreq), tmp / "bundle.npz")
    cache = tmp / "numba-cache"
    tag = f"startup-{os.getpid()}-{int(time.time())}"
    in_name = tag + "-in"
    prod = start_helper("--produce", in_name, n_chan, sfreq, 600, 10)
    results = {}
    try:
        for kind in ("cold", "warm"):
            out_name = f"{tag}-{kind}"
            env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
            t0 = pylsl.local_clock()
            run = start_run(bundle_path, in_name, out_name, env=env)
            try:
                found = pylsl.resolve_byprop("name", out_name, minimum=1, timeout=120)
                inlet = pylsl.StreamInlet(found[0])
                inlet.open_stream(timeout=30)
                sample, _ = inlet.pull_sample(timeout=60)
                t1 = pylsl.local_clock()
            finally:
                stop(run)
            if sample is None:
                raise RuntimeError("no sample from rtsource run")
            results[f"{kind}_s"] = round(t1 - t0, 3)
            progress(f"{kind} start to first published sample: {t1 - t0:.2f} s")
    finally:
        stop(prod)
    return results


def run(*, quick: bool, method: str, progress) -> dict:
    """``rtsource bench startup``."""
    return bench_startup(progress=progress)
