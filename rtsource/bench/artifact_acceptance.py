"""Issue 16's acceptance numbers on the simulator (``tools/artifact_acceptance.py``; too long for ``rtsource bench all``).

The simulator makes EEG with blinks, saccades, heartbeat and muscle bursts and keeps the
artifact-free EEG as ground truth. Setup's path calibrates the artifact correction on the
first part (which has artifacts too, as a real rest recording) and builds the operator
(fixed orientation, so a source's output keeps its oscillation); the rest goes through the
loop's own filter and artifact stage (:meth:`ArtifactCalibration.stage`) in 10-sample
float32 chunks, and the operator's kernel, which is linear, is applied to the whole record
at once (the same numbers as the loop's :class:`~rtsource.stream.operator.StreamOperator`
to float32 rounding, tests/artifacts/test_pipeline.py checks it; a projection's kernel is
built once per distinct projection). For each variant (none, ASR at a cutoff, the muscle
ASR, projection, their combinations, and the oracle) it measures:

- ROI band power (Hann windows of 0.5 s every 50 ms; mean over the ROI's sources) of the
  corrected output against the truth (the plain operator on the artifact-free EEG), in the
  windows that overlap blink (muscle) episodes: Pearson r, with the uncorrected r beside it;
- localisation: the source with the most band power of each simulated source's band during
  the blink windows, its distance to the true position, against the same on clean data;
- clean-data change: the variant on artifact-free EEG against the plain operator on it,
  ``var(difference) / var(plain)`` of the source output.

The "oracle" row is no method: the linear MMSE spatial filter that knows the true
covariances (:func:`_oracle_band_power`), the bound on what any spatial correction can reach.
"""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np

# (name, centres in template mm, radius mm, band Hz); the temporal ROI pools both sides
ROIS = (
    ("occipital 8-12 Hz", ((15.0, -90.0, 5.0),), 25.0, (8.0, 12.0)),
    ("frontal 4-8 Hz", ((0.0, 45.0, 25.0),), 30.0, (4.0, 8.0)),
    ("frontal 15-25 Hz", ((0.0, 45.0, 25.0),), 30.0, (15.0, 25.0)),
    ("temporal 15-25 Hz", ((-60.0, -20.0, -5.0), (60.0, -20.0, -5.0)), 25.0, (15.0, 25.0)),
)
KINDS = ("blinks", "saccades", "ecg", "emg")


@dataclasses.dataclass
class _Sim:
    names: tuple
    sfreq: float
    calib_v: np.ndarray
    raw_uv: np.ndarray
    clean_uv: np.ndarray
    active: np.ndarray
    dipoles: tuple


def simulate(settings, calib_s: float, test_s: float) -> _Sim:
    from ..simulation_artifacts import KINDS as ALL
    from ..simulator import SignalGenerator, simulated_channels

    names, array = simulated_channels(settings)
    gen = SignalGenerator(settings.simulate, names, array)
    fs = gen.sfreq
    blocks = [gen.next_block(int(fs)) for _ in range(int(calib_s + test_s))]
    data = np.vstack([b.data_v for b in blocks])
    clean = np.vstack([b.clean_v for b in blocks])
    active = np.vstack([b.artifact_active for b in blocks])[:, [ALL.index(k) for k in KINDS]]
    n = int(calib_s * fs)
    return _Sim(tuple(names), fs, data[:n], data[n:] * 1e6, clean[n:] * 1e6, active[n:], gen.dipoles)


def _stream(bundle, x_uv: np.ndarray, settings, artifacts) -> np.ndarray:
    """The loop's operator (filter, artifact stage, kernel) over ``x_uv`` in 10-sample chunks;
    output re-aligned for the stage's delay (its last ``delay`` samples are not known: zeros)."""
    from ..stream.channels import ChannelMap
    from ..stream.operator import FilterSpec, StreamOperator

    n_ch = bundle.n_channels
    cmap = ChannelMap(np.arange(n_ch, dtype=np.int64), np.full(n_ch, 1e-6), ("uV",) * n_ch, (), False)
    p = settings.preprocess
    op = StreamOperator(bundle, cmap, 10, FilterSpec(p.highpass_hz, p.lowpass_hz, p.order), low_rank="off")
    d = 0
    if artifacts is not None and artifacts.per_chunk:
        op.cleaner = artifacts.stage(bundle.ch_names, cmap.scale, 10, sos=op._sos)
        d = op.cleaner.delay_samples
    x = x_uv.astype(np.float32)
    out = np.zeros((len(x), bundle.n_sources), dtype=np.float32)
    for s in range(0, len(x) - 9, 10):
        out[s : s + 10] = op.process(x[s : s + 10], 10)
    return np.vstack([out[d:], np.zeros((d, out.shape[1]), np.float32)])


