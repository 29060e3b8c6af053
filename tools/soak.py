"""Soak run: producer process -> `rtsource run` process -> consumer, for a long time.

    python tools/soak.py --minutes 10 --channels 64 --sources 8000 --sfreq 1000
    python tools/soak.py --minutes 10 --channels 306 --sources 8000 --sfreq 1000 --json soak306.json

Each part runs in its own process, as in the lab: a producer pushes simulated EEG (the
package's simulator: 1/f cortical background, correlated across channels like real EEG; a
10 s block recycled) in 10-sample chunks at the real pace over LSL; the loop is the real
`rtsource run` command on a bundle of the requested size (random operator, template source
positions) with its default settings, so the bad-channel detector runs; this tool is the
consumer and checks every sample:

- every timestamp: sample k of the producer has timestamp ``t0 + k / sfreq``, so each
  received one names its k; a k that is not the next one is a loss, a repeat or a
  reordering (counted apart);
- every value: the expected output of each sample is computed here from the producer's
  block and the bundle, for a fixed subset of sources on every sample and for all sources
  on every 100th chunk;
- the loop's own counters (telemetry): samples in = out = pushed, lost = 0, no gap, no
  NaN, no bad channel;
- the loop process's resident memory: growth from the first report to the last.

With ``--events`` the producer also sends a marker stream (a marker every 0.5-0.7 s, half of
them 100 ms before their data, half 300 ms after it), the loop runs 68 ROIs, epochs with a
feature window and connectivity (5 measures x alpha, beta; 1 s windows every 100 ms:
22,780 channels), and the consumer also checks NAME-epochs, NAME-evoked and
NAME-connectivity: one epoch per marker (none lost, none twice, indices 0, 1, 2, ...) and one
connectivity row per step, stamped with the step's last sample. Its memory growth is measured
from the first report after 2 minutes: LSL's sample pools for the large samples (an epoch of
68 ROIs x 1 s at 1 kHz is 272 kB) fill up to the outlets' buffer bounds before that.

With ``--artifacts`` the bundle carries ASR and muscle-ASR calibrations (on the producer's
block) and the loop high-passes at 0.5 Hz and repairs with both: every sample must still
come out, with its own timestamp moved by the two look-aheads; the values are then not checked (ASR updates
at chunk ends, so its output depends on how LSL happened to chunk the stream), but the
loop must report the stage running (telemetry).

Every interval (default 60 s) it prints a report row. The summary's ``failures`` lists
every check that failed (empty: the soak passed); ``--max-growth-mb`` (default 5) bounds the
memory growth.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def channel_names(n: int) -> tuple[str, ...]:
    from rtsource.sensors.montage import CAP_64, standard_montage

    if n <= 64:
        return CAP_64[:n]
    extra = [x for x in standard_montage("standard_1005").labels if x not in CAP_64]
    names = list(CAP_64) + extra
    if n > len(names):
        names += [f"X{i:03d}" for i in range(n - len(names))]
    return tuple(names[:n])


def synthetic_bundle(n_chan: int, n_src: int, sfreq: float, seed: int = 0):
    """A bundle of the requested size: random loose-orientation operator on template positions."""
    from rtsource.anatomy.template import template_source_space
    from rtsource.bundle import OperatorBundle

    rng = np.random.default_rng(seed)
    dense = template_source_space("ico5")
    sources = dense.subset(np.sort(rng.choice(dense.n_sources, n_src, replace=False)), name=f"fsaverage-ico5-random{n_src}")
    names = channel_names(n_chan)
    return OperatorBundle(
        kernel=rng.normal(size=(3 * n_src, n_chan)) * 1e5,
        noise_norm=rng.uniform(0.5, 2.0, n_src) * 1e5,
        n_orient=3,
        method="dSPM",
        output_unit="",
        ch_names=names,
        ch_types=("eeg",) * n_chan,
        ch_units=("V",) * n_chan,
        reference="average",
        sfreq=sfreq,
        sources=sources,
        channel_positions_m=rng.normal(size=(n_chan, 3)) * 0.09,
        channel_frame="template",
        params={"synthetic": True},
        provenance={"tool": "tools/soak.py"},
    )


def eeg_block(names: tuple[str, ...], sfreq: float, seconds: float = 10.0, seed: int = 1) -> np.ndarray:
    """``seconds`` of simulated EEG on ``names`` (microvolts, float32): the producer's data."""
    import dataclasses

    from rtsource.config import Settings
    from rtsource.simulator import SignalGenerator

    sim = dataclasses.replace(Settings().simulate, sfreq=float(sfreq), seed=seed)
    x, _ = SignalGenerator(sim, names).next(int(round(seconds * sfreq)))
    return (x * 1e6).astype(np.float32)


