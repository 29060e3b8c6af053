"""The control stream against a real running loop: fuzzing, keys, replays, the floor, and
rebuild failures, over real LSL on loopback with real processes (issue 14)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pylsl
import pytest

from rtsource.anatomy.template import load_template, template_source_space
from rtsource.build import build_bundle
from rtsource.config import NoiseCovSettings, Settings, settings_from_dict
from rtsource.errors import InverseError, RtsourceError
from rtsource.forward.head_model import SphereHead, sphere_model_for_template
from rtsource.forward.leadfield import make_leadfield
from rtsource.sensors.montage import CAP_64, standard_montage
from rtsource.inverse.rebuild import BundleRebuilder
from rtsource.session import loop_options, operator_rebuilder
from rtsource.stream.control import send_commands
from rtsource.stream.control_auth import ensure_key, read_key, sign_command
from rtsource.stream.features import channel_floor
from rtsource.stream.inlet import StreamSelector
from rtsource.stream.loop import LoopOptions, StreamLoop
from rtsource.stream.outputs import CONTROL_SUFFIX, CONTROL_TYPE, EVENTS_SUFFIX, TELEMETRY_CHANNELS, TELEMETRY_SUFFIX

from .lsl_helpers import Collector, eeg_outlet, unique
from .test_reliability import wait_for

SFREQ = 500.0
LABELS = [label for label, _ in TELEMETRY_CHANNELS]


@pytest.fixture(scope="module")
def bundle_1k():
    """A real template operator that can be rebuilt: 64 channels, ~1k cortical sources."""
    s = dataclasses.replace(Settings(), noise_cov=NoiseCovSettings(source="ad_hoc"))
    sources = template_source_space("ico4")
    sources = sources.subset(np.arange(0, sources.n_sources, 5), name="fsaverage-ico4-1k")
    head = SphereHead(sphere_model_for_template(load_template(), s.forward.relative_radii, s.forward.conductivities))
    slf = make_leadfield(sources, standard_montage("standard_1005").pick(CAP_64), head, use_cache=False)
    return build_bundle(s, sfreq=SFREQ, leadfield=slf)


class Producer:
    """An EEG stream at its real pace, in a thread, until stopped."""

    def __init__(self, name: str):
        self.outlet = eeg_outlet(name, CAP_64, sfreq=SFREQ, source_id=name)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        rng = np.random.default_rng(0)
        t = 100.0
        while not self._stop.is_set():
            x = (rng.normal(size=(10, 64)) * 10).astype(np.float32)
            self.outlet.push_chunk(x, (t + np.arange(10) / SFREQ).tolist())
            t += 10 / SFREQ
            time.sleep(0.02)

    def stop(self):
        self._stop.set()
        self.thread.join(5)


def events_of(collector) -> list[dict]:
    data, _ = collector.data()
    return [json.loads(row[0]) for row in data] if len(data) else []


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def control_outlet(out_name: str, tag: str):
    info = pylsl.StreamInfo(out_name + CONTROL_SUFFIX, CONTROL_TYPE, 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, f"{out_name}-{tag}-{time.time_ns()}")
    outlet = pylsl.StreamOutlet(info)
    assert outlet.wait_for_consumers(20), "the loop did not listen on its control stream"
    return outlet


def refusals(events, reason: str) -> list[dict]:
    return [e for e in events if e["event"] == "command" and e.get("reason") == reason]


def fuzz_round(out_name: str, events) -> None:
    """Nested, huge, binary and invalid samples from one sender, a flood from another."""
    before = {r: len(refusals(events_of(events), r)) for r in ("too_large", "malformed", "rate_limited")}
    hostile = control_outlet(out_name, "hostile")
    hostile.push_sample(["[" * 200_000 + "]" * 200_000])  # the sample that killed the listener
    for _ in range(5):
        hostile.push_sample(["x" * (20 * 2**20)])  # 20 MB each
    hostile.push_sample([b"\xff\xfe\xfd binary \x00\x01" * 50])
    hostile.push_sample(['{"command": "mark_bad", "channel": "Cz"}'])  # the old, unsigned format
    flood = control_outlet(out_name, "flood")
    for i in range(2000):
        flood.push_sample([f"junk {i}"])
    expect = {"too_large": 6, "malformed": 2 + 20, "rate_limited": 1}  # 20: the flood's burst
    assert wait_for(lambda: all(len(refusals(events_of(events), r)) - before[r] >= n for r, n in expect.items()), 60), {
        r: len(refusals(events_of(events), r)) - before[r] for r in expect
    }
    time.sleep(1.0)  # let the rest of the flood arrive: still one rate_limited event
    got = {r: len(refusals(events_of(events), r)) - before[r] for r in expect}
    assert got == expect, got
    del hostile, flood


def mark(out_name: str, *args, key_file=None, good=False):
    cmd = [sys.executable, "-m", "rtsource.cli", "mark-bad", *args, "--output", out_name, "--timeout", "60"]
    cmd += ["--key-file", str(key_file)] if key_file else []
    cmd += ["--good"] if good else []
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def telemetry_value(telemetry, label: str) -> float:
    data, _ = telemetry.data()
    return float(data[-1][LABELS.index(label)])


def test_control_stream_survives_fuzzing_and_obeys_only_the_key(bundle_1k, tmp_path):
    from rtsource.bundle import save_bundle

    path = save_bundle(bundle_1k, tmp_path / "b.npz")
    key_file = tmp_path / "keys" / "loop.key"
    config = tmp_path / "run.toml"
    config.write_text(f'[badchannels]\ndetect = false  # white noise: every channel "uncorrelated"\nmin_channels = 62\n\n[control]\nkey_file = "{key_file}"\n')
    in_name, out_name = unique("ctl-eeg"), unique("ctl-src")
    producer = Producer(in_name)
    run = subprocess.Popen(
        [sys.executable, "-m", "rtsource.cli", "run", str(path), "--config", str(config), "--stream-name", in_name, "--outlet-name", out_name],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        events = Collector(out_name + EVENTS_SUFFIX, timeout=90)
        telemetry = Collector(out_name + TELEMETRY_SUFFIX, timeout=30)
        assert wait_for(lambda: telemetry.n_samples > 0 and telemetry_value(telemetry, "hot_swap_ready") == 1.0, 90)
        assert key_file.exists() and oct(key_file.stat().st_mode & 0o777) == "0o600"

        # fuzz four times: the first round lets the allocators settle, the others must not
        # grow the loop (without releasing liblsl's arenas it grew by ~60 MB every other round)
        rss = []
        for _ in range(4):
            fuzz_round(out_name, events)  # (which ends with 1 s for the rest of the flood)
            time.sleep(0.5)  # and the allocators settle
            rss.append(rss_kib(run.pid))
        print(f"loop RSS after each fuzz round: {[round(r / 1024, 1) for r in rss]} MB")
        growth = max(rss[1:]) - rss[0]
        assert growth < 5 * 1024, f"the loop grew by {growth / 1024:.1f} MB after the first fuzz round ({rss} KiB)"
        assert all(len(json.dumps(e)) < 1000 for e in events_of(events)), "an event echoed a payload"

        # the artifact stage's command, malformed or not, on a bundle without a calibration:
        # refused with the reason and the fix, and the loop runs on (issue 16)
        texts = ("60", "nan", "-1", "1e400", "15:asr", ":", "60:projection,regression")
        answers = send_commands(out_name, [("recalibrate_artifacts", t) for t in texts], key=read_key(key_file), answer_timeout_s=30, confirm_swap=False)
        assert all(not a.ok and a.reason == "refused" and "no artifact calibration" in a.message and "[artifacts] method" in a.message for a in answers), answers

        # after all that, the listener still obeys a signed command from another process
        done = mark(out_name, "Cz", key_file=key_file)
        assert done.returncode == 0, done.stderr
        assert "Cz: marked bad" in done.stdout

        def swapped():  # the answer comes when the command runs; the swap after the rebuild
            swaps = [e for e in events_of(events) if e["event"] == "operator_swap"]
            return bool(swaps) and swaps[-1]["bad_channels"] == ["Cz"]

        assert wait_for(swapped, 10)
        assert wait_for(lambda: telemetry_value(telemetry, "bad_channels") == 1.0, 10)

        # a stranger's key is refused, and the loop says why
        stranger = ensure_key(tmp_path / "stranger.key")
        refused = mark(out_name, "Fz", key_file=tmp_path / "stranger.key")
        assert refused.returncode == 1 and "Fz: unauthenticated" in refused.stderr, refused.stderr
        assert stranger != read_key(key_file)
        missing = mark(out_name, "Fz", key_file=tmp_path / "nothing-here.key")
        assert missing.returncode == 2 and "no control key" in missing.stderr

        # a recorded command plays once
        key = read_key(key_file)
        wire = sign_command(key, out_name, "mark_bad", "Fz", command_id="replay-me")
        replayer = control_outlet(out_name, "replayer")
        replayer.push_sample([wire])
        time.sleep(0.5)
        replayer.push_sample([wire])
        assert wait_for(lambda: len([e for e in events_of(events) if e["event"] == "command" and e.get("id") == "replay-me"]) == 2, 20)
        answers = [e for e in events_of(events) if e["event"] == "command" and e.get("id") == "replay-me"]
        assert answers[0]["ok"] is True and answers[1]["ok"] is False and answers[1]["reason"] == "replayed", [(a.get("ok"), a.get("reason"), a.get("error")) for a in answers]
        assert wait_for(lambda: telemetry_value(telemetry, "bad_channels") == 2.0, 20)

        # the floor: 62 channels left, one more is refused with a non-zero exit
        floor = mark(out_name, "Pz", key_file=key_file)
        assert floor.returncode == 1 and "Pz: refused" in floor.stderr and "min_channels = 62" in floor.stderr, floor.stderr
        time.sleep(1.0)
        assert telemetry_value(telemetry, "bad_channels") == 2.0
        assert telemetry_value(telemetry, "commands_refused") >= 2 * 23 + 2

        # and taking a channel back works
        back = mark(out_name, "Cz", key_file=key_file, good=True)
        assert back.returncode == 0, back.stderr
        assert wait_for(lambda: telemetry_value(telemetry, "bad_channels") == 1.0, 10)
        run.send_signal(signal.SIGTERM)
        stdout, stderr = run.communicate(timeout=60)
    finally:
        producer.stop()
        if run.poll() is None:
            run.kill()
    events.stop()
    telemetry.stop()
    assert run.returncode == 0, stderr
    assert len(stdout) < 20_000, f"the run's summary printed {len(stdout)} characters"


def test_mark_bad_with_no_setup_uses_the_loops_default_key(bundle_1k, tmp_path):
    """`rtsource run` creates the key per output name; `rtsource mark-bad` finds it."""
    in_name, out_name = unique("ctl2-eeg"), unique("ctl2-src")
    producer = Producer(in_name)
    loop = StreamLoop(bundle_1k, LoopOptions(selector=StreamSelector(in_name), output_name=out_name, resolve_timeout=20), rebuilder=operator_rebuilder())
    loop.connect()
    thread = loop.run_in_thread()
    try:
        done = mark(out_name, "O1")  # no --key-file: $RTSOURCE_CONTROL_DIR/<output>.key
        assert done.returncode == 0, done.stderr
        assert loop.stats.bad_channels == 1
    finally:
        loop.stop()
        thread.join(10)
        loop.close()
        producer.stop()
    assert os.listdir(os.environ["RTSOURCE_CONTROL_DIR"]), "the key lives in the test's folder"


class FailingWithoutT7(BundleRebuilder):
    """The offline rebuild, except that dropping T7 fails (as a singular operator would)."""

    def without_channels(self, bundle, channels, **kwargs):
        if "T7" in channels:
            raise InverseError(f"forced failure without {sorted(channels)}")
        return super().without_channels(bundle, channels, **kwargs)


def test_rebuild_failure_reaches_events_and_telemetry(bundle_1k, tmp_path):
    in_name, out_name = unique("rf-eeg"), unique("rf-src")
    producer = Producer(in_name)
    key_file = tmp_path / "k.key"
    loop = StreamLoop(
        bundle_1k,
        LoopOptions(selector=StreamSelector(in_name), output_name=out_name, resolve_timeout=20, control_key_file=str(key_file)),
        rebuilder=FailingWithoutT7(),
    )
    loop.connect()
    thread = loop.run_in_thread()
    events = Collector(out_name + EVENTS_SUFFIX)
    telemetry = Collector(out_name + TELEMETRY_SUFFIX)
    try:
        (answer,) = send_commands(out_name, [("mark_bad", "T7")], key=read_key(key_file), answer_timeout_s=60)
        assert not answer.ok and answer.reason == "rebuild_failed" and "forced failure" in answer.message
        assert wait_for(lambda: any(e["event"] == "rebuild_failed" for e in events_of(events)), 10)
        failed = [e for e in events_of(events) if e["event"] == "rebuild_failed"]
        assert len(failed) == 1 and failed[0]["bad_channels"] == ["T7"] and "InverseError" in failed[0]["error"]
        assert wait_for(lambda: telemetry.n_samples and telemetry_value(telemetry, "rebuild_failures") == 1.0, 10)
        assert telemetry_value(telemetry, "bad_channels") == 0.0, "telemetry follows the operator in use, not the request"
        assert loop.features.bad_channels == ()
        # the loop goes on: the next channel is swapped out as usual (T7 is not requested again)
        (answer,) = send_commands(out_name, [("mark_bad", "O2")], key=read_key(key_file), answer_timeout_s=60)
        assert answer.ok, answer
        assert wait_for(lambda: telemetry_value(telemetry, "bad_channels") == 1.0, 10)
        assert loop.operator.bundle.ch_names == tuple(c for c in CAP_64 if c != "O2")
    finally:
        loop.stop()
        thread.join(10)
        loop.close()
        producer.stop()
        events.stop()
        telemetry.stop()


def test_control_can_be_turned_off(bundle_1k, tmp_path):
    settings = settings_from_dict({"control": {"enabled": False, "key_file": "k.key"}}, base_dir=str(tmp_path))
    opts = loop_options(settings, "", selector=None)
    assert opts.control is False and opts.control_key_file == str(tmp_path / "k.key")
    in_name, out_name = unique("off-eeg"), unique("off-src")
    producer = Producer(in_name)
    loop = StreamLoop(bundle_1k, dataclasses.replace(opts, selector=StreamSelector(in_name), output_name=out_name, resolve_timeout=20))
    loop.connect()
    thread = loop.run_in_thread()
    try:
        assert loop.control is None and not (tmp_path / "k.key").exists()
        with pytest.raises(RtsourceError, match="no rtsource loop listened"):
            send_commands(out_name, [("mark_bad", "Cz")], key=b"0" * 32, wait_s=2.0)
    finally:
        loop.stop()
        thread.join(10)
        loop.close()
        producer.stop()


def test_floor_defaults_and_config_validation():
    assert channel_floor(64) == 32 and channel_floor(20) == 16 and channel_floor(8) == 8 and channel_floor(306) == 153
    assert channel_floor(64, 60) == 60 and channel_floor(64, 100) == 64
    from rtsource.errors import ConfigError

    with pytest.raises(ConfigError, match="min_channels = -1"):
        settings_from_dict({"badchannels": {"min_channels": -1}})
    with pytest.raises(ConfigError, match="enabled"):
        settings_from_dict({"control": {"enabled": "no"}})
    with pytest.raises(ConfigError, match="unknown key"):
        settings_from_dict({"control": {"secret": "x"}})


def test_mark_bad_without_a_loop_fails_with_a_message(tmp_path):
    ensure_key(tmp_path / "k.key")
    out = subprocess.run(
        [sys.executable, "-m", "rtsource.cli", "mark-bad", "Cz", "--output", unique("nobody"), "--wait", "1", "--key-file", str(tmp_path / "k.key")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and "no rtsource loop publishes" in out.stderr and "--output" in out.stderr


def test_detector_cannot_swap_below_the_floor(bundle_1k):
    """Independent white noise on every channel looks 'uncorrelated' to the detector, which
    flags all 64: with auto_swap the floor refuses the swap, once, and the operator stays."""
    from rtsource.session import feature_options

    settings = settings_from_dict({"badchannels": {"auto_swap": True}})
    in_name, out_name = unique("fl-eeg"), unique("fl-src")
    producer = Producer(in_name)
    loop = StreamLoop(
        bundle_1k, LoopOptions(selector=StreamSelector(in_name), output_name=out_name, resolve_timeout=20, control=False), features=feature_options(settings, bundle_1k),
        rebuilder=operator_rebuilder(),
    )
    loop.connect()
    thread = loop.run_in_thread()
    try:
        assert wait_for(lambda: any(e["event"] == "swap_refused" for e in loop.events.recent), 60)
        time.sleep(3.0)
    finally:
        loop.stop()
        thread.join(10)
        loop.close()
        producer.stop()
    refused = [e for e in loop.events.recent if e["event"] == "swap_refused"]
    flagged = {e["channel"] for e in loop.events.recent if e["event"] == "bad_channel"}
    assert len(flagged) > 32 and len(refused) <= len({frozenset(e["bad_channels"]) for e in refused})
    assert "min_channels = 32" in refused[0]["error"]
    # (if the detector flagged them in steps, the steps above the floor were swapped)
    assert loop.operator.bundle.n_channels >= 32
    assert loop.stats.bad_channels == 64 - loop.operator.bundle.n_channels