def _windows(n: int, fs: float, win_s=0.5, step_s=0.05) -> np.ndarray:
    return np.arange(0, n - int(win_s * fs), int(step_s * fs))


def band_power(src: np.ndarray, fs: float, idx, band, starts, win_s=0.5) -> np.ndarray:
    """Mean band power over sources ``idx`` in Hann windows starting at ``starts``."""
    n = int(win_s * fs)
    f = np.fft.rfftfreq(n, 1 / fs)
    sel = (f >= band[0]) & (f <= band[1])
    w = np.hanning(n)[:, None]
    out = np.empty(len(starts))
    for i, s in enumerate(starts):
        spec = np.fft.rfft(src[s : s + n][:, idx] * w, axis=0)[sel]
        out[i] = np.mean(np.sum(np.abs(spec) ** 2, axis=0))
    return out


def _stage_stream(artifacts, names, x_uv: np.ndarray, settings, sfreq: float) -> np.ndarray:
    """What the loop's operator hands its kernel: the ``[preprocess]`` filter (started at its
    steady state on the first sample, as the operator does) and the artifact stage, in
    10-sample float32 chunks; re-aligned for the stage's delay (the last ``delay`` rows are
    zeros). The kernel is linear, so ``_stage_stream(...) @ K.T`` equals :func:`_stream`
    (to float32 rounding; tests/artifacts/test_pipeline.py checks it)."""
    from scipy.signal import sosfilt, sosfilt_zi

    from ..stream.operator import FilterSpec

    p = settings.preprocess
    spec = FilterSpec(p.highpass_hz, p.lowpass_hz, p.order)
    x = x_uv.astype(np.float32).astype(np.float64)
    if spec.active:
        sos = spec.design(sfreq)
        x = sosfilt(sos, x, axis=0, zi=sosfilt_zi(sos)[:, :, None] * x[0][None, None, :])[0]
    if artifacts is None or not artifacts.per_chunk:
        return x
    stage = artifacts.stage(names, np.full(len(names), 1e-6), 10)
    out = stage.run_offline(x)
    d = stage.delay_samples
    return np.vstack([out[d:], np.zeros((d, out.shape[1]))])


def _peak_error_mm(y, k, fs, starts, band, positions_m, true_m, win_s=0.5) -> float:
    """Distance of the source with the most band power in the windows to ``true_m``.

    Band power of source i summed over the windows is ``k_i C k_i^T`` with ``C`` the
    channels' cross-spectral matrix summed over the windows and the band's bins."""
    n = int(win_s * fs)
    f = np.fft.rfftfreq(n, 1 / fs)
    sel = (f >= band[0]) & (f <= band[1])
    w = np.hanning(n)[:, None]
    c = np.zeros((y.shape[1], y.shape[1]))
    for s in starts:
        spec = np.fft.rfft(y[s : s + n] * w, axis=0)[sel]
        c += np.real(spec.conj().T @ spec)
    acc = np.einsum("ij,ij->i", k @ c, k)
    return float(np.linalg.norm(positions_m[int(np.argmax(acc))] - true_m) * 1e3)


def _oracle_band_power(raw, clean, k_roi, fs, band, starts, win_s=0.5) -> np.ndarray:
    """ROI band power after the MMSE spatial filter that knows the truth (the oracle row).

    Per window and band, with ``C_s`` the artifact-free EEG's cross-spectral matrix in the
    band over the whole record (the brain's stationary second-order statistics) and
    ``C_a`` the window's true artifact cross-spectral matrix: ``W = C_s (C_s + C_a)^-1``
    (Wiener; the linear minimum-mean-square-error spatial estimate of the clean signal from
    the raw one when brain and artifact are uncorrelated). No spatial filter that knows
    less can expect to do better, so its r bounds what any spatial correction can reach."""
    n = int(win_s * fs)
    f = np.fft.rfftfreq(n, 1 / fs)
    sel = (f >= band[0]) & (f <= band[1])
    w = np.hanning(n)[:, None]
    spec = lambda x, s: np.fft.rfft(x[s : s + n] * w, axis=0)[sel]  # noqa: E731
    every = _windows(len(clean), fs)
    cs = sum(np.real(spec(clean, s).conj().T @ spec(clean, s)) for s in every) / len(every)
    ridge = 1e-9 * np.trace(cs) / len(cs) * np.eye(len(cs))
    out = np.empty(len(starts))
    for i, s in enumerate(starts):
        x = spec(raw, s)
        a = x - spec(clean, s)
        wf = cs @ np.linalg.inv(cs + np.real(a.conj().T @ a) + ridge)
        out[i] = np.mean(np.sum(np.abs(x @ wf.T @ k_roi.T) ** 2, axis=0))
    return out