def marker_schedule(total: int, sfreq: float, seed: int = 3) -> list[tuple[int, bool]]:
    """(sample index, sent early) of the producer's markers: every 0.5-0.7 s from 1 s on."""
    rng = np.random.default_rng(seed)
    out, k = [], int(sfreq)
    while k < total:
        out.append((k, len(out) % 2 == 0))
        k += int(round((0.5 + 0.2 * rng.random()) * sfreq))
    return out


EARLY_S, LATE_S = 0.1, 0.3  # markers sent this long before / after their sample
EVENTS_WARMUP_S = 120.0  # --events: memory growth is measured from the first report after this
EPOCH = (-0.2, 0.8)  # [epochs] window of the events soak


def events_config(in_name: str, n_src: int, n_roi: int = 68) -> str:
    """The loop's configuration for ``--events``: n_roi ROIs of consecutive sources, epochs, connectivity."""
    per = max(1, n_src // n_roi)
    rois = "".join(f'[[roi]]\nname = "r{i:02d}"\nvertices = {list(range(i * per, (i + 1) * per))}\n' for i in range(n_roi))
    return (
        f'[events]\nstream = "{in_name}-markers"\nmarkers = {{stim = "stim"}}\n'
        f"[epochs]\ntmin = {EPOCH[0]}\ntmax = {EPOCH[1]}\nfeatures = {{p300 = [0.25, 0.45]}}\n"
        '[connectivity]\nmeasures = ["coh", "imcoh", "plv", "wpli", "aec"]\nwindow_s = 1.0\nstep_s = 0.1\n'
        '[rois]\nsources_output = true\n' + rois
    )


def producer(name: str, names: tuple[str, ...], sfreq: float, seconds: float, chunk: int, block_path: str, with_markers: bool = False,
             go_file: str = "") -> int:  # fmt: skip
    """Push the block (recycled) at the real pace; sample k has timestamp t0 + k / sfreq.

    Prints ``t0 <value>`` before the first sample; returns the number of samples pushed.
    """
    import pylsl

    from rtsource.lsl_config import configure_liblsl

    configure_liblsl()
    info = pylsl.StreamInfo(name, "EEG", len(names), sfreq, pylsl.cf_float32, name)
    chans = info.desc().append_child("channels")
    for n in names:
        c = chans.append_child("channel")
        c.append_child_value("label", n)
        c.append_child_value("type", "EEG")
        c.append_child_value("unit", "microvolts")
    outlet = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=360)
    markers = None
    if with_markers:
        minfo = pylsl.StreamInfo(name + "-markers", "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, name + "-markers")
        markers = pylsl.StreamOutlet(minfo)
    outlet.wait_for_consumers(120)
    if markers is not None:
        markers.wait_for_consumers(120)
    if go_file:  # the consumer opened every output stream (LSL gives late consumers only newer samples)
        end = time.monotonic() + 120
        while not os.path.exists(go_file) and time.monotonic() < end:
            time.sleep(0.05)
    block = np.load(block_path)
    t0 = pylsl.local_clock() + 0.1
    print(f"t0 {t0!r}", flush=True)
    total = int(seconds * sfreq)
    # each marker is sent when the data reach its send sample (before or after its own sample)
    plan = sorted((mk + int(round((-EARLY_S if early else LATE_S) * sfreq)), mk) for mk, early in (marker_schedule(total, sfreq) if markers else []))
    k = 0
    while k < total:
        n = min(chunk, total - k)
        ts = t0 + (k + np.arange(n)) / sfreq
        wait = ts[-1] - pylsl.local_clock()
        if wait > 0:
            time.sleep(wait)
        outlet.push_chunk(block[(k + np.arange(n)) % len(block)], ts.tolist())
        k += n
        while plan and plan[0][0] < k:
            markers.push_sample(["stim"], t0 + plan.pop(0)[1] / sfreq)
    time.sleep(2.0)  # let the consumers drain before the outlet disappears
    return k


def _pushed(prod: subprocess.Popen, expected: int) -> int:
    """Samples the producer says it pushed (its last stdout line), once it has exited."""
    if prod.poll() is None:
        return expected
    if not hasattr(prod, "_rtsource_count"):
        out = prod.stdout.read() if prod.stdout else ""
        lines = [x for x in out.strip().splitlines() if x.startswith("pushed ")]
        prod._rtsource_count = int(lines[-1].split()[1]) if lines else -1
    return prod._rtsource_count


class OutputChecker:
    """Checks each received chunk's timestamps and values against what the producer sent.

    Parameters
    ----------
    bundle : OperatorBundle
        The loop's operator (its kernel gives the expected output).
    block : ndarray, shape (n_block, n_channels)
        The producer's recycled data in microvolts.
    t0, sfreq : float
        Sample k has timestamp ``t0 + k / sfreq`` and data ``block[k % n_block]``.
    n_watch : int
        Sources whose values are checked on every sample (all sources every 100th chunk).
    """

    def __init__(self, bundle, block: np.ndarray, t0: float, sfreq: float, n_watch: int = 64, seed: int = 2):
        self.block = block.astype(np.float64) * 1e-6  # V, as the loop converts the stream's uV
        self.t0, self.sfreq = t0, sfreq
        self.n_orient = bundle.n_orient
        rng = np.random.default_rng(seed)
        self.watch = np.sort(rng.choice(bundle.n_sources, min(n_watch, bundle.n_sources), replace=False))
        rows = (self.watch[:, None] * self.n_orient + np.arange(self.n_orient)).ravel()
        self.kernel = bundle.kernel
        self.kernel_watch = bundle.kernel[rows]
        self.noise_norm = bundle.noise_norm
        self.next_k = 0
        self.missing = 0
        self.duplicates = 0
        self.reordered = 0
        self.bad_timestamps = 0
        self.value_mismatches = 0
        self.values_checked = 0
        self.chunks = 0

    def _expected(self, ks: np.ndarray, kernel: np.ndarray, norm: np.ndarray) -> np.ndarray:
        y = self.block[ks % len(self.block)] @ kernel.T
        if self.n_orient == 3:
            y = np.sqrt((y.reshape(len(y), -1, 3) ** 2).sum(axis=2))
        return y / norm

    def check(self, data: np.ndarray, ts: np.ndarray, values: bool = True) -> None:
        ks = np.rint((ts - self.t0) * self.sfreq).astype(np.int64)
        self.bad_timestamps += int(np.sum(np.abs(ts - (self.t0 + ks / self.sfreq)) > 1e-9))
        for k in ks.tolist():
            if k == self.next_k:
                self.next_k += 1
            elif k > self.next_k:
                self.missing += k - self.next_k
                self.next_k = k + 1
            elif k == self.next_k - 1:
                self.duplicates += 1
            else:
                self.reordered += 1
        self.chunks += 1
        if not values:
            return
        full = self.chunks % 100 == 0
        cols = slice(None) if full else self.watch
        want = self._expected(ks, self.kernel if full else self.kernel_watch, self.noise_norm if full else self.noise_norm[self.watch])
        got = data[:, cols].astype(np.float64)
        ok = np.all(np.isclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(want).max()), axis=1)
        self.value_mismatches += int(np.sum(~ok))
        self.values_checked += got.size


