"""``rtsource bench kernels``: per-chunk time of rtsource's kernels against baselines in the same run.

Columns: ``rtsource`` is the loop's dispatched path (:mod:`rtsource.stream.dispatch`),
``kernel`` the own kernel alone, ``blas_pool`` the BLAS path alone (sgemm into a buffer and
the fused pooling pass), ``numpy`` plain NumPy matmul + pooling, ``gemv`` one plain GEMV
pass over the operator (the memory floor), and MNE-Python's prepared ``apply_inverse_raw``
(when installed). Everything runs with the loop's thread counts (numba and OpenBLAS alike:
all cores but one). ``vs_best`` = best of (kernel, blas_pool, numpy) / rtsource: >= 1.0
means the dispatch picked the fastest path.

On a shared machine the time of one path moves by tens of percent from one moment to the
next, so the paths are timed interleaved: rounds of one block per path, in rotated order
(:func:`~rtsource.bench.common.time_interleaved`), and every ratio is the median of the
round-by-round ratios. ``rtsource_twin`` is the dispatched operator timed again under
another name: the 10-90 % range of its ratio to ``rtsource`` (``noise_p10``/``noise_p90``)
is what the same code measures against itself in that cell, the noise floor a ratio must
leave to mean anything. ``same_path`` marks cells where the fastest path is the one the
dispatch took (the ratio then differs from 1 only by noise and memory placement).
"""

from __future__ import annotations

import numpy as np

from .common import paired_ratio, random_bundle, time_blocks, time_interleaved


def mne_inverse(n_chan: int, n_src: int, loose: float, fixed: bool, names=None):
    """MNE-Python's prepared dSPM inverse for ``n_chan`` cap electrodes and ``n_src`` random
    volume sources in a sphere: ``(info, prepared)`` (``names``: channel labels, default the cap's)."""
    import warnings

    import mne

    from ..sensors.montage import CAP_64, standard_montage

    mne.set_log_level("ERROR")
    cap = list(CAP_64[:n_chan])
    names = list(names) if names is not None else cap
    info = mne.create_info(names, 500.0, "eeg")
    pos = standard_montage("standard_1005").pick(cap).electrodes.positions_m
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
    return raw.info, prepared


def _mne_prepared(n_chan: int, n_src: int, loose: float, fixed: bool):
    """MNE-Python's prepared inverse of the same size, and a function applying it to n samples."""
    import mne

    info, prepared = mne_inverse(n_chan, n_src, loose, fixed)
    raw = mne.io.RawArray(np.random.default_rng(0).normal(size=(n_chan, 64)) * 1e-5, info)

    def apply(n):
        return lambda: mne.minimum_norm.apply_inverse_raw(raw, prepared, 1 / 9, "dSPM", start=0, stop=n, prepared=True)

    return apply


def bench_kernels(channels=(64, 306), sources=(8000, 20000), chunks=(1, 2, 4, 10, 16, 32, 64), orients=(3, 1), rounds=15, mne_peer=True, progress=print, block_s=0.02):
    import numba

    from ..stream.channels import ChannelMap
    from ..stream.dispatch import kernel_threads, limit_blas_threads
    from ..stream.operator import StreamOperator

    rows = []
    try:
        import mne  # noqa: F401

        have_mne = mne_peer
    except ImportError:
        have_mne = False
    threads = kernel_threads()
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    limiter = limit_blas_threads(threads)
    try:
        for n_chan in channels:
            for n_src in sources:
                for n_orient in orients:
                    b = random_bundle(n_chan, n_src, n_orient)
                    cmap = ChannelMap(np.arange(n_chan), np.ones(n_chan), ("V",) * n_chan, (), False)
                    ops = {}
                    for mode in ("auto", "kernel", "blas"):
                        ops[mode] = StreamOperator(b, cmap, max_chunk=max(chunks), low_rank="off", dispatch=mode, threads=threads)
                        ops[mode].warm_up()
                    k32 = b.kernel.astype(np.float32)
                    inv_norm = (1.0 / b.noise_norm).astype(np.float32)
                    mne_apply = None
                    if have_mne and n_chan == 64 and n_src == 8000:
                        mne_apply = _mne_prepared(n_chan, n_src, loose=0.2 if n_orient == 3 else 0.0, fixed=n_orient == 1)
                    rng = np.random.default_rng(1)
                    x = rng.normal(size=(max(chunks), n_chan)).astype(np.float32)
                    for n in chunks:
                        rows.append(_cell(ops, k32, inv_norm, x, n, n_orient, mne_apply, rounds, n_chan, n_src, block_s))
                        progress(_fmt_kernel_row(rows[-1]))
                    del ops
    finally:
        limiter.restore_original_limits()
        numba.set_num_threads(before)
    return rows


