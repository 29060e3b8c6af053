"""``rtsource bench decimation``: operator cost per second of data with and without decimation.

The same operator prepared twice for a high-rate stream, once at the input rate and once
decimating to ``output_hz`` (:mod:`rtsource.stream.decimation`); each applied to 10 ms
chunks at the loop's thread count. The cost per second of data is the per-chunk time times
chunks per second; the ratio is what decimation saves (it includes the anti-aliasing filter,
which runs on every input sample).

Beside it, the bound: the decimated path still reads the whole operator once per chunk
(its output samples are due when the chunk arrives) and filters every input sample, so it
cannot cost less than one read of the operator (the faster of a plain GEMV pass and the
operator on one sample) plus the anti-aliasing filter per chunk, all timed in the same run;
``bound`` = full cost / that floor is the largest saving any decimating loop with the same
chunks could show.
"""

from __future__ import annotations

import numpy as np

from .common import random_bundle, time_blocks


def bench_decimation(n_chan=306, n_src=8000, n_orient=3, input_hz=5000.0, output_hz=500.0, reps=100, progress=print) -> dict:
    import numba

    from ..stream._kernels import sos_filter
    from ..stream.channels import ChannelMap
    from ..stream.dispatch import kernel_threads, limit_blas_threads
    from ..stream.operator import StreamOperator

    threads = kernel_threads()
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    limiter = limit_blas_threads(threads)
    try:
        b = random_bundle(n_chan, n_src, n_orient, sfreq=input_hz)
        cmap = ChannelMap(np.arange(n_chan), np.ones(n_chan), ("V",) * n_chan, (), False)
        chunk = int(round(input_hz * 0.01))
        full = StreamOperator(b, cmap, chunk, low_rank="off", threads=threads)
        dec = StreamOperator(b, cmap, chunk, low_rank="off", threads=threads, output_rate_hz=output_hz)
        full.warm_up()
        dec.warm_up()
        x = np.random.default_rng(0).normal(size=(chunk, n_chan)).astype(np.float32)
        rows = np.ascontiguousarray(b.kernel, dtype=np.float32)
        scratch, state, flags = x.astype(np.float32), dec._state.copy(), np.zeros(chunk, np.uint8)

        def filter_only():
            scratch[:] = x
            sos_filter(scratch, chunk, dec._sos, state, flags)

        paths = {
            "full": lambda: full.process(x, chunk),
            "decimated": lambda: dec.process(x, chunk),
            "gemv": lambda: rows @ x[0],  # one read of the operator, two ways
            "one": lambda: full.process(x, 1),
            "filter": filter_only,
        }
        t = time_blocks(paths, reps=reps)
    finally:
        limiter.restore_original_limits()
        numba.set_num_threads(before)
    per_s = input_hz / chunk
    d = dec.decimation
    res = {
        "channels": n_chan, "sources": n_src, "orient": "free" if n_orient == 3 else "fixed", "input_hz": input_hz, "output_hz": output_hz,
        "chunk": chunk, "full_s_per_s": round(t["full"][0] * 1e-3 * per_s, 4), "decimated_s_per_s": round(t["decimated"][0] * 1e-3 * per_s, 4),
        "full_p99_ms": round(t["full"][1], 3), "decimated_p99_ms": round(t["decimated"][1], 3),
        "factor": d.factor, "filter_order": d.order, "passband_hz": d.passband_hz, "attenuation_db": round(d.attenuation_db, 1),
        "group_delay_ms": round(d.group_delay_s * 1e3, 3),
    }  # fmt: skip
    res["cost_ratio"] = round(res["full_s_per_s"] / res["decimated_s_per_s"], 2)
    read = min(t["gemv"][0], t["one"][0])
    res["read_ms"], res["filter_ms"] = round(read, 4), round(t["filter"][0], 4)
    res["bound"] = round(t["full"][0] / (read + t["filter"][0]), 2)
    progress(
        f"{n_chan} ch x {n_src} src {res['orient']}, {input_hz:g} Hz in 10 ms chunks: operator {res['full_s_per_s']:.3f} s per s of data, "
        f"decimated to {output_hz:g} Hz {res['decimated_s_per_s']:.3f} s/s (x{res['cost_ratio']:.1f} lower); anti-aliasing: order {d.order}, "
        f"-3 dB at {d.passband_hz:g} Hz, {d.attenuation_db:.1f} dB at {d.stopband_hz:g} Hz and above, group delay {d.group_delay_s * 1e3:.2f} ms; "
        f"bound x{res['bound']:.1f} (per chunk: full {t['full'][0]:.3f} ms / (one read of the operator {res['read_ms']:.3f} ms "
        f"+ the filter {res['filter_ms']:.3f} ms))"
    )
    return res


def run(*, quick: bool, method: str, progress) -> dict:
    """``rtsource bench decimation`` (``--quick``: 64 channels, fewer repetitions)."""
    if quick:
        return bench_decimation(n_chan=64, reps=30, progress=progress)
    return bench_decimation(progress=progress)
