"""``rtsource bench lowrank``: a 306-channel rank-70 operator, the low-rank path against full rank."""

from __future__ import annotations

import numpy as np

from .common import random_bundle, time_blocks


def bench_lowrank(n_chan=306, n_src=8000, rank=70, chunks=(1, 4, 10, 32), reps=200, progress=print):
    from ..stream.channels import ChannelMap
    from ..stream.operator import StreamOperator

    b = random_bundle(n_chan, n_src, 3, rank=rank)
    cmap = ChannelMap(np.arange(n_chan), np.ones(n_chan), ("V",) * n_chan, (), False)
    full = StreamOperator(b, cmap, max_chunk=max(chunks), low_rank="off")
    low = StreamOperator(b, cmap, max_chunk=max(chunks), low_rank="auto")
    full.warm_up()
    low.warm_up()
    x = np.random.default_rng(2).normal(size=(max(chunks), n_chan)).astype(np.float32)
    rows = []
    for n in chunks:
        t = time_blocks({"full": lambda n=n: full.process(x, n), "low_rank": lambda n=n: low.process(x, n)}, reps)
        row = {"channels": n_chan, "sources": n_src, "rank": low.rank, "chunk": n, "full_ms": round(t["full"][0], 4), "low_rank_ms": round(t["low_rank"][0], 4), "speedup": round(t["full"][0] / t["low_rank"][0], 2)}
        rows.append(row)
        progress(f"{n_chan} ch rank {low.rank} {n_src} src chunk {n:3d}: full {row['full_ms']:.3f} ms  low-rank {row['low_rank_ms']:.3f} ms  (x{row['speedup']:.1f})")
    return rows


def run(*, quick: bool, method: str, progress) -> list[dict]:
    """``rtsource bench lowrank``."""
    return bench_lowrank(reps=50 if quick else 200, progress=progress)