class EventsChecker:
    """The consumer of NAME-epochs, NAME-evoked and NAME-connectivity in an ``--events`` soak."""

    def __init__(self, out_name: str, sfreq: float):
        import pylsl

        from rtsource.stream.outputs import CONNECTIVITY_SUFFIX, EPOCHS_SUFFIX, EVOKED_SUFFIX

        self.sfreq = sfreq
        self.inlets = {}
        for key, suffix in (("epochs", EPOCHS_SUFFIX), ("evoked", EVOKED_SUFFIX), ("connectivity", CONNECTIVITY_SUFFIX)):
            found = pylsl.resolve_byprop("name", out_name + suffix, minimum=1, timeout=60)
            if not found:
                raise RuntimeError(f"the loop never published {out_name + suffix!r}")
            inlet = pylsl.StreamInlet(found[0], max_buflen=360)
            inlet.open_stream(timeout=30)
            self.inlets[key] = inlet
        self.n_conn = self.inlets["connectivity"].info().channel_count()
        self.epoch_times: list[float] = []
        self.epoch_index: list[int] = []
        self.evoked_counts: list[int] = []
        self.conn_stamps: list[np.ndarray] = []
        self.conn_nan_rows = 0
        self.conn_rows = 0

    def pull(self) -> None:
        for key, inlet in self.inlets.items():
            while True:
                data, ts = inlet.pull_chunk(timeout=0.0, max_samples=256, as_numpy=True)
                if not len(ts):
                    break
                data = np.asarray(data)
                if key == "epochs":
                    self.epoch_times += np.asarray(ts).tolist()
                    self.epoch_index += data[:, 1].astype(int).tolist()
                elif key == "evoked":
                    self.evoked_counts += data[:, 1].astype(int).tolist()
                else:
                    self.conn_stamps.append(np.asarray(ts))
                    self.conn_rows += len(ts)
                    self.conn_nan_rows += int(np.isnan(data).any(axis=1).sum())

    def row(self) -> dict:
        return {"epochs": len(self.epoch_times), "connectivity_rows": self.conn_rows}

    def report(self, pushed: int) -> dict:
        total_s = pushed / self.sfreq
        sched = marker_schedule(pushed, self.sfreq)
        # an epoch exists when its window closed within the data and its marker was sent
        expected = [k for k, early in sched if k + EPOCH[1] * self.sfreq < pushed and k + (-EARLY_S if early else LATE_S) * self.sfreq < pushed]
        stamps = np.concatenate(self.conn_stamps) if self.conn_stamps else np.zeros(0)
        step = int(round(0.1 * self.sfreq))
        checks = {
            "one epoch per marker": len(self.epoch_times) == len(expected) and len(set(np.round(self.epoch_times, 6))) == len(self.epoch_times),
            "epoch indices 0, 1, 2, ...": sorted(self.epoch_index) == list(range(len(self.epoch_index))),
            "evoked count per epoch": sorted(self.evoked_counts) == list(range(1, len(self.evoked_counts) + 1)),
            "one connectivity row per step": self.conn_rows == pushed // step and (len(stamps) < 2 or np.allclose(np.diff(stamps), step / self.sfreq)),
            "connectivity finite after the first window": self.conn_nan_rows <= int(round(1.0 * self.sfreq)) // step - 1,
        }
        return {
            "markers_sent": len([1 for k, early in sched if k + (-EARLY_S if early else LATE_S) * self.sfreq < pushed]),
            "epochs_expected": len(expected),
            "epochs_received": len(self.epoch_times),
            "evoked_received": len(self.evoked_counts),
            "connectivity_channels": self.n_conn,
            "connectivity_rows": self.conn_rows,
            "connectivity_rows_expected": pushed // step,
            "connectivity_nan_rows": self.conn_nan_rows,
            "seconds_streamed": round(total_s, 1),
            "checks": checks,
        }


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def with_asr(bundle, block: np.ndarray, sfreq: float):
    """``bundle`` with ASR and muscle-ASR calibrations on the producer's block (uV), high-passed
    as the loop will: both per-chunk stages of the artifact correction (the projection is
    folded into the operator and costs nothing per chunk)."""
    import dataclasses

    from scipy.signal import butter, sosfilt

    from rtsource.artifacts import ArtifactCalibration, calibrate_asr

    rest = sosfilt(butter(2, 0.5, "hp", fs=sfreq, output="sos"), np.tile(block, (6, 1)), axis=0) * 1e-6  # 60 s
    asr = calibrate_asr(rest, sfreq, bundle.ch_names, cutoff=20.0, source="soak producer block")
    muscle = calibrate_asr(rest, sfreq, bundle.ch_names, cutoff=5.0, source="soak producer block", band_hz=min(60.0, 0.4 * sfreq))
    return dataclasses.replace(bundle, artifacts=ArtifactCalibration(("asr", "muscle"), asr=asr, muscle=muscle))


