"""What every benchmark shares: a random operator bundle of a given size, and block timing."""

from __future__ import annotations

import time

import numpy as np


def random_bundle(n_chan: int, n_src: int, n_orient: int, sfreq: float = 500.0, seed: int = 0, rank: int | None = None):
    """An :class:`~rtsource.bundle.OperatorBundle` with random kernel and sources (``rank``: a low-rank kernel)."""
    from ..anatomy.source_space import SourceSpace
    from ..bundle import OperatorBundle

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


def time_blocks(fns: dict, reps: int, warmup: int = 5, rounds: int = 3) -> dict:
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


def numba_threads() -> int:
    """How many threads numba's parallel kernels use."""
    import numba

    return int(numba.get_num_threads())


def time_interleaved(fns: dict, rounds: int = 15, block_s: float = 0.02, min_calls: int = 3, warmup: int = 2) -> dict:
    """Per-round block medians of every method, blocks interleaved round by round.

    Each round runs every method once as a block (``warmup`` untimed calls, then at least
    ``min_calls`` timed calls and about ``block_s`` seconds of them), in an order rotated
    from round to round; blocks, not single calls, for the reason :func:`time_blocks` gives.
    A ratio of two methods is then taken round by round (:func:`paired_ratio`), so a burst
    of load on the shared machine, which lasts longer than a round's few blocks, scales both
    alike and cancels out of it.

    Returns
    -------
    dict
        {name: ndarray (rounds,) of block medians in ms}, and under ``"_all"``
        {name: ndarray of every single call's time in ms} (for the p99).
    """
    names = list(fns)
    first = {}
    for k in names:  # calls per block from one probe call each
        fns[k]()
        t = time.perf_counter()
        fns[k]()
        first[k] = time.perf_counter() - t
    calls = {k: max(min_calls, int(block_s / max(first[k], 1e-7))) for k in names}
    med = {k: np.empty(rounds) for k in names}
    every = {k: [] for k in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for k in order:
            f = fns[k]
            for _ in range(warmup):
                f()
            ts = np.empty(calls[k])
            for i in range(calls[k]):
                t = time.perf_counter()
                f()
                ts[i] = time.perf_counter() - t
            med[k][r] = np.median(ts) * 1e3
            every[k].append(ts * 1e3)
    out: dict = dict(med)
    out["_all"] = {k: np.concatenate(v) for k, v in every.items()}
    return out


def paired_ratio(num: np.ndarray, den: np.ndarray) -> tuple[float, float, float]:
    """(median, 10th, 90th percentile) of the round-by-round ratio ``num / den``."""
    r = np.asarray(num) / np.asarray(den)
    return float(np.median(r)), float(np.percentile(r, 10)), float(np.percentile(r, 90))