def _parse_variant(label: str, artifacts):
    """``"projection with 6 muscle + asr cutoff 10 + muscle cutoff 5"`` -> ([artifacts] settings or None)."""
    meth, changes = [], {}
    for part in (p.strip() for p in label.split("+")):
        words = part.split()
        if part == "none":
            continue
        if words[0] == "asr":
            meth.append("asr")
            changes["asr_cutoff"] = float(words[-1]) if len(words) > 1 else artifacts.asr_cutoff
        elif words[0] == "muscle":
            meth.append("muscle")
            if "cutoff" in words:
                changes["muscle_cutoff"] = float(words[words.index("cutoff") + 1])
            if "above" in words:
                changes["muscle_band_hz"] = float(words[words.index("above") + 1])
        elif words[0] == "projection":  # "projection" or "projection with 6 muscle"
            meth.append("projection")
            changes["n_muscle"] = int(words[2]) if "muscle" in part else 0
        else:
            raise ValueError(f"variant {label!r}: unknown part {part!r}; use none, asr [cutoff N], muscle [cutoff N] [above HZ], projection [with N muscle]")
    return dataclasses.replace(artifacts, method=tuple(meth), **changes) if meth else None


DEFAULT_VARIANTS = (
    "none", "asr cutoff 20", "asr cutoff 10", "projection", "projection + asr cutoff 20", "projection + asr cutoff 10",
    "muscle", "projection + muscle", "projection + asr cutoff 20 + muscle", "projection with 6 muscle", "oracle",
)  # fmt: skip