def soak(minutes: float, n_chan: int, n_src: int, sfreq: float, interval: float = 60.0, chunk: int = 10, progress=print, max_growth_mb: float = 5.0,
         events: bool = False, artifacts: bool = False) -> dict:  # fmt: skip
    import pylsl

    from rtsource.bundle import save_bundle
    from rtsource.stream.outputs import TELEMETRY_CHANNELS, TELEMETRY_SUFFIX

    tag = f"soak-{os.getpid()}-{int(time.time())}"
    in_name, out_name = tag + "-eeg", tag + "-src"
    seconds = minutes * 60.0
    tmp = Path(tempfile.mkdtemp(prefix="rtsource-soak-"))
    bundle = synthetic_bundle(n_chan, n_src, sfreq)
    block = eeg_block(channel_names(n_chan), sfreq)
    delay = 0.0
    if artifacts:
        bundle = with_asr(bundle, block, sfreq)
        delay = bundle.artifacts.delay_samples / sfreq
    bundle_path = save_bundle(bundle, tmp / "soak_bundle.npz")
    np.save(tmp / "block.npy", block)
    # the loop's default settings: the bad-channel detector runs on the simulated EEG
    config = tmp / "soak.toml"
    config.write_text((events_config(in_name, n_src) if events else "") + ("\n[preprocess]\nhighpass_hz = 0.5\n" if artifacts else ""))
    total = int(seconds * sfreq)
    prod = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--produce", in_name, "--channels", str(n_chan), "--sfreq", str(sfreq),
         "--minutes", str(minutes), "--chunk", str(chunk), "--block", str(tmp / "block.npy"), *(["--markers", "--go", str(tmp / "go")] if events else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    loop = subprocess.Popen(
        [sys.executable, "-m", "rtsource.cli", "run", str(bundle_path), "--config", str(config), "--stream-name", in_name,
         "--outlet-name", out_name, "--resolve-timeout", "60", "--idle-timeout", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        found = pylsl.resolve_byprop("name", out_name, minimum=1, timeout=120)
        if not found:
            raise RuntimeError(f"the loop never published {out_name!r}: {loop.stderr.read() if loop.poll() is not None else ''}")
        inlet = pylsl.StreamInlet(found[0], max_buflen=360)
        inlet.open_stream(timeout=30)
        tel_found = pylsl.resolve_byprop("name", out_name + TELEMETRY_SUFFIX, minimum=1, timeout=120)
        tel = pylsl.StreamInlet(tel_found[0])
        tel.open_stream(timeout=30)
        labels = [c for c, _ in TELEMETRY_CHANNELS]
        ev = EventsChecker(out_name, sfreq) if events else None
        if events:
            (tmp / "go").write_text("")
        buf = np.zeros((4096, n_src), np.float32)
        offset = inlet.time_correction(timeout=5)
        line = prod.stdout.readline()  # "t0 <value>" once the producer starts
        if not line.startswith("t0 "):
            raise RuntimeError(f"the producer did not start: {line!r} {prod.stderr.read() if prod.poll() is not None else ''}")
        # with ASR, output sample k carries input sample k's stamp moved by the look-ahead
        checker = OutputChecker(bundle, block, float(line.split()[1]) - delay, sfreq)
        received = 0
        last_ts = None
        out_of_order = 0
        rows = []
        lat: list[float] = []
        t_start = time.monotonic()
        next_report = t_start + interval
        telemetry = None
        while True:
            _, ts = inlet.pull_chunk(timeout=0.2, max_samples=4096, dest_obj=buf, min_samples=1, as_numpy=True)
            if len(ts):
                now = pylsl.local_clock()
                lat.append(now - (ts[-1] + offset))
                received += len(ts)
                checker.check(buf[: len(ts)], ts, values=not artifacts)
                if last_ts is not None and ts[0] <= last_ts:
                    out_of_order += 1
                last_ts = ts[-1]
            tdata, _ = tel.pull_chunk(timeout=0.0, as_numpy=True)
            if len(tdata):
                telemetry = dict(zip(labels, tdata[-1]))
            if ev is not None:
                ev.pull()
            t = time.monotonic()
            done = received >= total or (prod.poll() is not None and received >= _pushed(prod, total))
            if t >= next_report or done or (loop.poll() is not None):
                la = np.array(lat) if lat else np.array([np.nan])
                row = {
                    "t_s": round(t - t_start, 1),
                    "received": received,
                    "missing": checker.missing,
                    "value_mismatches": checker.value_mismatches,
                    "loop_in": int(telemetry["samples_in"]) if telemetry else None,
                    "loop_out": int(telemetry["samples_out"]) if telemetry else None,
                    "loop_lost": int(telemetry["lost"]) if telemetry else None,
                    "bad_channels": int(telemetry["bad_channels"]) if telemetry else None,
                    "gaps": int(telemetry["gaps"]) if telemetry else None,
                    "nan": int(telemetry["nan_samples"]) if telemetry else None,
                    "loop_rss_mb": round(rss_mb(loop.pid), 1),
                    "latency_ms_p50": round(float(np.percentile(la, 50)) * 1e3, 3),
                    "latency_ms_p99": round(float(np.percentile(la, 99)) * 1e3, 3),
                    "loop_process_ms_p99": round(float(telemetry["process_ms_p99"]), 3) if telemetry else None,
                    **(ev.row() if ev is not None else {}),
                }
                rows.append(row)
                progress(json.dumps(row))
                lat = []
                next_report = t + interval
            if done or loop.poll() is not None:
                break
        for _ in range(100):  # whatever is still in flight
            _, ts = inlet.pull_chunk(timeout=0.1, max_samples=4096, dest_obj=buf, as_numpy=True)
            received += len(ts)
            if not len(ts):
                break
            checker.check(buf[: len(ts)], ts, values=not artifacts)
        end = time.monotonic() + 1.5  # the loop's counters once everything went through
        while time.monotonic() < end and loop.poll() is None:
            tdata, _ = tel.pull_chunk(timeout=0.2, as_numpy=True)
            if len(tdata):
                telemetry = dict(zip(labels, tdata[-1]))
            if ev is not None:
                ev.pull()
    finally:
        loop.terminate()
        try:
            out, _ = loop.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            loop.kill()
            out = ""
        try:
            prod.wait(timeout=20)
        except subprocess.TimeoutExpired:
            prod.kill()
    pushed = _pushed(prod, total)
    # with --events LSL's sample pools for the large epoch, evoked and connectivity samples fill
    # up to the outlets' buffer bounds during the first minutes: growth is counted after that
    warm = [r for r in rows if r["t_s"] >= EVENTS_WARMUP_S] if events else []
    first, last = (warm[0] if len(warm) > 1 else rows[0]), rows[-1]
    growth = round(last["loop_rss_mb"] - first["loop_rss_mb"], 1)
    tel = {k: (int(v) if float(v).is_integer() else float(v)) for k, v in (telemetry or {}).items()}
    counters = {k: tel.get(k) for k in ("samples_in", "samples_out", "lost", "skipped", "push_failures", "gaps", "nan_samples", "bad_channels", "rss_mb")}
    checks = {
        "every pushed sample received": received == pushed and checker.missing == 0 and checker.next_k == pushed,
        "no duplicate": checker.duplicates == 0,
        "no reordering": checker.reordered == 0 and out_of_order == 0,
        "timestamps exact": checker.bad_timestamps == 0,
        "values as computed offline": checker.value_mismatches == 0 and (artifacts or checker.values_checked > 0),
        "loop counted every sample in and out": counters["samples_in"] == pushed and counters["samples_out"] == pushed,
        "loop counted nothing lost, skipped or failed": counters["lost"] == 0 and counters["skipped"] == 0 and counters["push_failures"] == 0,
        "no gap, no NaN, no bad channel": counters["gaps"] == 0 and counters["nan_samples"] == 0 and counters["bad_channels"] == 0,
        f"memory growth below {max_growth_mb:g} MB": growth < max_growth_mb,
    }
    ev_report = {}
    if events:
        ev_report = ev.report(pushed)
        checks.update(ev_report.pop("checks"))
    if artifacts:
        checks["the loop ran ASR (telemetry: look-ahead and cost per chunk)"] = tel.get("artifact_delay_ms", 0) > 0 and tel.get("artifact_ms_p50", 0) > 0
    return {
        **ev_report,
        "channels": n_chan,
        "sources": n_src,
        "sfreq": sfreq,
        "minutes": minutes,
        "pushed": pushed,
        "received": received,
        "lost": pushed - received,
        "missing": checker.missing,
        "duplicates": checker.duplicates,
        "reordered": checker.reordered,
        "bad_timestamps": checker.bad_timestamps,
        "value_mismatches": checker.value_mismatches,
        "values_checked": checker.values_checked,
        "out_of_order_chunks": out_of_order,
        "loop_counters": counters,
        "artifacts": {k: tel.get(k) for k in ("artifact_delay_ms", "artifact_repaired", "artifact_ms_p50", "artifact_ms_p99", "artifact_episodes")} if artifacts else None,
        "memory_growth_mb": growth,
        "memory_growth_from_s": first["t_s"],
        "p99_last_vs_first": round(last["latency_ms_p99"] / first["latency_ms_p99"], 3) if first["latency_ms_p99"] else None,
        "failures": [name for name, ok in checks.items() if not ok],
        "intervals": rows,
        "loop_stdout_tail": out[-3000:] if out else "",
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--sources", type=int, default=8000)
    ap.add_argument("--sfreq", type=float, default=1000.0)
    ap.add_argument("--interval", type=float, default=60.0, help="seconds per report row")
    ap.add_argument("--json", help="write the report here")
    ap.add_argument("--max-growth-mb", type=float, default=5.0, help="fail when the loop's memory grows more than this")
    ap.add_argument("--events", action="store_true", help="markers, 68 ROIs, epochs and connectivity on (NAME-epochs/-evoked/-connectivity checked)")
    ap.add_argument("--markers", action="store_true", help=argparse.SUPPRESS)  # internal: the producer sends markers
    ap.add_argument("--go", default="", help=argparse.SUPPRESS)  # internal: the producer starts when this file exists
    ap.add_argument("--artifacts", action="store_true", help="the loop repairs with ASR and the muscle ASR (0.5 Hz high-pass; values then not checked)")
    ap.add_argument("--produce", metavar="NAME", help=argparse.SUPPRESS)  # internal: run the producer
    ap.add_argument("--chunk", type=int, default=10, help=argparse.SUPPRESS)
    ap.add_argument("--block", help=argparse.SUPPRESS)  # internal: the producer's data
    args = ap.parse_args(argv)
    if args.produce:
        n = producer(args.produce, channel_names(args.channels), args.sfreq, args.minutes * 60.0, args.chunk, args.block, with_markers=args.markers, go_file=args.go)
        print(f"pushed {n}", flush=True)
        return
    report = soak(args.minutes, args.channels, args.sources, args.sfreq, args.interval, max_growth_mb=args.max_growth_mb, events=args.events, artifacts=args.artifacts)
    summary = {k: v for k, v in report.items() if k not in ("intervals", "loop_stdout_tail")}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if report["failures"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