def _cell(ops, k32, inv_norm, x, n, n_orient, mne_apply, rounds, n_chan, n_src, block_s=0.02) -> dict:
    """One cell: every path on chunks of n samples, interleaved round by round.

    ``rtsource_twin`` calls the very same dispatched operator as ``rtsource`` under a second
    name: the spread of their round-by-round ratio is the noise floor of the cell, the size
    a ratio must exceed to mean anything. ``vs_best`` is the median over the rounds of
    (the fastest of kernel / blas_pool / numpy) / rtsource, each ratio taken within a round.
    """

    def numpy_way():
        y = x[:n] @ k32.T
        if n_orient == 3:
            y = np.sqrt((y.reshape(n, -1, 3) ** 2).sum(axis=2))
        return y * inv_norm

    auto = ops["auto"]
    fns = {
        "rtsource": lambda: auto.process(x, n),
        "rtsource_twin": lambda: auto.process(x, n),
        "kernel": lambda: ops["kernel"].process(x, n),
        "blas_pool": lambda: ops["blas"].process(x, n),
        "numpy": numpy_way,
        "gemv": lambda: k32 @ x[0],
    }
    if mne_apply is not None:
        fns["mne"] = mne_apply(n)
    t = time_interleaved(fns, rounds=rounds, block_s=block_s)
    every = t.pop("_all")
    med = {k: float(np.median(v)) for k, v in t.items()}
    best = min(("kernel", "blas_pool", "numpy"), key=med.get)
    path = "blas" if auto.dispatch.blas[_chunk_class(n)] else "kernel"
    vs_best, lo, hi = paired_ratio(t[best], t["rtsource"])
    _, noise_lo, noise_hi = paired_ratio(t["rtsource_twin"], t["rtsource"])
    row = {
        "channels": n_chan, "sources": n_src, "orient": "free" if n_orient == 3 else "fixed", "chunk": n,
        "path": path, "best": best, "same_path": best == {"kernel": "kernel", "blas": "blas_pool"}[path],
        **{f"{k}_ms": round(v, 4) for k, v in med.items()},
        **{f"{k}_p99_ms": round(float(np.percentile(v, 99)), 4) for k, v in every.items()},
        "speedup_vs_numpy": round(paired_ratio(t["numpy"], t["rtsource"])[0], 2),
        "vs_best": round(vs_best, 3), "vs_best_p10": round(lo, 3), "vs_best_p90": round(hi, 3),
        "noise_p10": round(noise_lo, 3), "noise_p90": round(noise_hi, 3),
        "vs_gemv": round(paired_ratio(t["rtsource"], t["gemv"])[0], 2), "rounds": rounds,
    }  # fmt: skip
    row["verdict"] = verdict(row)
    if "mne" in t:
        row["speedup_vs_mne"] = round(paired_ratio(t["mne"], t["rtsource"])[0], 1)
    return row


def _chunk_class(n: int) -> int:
    from ..stream.dispatch import chunk_class

    return chunk_class(n)


def _fmt_kernel_row(r) -> str:
    mne_part = f"  mne {r['mne_ms']:8.3f} ms (x{r['speedup_vs_mne']:.0f})" if "mne_ms" in r else ""
    same = "=" if r["same_path"] else " "
    return (
        f"{r['channels']:4d} ch {r['sources']:6d} src {r['orient']:5s} chunk {r['chunk']:3d}: "
        f"rtsource[{r['path']:6s}] {r['rtsource_ms']:7.3f} ms (p99 {r['rtsource_p99_ms']:7.3f})  kernel {r['kernel_ms']:7.3f}  "
        f"blas+pool {r['blas_pool_ms']:7.3f}  numpy {r['numpy_ms']:7.3f}  best/rtsource {r['vs_best']:.3f}{same} "
        f"[{r['vs_best_p10']:.2f}-{r['vs_best_p90']:.2f}; noise {r['noise_p10']:.2f}-{r['noise_p90']:.2f}]  "
        f"gemv {r['gemv_ms']:6.3f} ms (rtsource/gemv {r['vs_gemv']:.2f}){mne_part}"
    )