def run(*, quick: bool = False, method: str = "dSPM", progress=print, variants=None) -> dict:
    """Measure every variant; returns ``{variant: {metric: value}}`` (see the module docstring)."""
    from ..build import build_bundle, compute_leadfield
    from ..config import Settings
    from ..inverse.covariance import estimate_noise_covariance
    from ..inverse.reference import reference_matrix
    from ..pipeline.artifacts import calibrate_artifacts
    from ..stream.calibration import Calibration
    from ..stream.channels import StreamDescription

    t_start = time.perf_counter()
    s = Settings()
    sim_settings = dataclasses.replace(s.simulate, artifacts=KINDS, spacing="ico4" if quick else s.simulate.spacing)
    s = dataclasses.replace(
        s, simulate=sim_settings, preprocess=dataclasses.replace(s.preprocess, highpass_hz=0.5),
        inverse=dataclasses.replace(s.inverse, method=method, fixed=True),
    )  # fmt: skip
    calib_s, test_s = (30.0, 20.0) if quick else (60.0, 60.0)
    sim = simulate(s, calib_s, test_s)
    fs = sim.sfreq
    progress(f"simulated {calib_s + test_s:g} s of {len(sim.names)}-channel EEG with {', '.join(KINDS)} ({time.perf_counter() - t_start:.0f} s)")
    slf = compute_leadfield(s)
    names = tuple(slf.leadfield.ch_names)
    assert names == sim.names
    m = reference_matrix(names, s.sensors.reference)
    cal_filtered = sim.calib_v
    noise = estimate_noise_covariance(cal_filtered - cal_filtered.mean(axis=0), names, method="shrunk", reference=m)
    desc = StreamDescription(name="simulator", type="EEG", source_id="", sfreq=fs, n_channels=len(names), channel_format="float32",
                             ch_names=names, ch_types=("EEG",) * len(names), ch_units=("V",) * len(names))  # fmt: skip
    rest = Calibration(sim.calib_v, np.arange(len(sim.calib_v)) / fs, names, desc, 0)
    plain = build_bundle(s, sfreq=fs, noise_cov=noise, leadfield=slf)
    positions = plain.sources.positions_m

    def kernel(bundle) -> np.ndarray:  # sources x channels, on filtered uV (fixed orientation: one row a source)
        assert bundle.n_orient == 1 and bundle.kernel.shape[0] == bundle.n_sources
        return bundle.kernel / bundle.noise_norm[:, None] * 1e-6

    k_plain = kernel(plain)
    raw_f = _stage_stream(None, names, sim.raw_uv, s, fs)
    clean_f = _stage_stream(None, names, sim.clean_uv, s, fs)
    valid = len(clean_f) - int(0.25 * fs) - 1  # the last samples of delayed variants are unknown
    starts = _windows(valid, fs)
    n_win = int(0.5 * fs)
    in_ep = {k: np.array([sim.active[st : st + n_win, KINDS.index(k)].any() for st in starts]) for k in ("blinks", "emg")}
    rois = []
    for name, centres, radius, band in ROIS:
        d = np.min([np.linalg.norm(positions * 1e3 - np.array(c), axis=1) for c in centres], axis=0)
        rois.append((name, np.flatnonzero(d <= radius), band))
    bp_truth = {name: band_power(clean_f @ k_plain[idx].T, fs, range(len(idx)), band, starts) for name, idx, band in rois}
    bp_raw = {name: band_power(raw_f @ k_plain[idx].T, fs, range(len(idx)), band, starts) for name, idx, band in rois}
    truth_energy = np.einsum("ij,ij->", k_plain @ (clean_f[:valid].T @ clean_f[:valid]), k_plain)
    # localisation of the simulated oscillators (10 Hz occipital, 20 Hz motor) in blink windows
    blink_starts = starts[in_ep["blinks"]][::5]  # every 250 ms
    dip = [(dp.position_m, (dp.frequency_hz - 2.0, dp.frequency_hz + 2.0)) for dp in sim.dipoles]
    loc_clean = [_peak_error_mm(clean_f, k_plain, fs, blink_starts, band, positions, pos) for pos, band in dip]
    loc_raw = [_peak_error_mm(raw_f, k_plain, fs, blink_starts, band, positions, pos) for pos, band in dip]
    progress(f"built the plain operator and the truth ({time.perf_counter() - t_start:.0f} s)")

    def r(a, b) -> float:
        return round(float(np.corrcoef(a, b)[0, 1]), 3)

    def measure(k, y, yc, label, cost):
        res: dict = {}
        for name, idx, band in rois:
            cor = band_power(y @ k[idx].T, fs, range(len(idx)), band, starts)
            own = band_power(yc @ k[idx].T, fs, range(len(idx)), band, starts) if yc is not None else None
            for kind in ("blinks", "emg"):
                e = in_ep[kind]
                res[f"{name} during {kind}: r"] = r(cor[e], bp_truth[name][e])
                res[f"{name} during {kind}: r uncorrected"] = r(bp_raw[name][e], bp_truth[name][e])
                if own is not None:  # the ceiling: the variant on the artifact-free EEG in the same windows
                    res[f"{name} during {kind}: r of the variant on clean data"] = r(own[e], bp_truth[name][e])
        if yc is not None:  # var(K yc - K_plain clean) / var(K_plain clean), over all sources and samples
            dlt = yc[:valid] @ k.T - clean_f[:valid] @ k_plain.T
            res["clean-data change (fraction of variance)"] = float(np.sum(dlt**2) / truth_energy)
            for (pos, band), clean_err, raw_err in zip(dip, loc_clean, loc_raw):
                hz = f"{np.mean(band):g} Hz source"
                res[f"{hz}: localisation error in blinks, mm"] = round(_peak_error_mm(y, k, fs, blink_starts, band, positions, pos), 1)
                res[f"{hz}: localisation error on clean data, mm"] = round(clean_err, 1)
                res[f"{hz}: localisation error in blinks uncorrected, mm"] = round(raw_err, 1)
        res["offline processing of both streams, s"] = round(cost, 1)
        progress(json.dumps({label: res}))
        return res

    results: dict = {"seconds": {"calibration": calib_s, "test": test_s}, "sfreq": fs, "method": method}
    kernels: dict = {}  # projection -> kernel (a bundle build per distinct projection)
    for label in variants or DEFAULT_VARIANTS:
        t0 = time.perf_counter()
        if label == "oracle":
            res: dict = {}
            for name, idx, band in rois:
                ora = _oracle_band_power(raw_f, clean_f, k_plain[idx], fs, band, starts[in_ep["blinks"] | in_ep["emg"]])
                full = np.full(len(starts), np.nan)
                full[in_ep["blinks"] | in_ep["emg"]] = ora
                for kind in ("blinks", "emg"):
                    e = in_ep[kind]
                    res[f"{name} during {kind}: r"] = r(full[e], bp_truth[name][e])
                    res[f"{name} during {kind}: r uncorrected"] = r(bp_raw[name][e], bp_truth[name][e])
            res["offline processing of both streams, s"] = round(time.perf_counter() - t0, 1)
            progress(json.dumps({label: res}))
            results[label] = res
            continue
        a = _parse_variant(label, s.artifacts)
        if a is None:
            results[label] = measure(k_plain, raw_f, clean_f, label, time.perf_counter() - t0)
            continue
        s_var = dataclasses.replace(s, artifacts=a)
        cal = calibrate_artifacts(s_var, rest=rest, progress=lambda msg: None)
        k = k_plain
        if "projection" in a.method:
            key = cal.projection.vectors.tobytes()
            if key not in kernels:
                kernels[key] = kernel(build_bundle(s_var, sfreq=fs, noise_cov=noise, leadfield=slf, artifacts=cal))
            k = kernels[key]
        y = _stage_stream(cal, names, sim.raw_uv, s, fs)
        yc = _stage_stream(cal, names, sim.clean_uv, s, fs)
        results[label] = measure(k, y, yc, label, time.perf_counter() - t0)
    results["total_s"] = round(time.perf_counter() - t_start, 1)
    return results
