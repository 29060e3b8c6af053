"""``rtsource bench connectivity``: per-step time of the ROI connectivity stage.

68 ROIs (2,278 pairs), alpha + beta, five measures, 1 s windows every 100 ms at 500 Hz,
against NumPy recomputing one window's coherence from scratch.
"""

from __future__ import annotations

import time

import numpy as np

from .common import time_blocks


def bench_connectivity(n_roi=68, sfreq=500.0, window_s=1.0, step_s=0.1, steps=300, measures=None, progress=print) -> dict:
    """Per-step time of the connectivity stage (alpha + beta, all pairs), one chunk = one step.

    Baseline in the same run: NumPy recomputing the spectral measures of one window from
    scratch (rfft of its segments, cross-spectra, band means), as an offline tool would.
    """
    from ..stream.connectivity import MEASURES, ConnectivitySpec, ConnectivityStage

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

    base = time_blocks({"numpy": numpy_window}, reps=max(10, steps // 10), warmup=2, rounds=1)["numpy"]
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


def run(*, quick: bool, method: str, progress) -> dict:
    """``rtsource bench connectivity`` (``--quick``: 100 steps instead of 600)."""
    return bench_connectivity(steps=100 if quick else 600, progress=progress)