def verdict(r: dict) -> str:
    """``"same"``: the dispatch took the fastest path (the ratio is that path against itself);
    ``"faster"``: best/rtsource >= 1.0; ``"noise"``: another path looked faster, but not in
    9 of 10 rounds; ``"miss"``: another path was faster beyond the noise (a wrong choice)."""
    if r["same_path"]:
        return "same"
    if r["vs_best"] >= 1.0:
        return "faster"
    return "noise" if r["vs_best_p90"] >= 1.0 else "miss"


def summarize(rows: list[dict]) -> str:
    """Lines over the cells: verdict counts, the cells missed, the ratios to GEMV at 1-4 samples."""
    counts = {v: sum(verdict(r) == v for r in rows) for v in ("same", "faster", "noise", "miss")}
    ratios = np.array([r["vs_best"] for r in rows])
    noise = np.array([r["noise_p90"] - r["noise_p10"] for r in rows])
    small = [r for r in rows if r["chunk"] <= 4]
    over = [r for r in small if r["vs_gemv"] > 1.5]
    return (
        f"{len(rows)} cells: dispatch took the fastest path in {counts['same']}, its path was faster in {counts['faster']}, "
        f"another path looked faster within the noise in {counts['noise']}, beyond it in {counts['miss']}; "
        f"best/rtsource median {np.median(ratios):.3f}, >= 1.0 in {int((ratios >= 1.0).sum())}; noise floor (10-90 % of the "
        f"same code against itself) median width {np.median(noise):.3f}"
        + "".join(f"\n  miss: {_fmt_kernel_row(r)}" for r in rows if verdict(r) == "miss")
        + f"\nrtsource/gemv at chunks 1-4: max {max((r['vs_gemv'] for r in small), default=float('nan')):.2f}"
        + "".join(f"\n  over 1.5: {_fmt_kernel_row(r)}" for r in over)
    )


def bench_int16(n_chan=306, n_src=20000, n_orient=3, chunks=(1, 4, 10), reps=200, progress=print) -> list[dict]:
    """int16 operator storage against float32 (both the own kernel), loop thread counts."""
    import numba

    from ..stream.channels import ChannelMap
    from ..stream.dispatch import kernel_threads
    from ..stream.operator import StreamOperator

    b = random_bundle(n_chan, n_src, n_orient)
    cmap = ChannelMap(np.arange(n_chan), np.ones(n_chan), ("V",) * n_chan, (), False)
    threads = kernel_threads()
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    rows = []
    try:
        f32 = StreamOperator(b, cmap, max(chunks), low_rank="off", dispatch="kernel", threads=threads)
        i16 = StreamOperator(b, cmap, max(chunks), low_rank="off", operator_dtype="int16", threads=threads)
        f32.warm_up()
        i16.warm_up()
        x = np.random.default_rng(1).normal(size=(max(chunks), n_chan)).astype(np.float32)
        for n in chunks:
            t = time_blocks({"float32": lambda n=n: f32.process(x, n), "int16": lambda n=n: i16.process(x, n)}, reps=reps)
            a, c = f32.process(x, n).copy(), i16.process(x, n).copy()
            row = {
                "channels": n_chan, "sources": n_src, "orient": "free" if n_orient == 3 else "fixed", "chunk": n,
                "float32_ms": round(t["float32"][0], 4), "int16_ms": round(t["int16"][0], 4),
                "float32_p99_ms": round(t["float32"][1], 4), "int16_p99_ms": round(t["int16"][1], 4),
                "speedup": round(t["float32"][0] / t["int16"][0], 2),
                "relative_error": float(np.linalg.norm(c - a) / np.linalg.norm(a)), "error_measured_at_prepare": i16.storage_error,
            }  # fmt: skip
            rows.append(row)
            progress(
                f"int16 {n_chan} ch {n_src} src {row['orient']} chunk {n:3d}: float32 {row['float32_ms']:.3f} ms, int16 {row['int16_ms']:.3f} ms "
                f"(x{row['speedup']:.2f}); relative error {row['relative_error']:.2e}"
            )
    finally:
        numba.set_num_threads(before)
    return rows


def run(*, quick: bool, method: str, progress) -> list[dict]:
    """``rtsource bench kernels`` (``--quick``: one size, two chunk lengths)."""
    if quick:
        rows = bench_kernels(channels=(64,), sources=(8000,), chunks=(1, 10), orients=(3,), rounds=5, progress=progress)
        progress(summarize(rows))
        return rows + bench_int16(n_chan=64, n_src=8000, chunks=(1,), reps=50, progress=progress)
    rows = bench_kernels(progress=progress)
    progress(summarize(rows))
    return rows + bench_int16(progress=progress)
