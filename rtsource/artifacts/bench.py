"""``rtsource bench artifacts``: the per-chunk cost of ASR against a no-op stage, same run.

Data: 64 channels at 500 Hz, correlated high-passed noise with a blink-like artifact every
4 s (so the repair path runs too), calibrated on 60 s of it; streamed in 10-sample chunks.
The baseline is the stage the loop would have without ASR (copying the chunk to the
output). A second line times the whole per-chunk stage of the recommended combination
(``method = ["projection", "asr", "muscle"]``: the projection's filter before ASR, ASR, the
muscle ASR) in float32 as the loop hands it over. Each is timed chunk by chunk over the whole record, in blocks, repeated.
"""

from __future__ import annotations

import time

import numpy as np


def _data(n_ch: int, sfreq: float, seconds: float, seed: int) -> np.ndarray:
    from scipy.signal import butter, lfilter

    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(1).normal(size=(n_ch, n_ch)) + 3 * np.eye(n_ch)
    x = lfilter(*butter(2, 1.0, "hp", fs=sfreq), rng.normal(size=(int(seconds * sfreq), n_ch)) @ mix.T, axis=0)
    pattern = np.linspace(1.0, 0.0, n_ch) ** 2 * 30 * x.std()
    width = int(0.3 * sfreq)
    for at in range(int(2 * sfreq), len(x) - width, int(4 * sfreq)):
        x[at : at + width] += np.hanning(width)[:, None] * pattern
    return x


def bench_artifacts(n_ch: int = 64, sfreq: float = 500.0, chunk: int = 10, seconds: float = 30.0, rounds: int = 3, progress=print) -> dict:
    """Median and p99 cost (ms) per chunk of ASR and of the no-op baseline."""
    from .asr import AsrProcessor, calibrate_asr
    from .calibration import ArtifactCalibration, subspace_projector
    from .projection import ArtifactProjection

    names = [f"E{i}" for i in range(n_ch)]
    calib = _data(n_ch, sfreq, 60.0, 0)[: int(60 * sfreq)]
    cal = calibrate_asr(calib, sfreq, names, cutoff=20.0, source="bench")
    # the combination: the blink-like pattern projected out, both ASRs in the subspace left
    u = np.linspace(1.0, 0.0, n_ch) ** 2
    u -= u.mean()
    proj = ArtifactProjection(tuple(names), (u / np.linalg.norm(u))[:, None], ("ocular",), np.ones(1))
    q = subspace_projector(proj, "average", names)
    combo = ArtifactCalibration(
        ("projection", "asr", "muscle"), calibrate_asr(calib, sfreq, names, projector=q), None, proj, asr_space="projected", reference="average",
        muscle=calibrate_asr(calib, sfreq, names, cutoff=5.0, projector=q, band_hz=60.0),
    )  # fmt: skip
    x = _data(n_ch, sfreq, seconds, 1)
    chunks = [np.ascontiguousarray(x[s : s + chunk]) for s in range(0, len(x) - chunk + 1, chunk)]
    out = np.zeros((chunk, n_ch))
    warm = AsrProcessor(cal, chunk)  # compile / load the kernels outside the timing
    for c in chunks[:200]:
        warm.process(c, out)

    def noop(c):
        np.copyto(out[: len(c)], c)

    # a machine-state reference: LAPACK's eigendecomposition of a 64 x 64 covariance alone
    # (the bulk of an ASR update), so a p99 inflated by other processes shows as such
    sym = np.cov(x[:1000].T)

    def eigh_only(c):
        np.linalg.eigh(sym)

    chunks32 = [c.astype(np.float32) for c in chunks]
    bad = np.zeros(chunk, np.uint8)
    picked = np.zeros((chunk, n_ch), np.float32)
    warm_stage = combo.stage(names, np.ones(n_ch), chunk)
    for c in chunks32[:200]:
        picked[:] = c
        warm_stage.process(c, picked, chunk, bad, 0)

    def run_stage(stage, c):
        j = run_stage.i % len(chunks32)
        run_stage.i += 1
        picked[:] = chunks32[j]
        stage.process(picked, picked, chunk, bad, 0)

    run_stage.i = 0
    times: dict[str, list] = {"baseline": [], "asr": [], "asr_update_chunks": [], "stage_projection_asr_muscle": [], "numpy_eigh_64": []}
    stats = None
    for _ in range(rounds):
        proc = AsrProcessor(cal, chunk)
        stage = combo.stage(names, np.ones(n_ch), chunk)
        run_stage.i = 0
        for name, fn in (("baseline", noop), ("asr", lambda c: proc.process(c, out)), ("stage_projection_asr_muscle", lambda c: run_stage(stage, c)),
                         ("numpy_eigh_64", eigh_only)):  # fmt: skip
            t_list = times[name]
            for c in chunks:
                before = proc.updates
                t = time.perf_counter()
                fn(c)
                dt = time.perf_counter() - t
                t_list.append(dt)
                if proc.updates != before:
                    times["asr_update_chunks"].append(dt)
        stats = proc.stats()
    res = {k: {"median_ms": float(np.median(v) * 1e3), "p99_ms": float(np.percentile(v, 99) * 1e3)} for k, v in times.items()}
    res["added_median_ms"] = res["asr"]["median_ms"] - res["baseline"]["median_ms"]
    res["added_p99_ms"] = res["asr"]["p99_ms"] - res["baseline"]["p99_ms"]
    res.update(channels=n_ch, sfreq=sfreq, chunk=chunk, chunks=len(chunks) * rounds, updates_per_chunk=stats.updates / max(1, len(chunks)),
               fraction_repaired=stats.fraction_samples_repaired, lookahead_ms=1e3 * round(0.25 * sfreq) / sfreq)  # fmt: skip
    progress(
        f"ASR {n_ch} ch, {sfreq:g} Hz, {chunk}-sample chunks (update every 32 samples, look-ahead {res['lookahead_ms']:.0f} ms, "
        f"{100 * res['fraction_repaired']:.0f} % of samples repaired): median {res['asr']['median_ms']:.3f} ms, p99 {res['asr']['p99_ms']:.3f} ms; "
        f"no-op baseline median {res['baseline']['median_ms']:.4f} ms, p99 {res['baseline']['p99_ms']:.4f} ms; "
        f"added: median {res['added_median_ms']:.3f} ms, p99 {res['added_p99_ms']:.3f} ms (target <= 0.5 / <= 2 ms)"
    )
    progress(
        f"  chunks with an eigen-update: median {res['asr_update_chunks']['median_ms']:.3f} ms, p99 {res['asr_update_chunks']['p99_ms']:.3f} ms; "
        f"reference numpy eigh(64 x 64) alone: median {res['numpy_eigh_64']['median_ms']:.3f} ms, p99 {res['numpy_eigh_64']['p99_ms']:.3f} ms"
    )
    progress(
        f"  the stage of projection + ASR + muscle ASR (float32 in and out, two ASRs: look-ahead twice): median "
        f"{res['stage_projection_asr_muscle']['median_ms']:.3f} ms, p99 {res['stage_projection_asr_muscle']['p99_ms']:.3f} ms per chunk"
    )
    return res
