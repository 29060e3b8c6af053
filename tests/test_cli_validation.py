"""Command-line options go through the same validation as their config keys; no input gives a
raw traceback or a crash (rtsource.cli, rtsource.config.apply_overrides).

The fuzz tests run the real entry point (``rtsource.cli.main``) in this process with inputs
that fail fast once the options are accepted (a bundle or electrode file that does not
exist), so every example ends in one clear line. The signal tests run ``rtsource run`` as a
real subprocess against real LSL streams.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtsource.cli import build_parser, main
from rtsource.config import Settings, apply_overrides
from rtsource.errors import ConfigError, RtsourceError

from .conftest import make_bundle


@pytest.mark.parametrize(
    "argv,fragments",
    [
        (["--max-chunk", "0"], ["--max-chunk", "[stream] max_chunk", "0", "1..65536"]),
        (["--max-chunk", "-5"], ["--max-chunk", "[stream] max_chunk", "-5", "1..65536"]),
        (["--threads", "-1"], ["--threads", "[performance] threads", "-1", "0..256"]),
        (["--resolve-timeout", "1e308"], ["--resolve-timeout", "[stream] resolve_timeout", "at most"]),
        (["--resolve-timeout", "nan"], ["--resolve-timeout", "finite"]),
        (["--assume-unit", "furlong"], ["assume_unit", "furlong"]),
        (["--stream-name", "x", "--max-chunk", "70000"], ["--max-chunk", "70000"]),
    ],
)
def test_run_options_are_validated_like_the_config(tmp_path, capsys, argv, fragments):
    rc = main(["run", str(tmp_path / "missing.npz"), *argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("rtsource run: error: ") and err.count("\n") == 1, err
    for f in fragments:
        assert f in err, f"{f!r} not in {err!r}"
    assert "does not exist" not in err  # refused before anything else is done


def test_options_of_other_commands(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[sensors]\nmontage = "standard_1005"\n')
    assert main(["setup", str(cfg), "--sfreq", "-3"]) == 2
    assert "--sfreq: [stream] sfreq = -3.0" in capsys.readouterr().err
    assert main(["coreg", str(tmp_path / "e.tsv"), "--max-rms-mm", "0"]) == 2
    assert "--max-rms-mm: [coreg] max_rms_mm = 0.0" in capsys.readouterr().err
    args = build_parser().parse_args(["simulate", "--chunk-size", "0"])
    with pytest.raises(ConfigError, match=r"--chunk-size: \[simulate\] chunk_size = 0"):
        __import__("rtsource.cli").cli._with_options(Settings(), args)
    for argv in (["run", "x.npz", "--duration", "nan"], ["run", "x.npz", "--idle-timeout", "-1"], ["mark-bad", "Cz", "--wait", "inf"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert "give a number of seconds > 0" in capsys.readouterr().err


def test_overrides_name_option_key_and_value():
    s = apply_overrides(Settings(), {"stream.max_chunk": 64, "performance.threads": None}, labels={"stream.max_chunk": "--max-chunk"})
    assert s.stream.max_chunk == 64 and s.performance.threads == 0
    with pytest.raises(ConfigError, match=r"--max-chunk: \[stream\] max_chunk = 0: must be in 1..65536"):
        apply_overrides(Settings(), {"stream.max_chunk": 0}, labels={"stream.max_chunk": "--max-chunk"})
    with pytest.raises(ConfigError, match=r"\[sensors\] channels: need at least 3"):  # cross-checks run too
        apply_overrides(Settings(), {"sensors.channels": ["Cz"]})
    with pytest.raises(ConfigError, match="no key 'nope'"):
        apply_overrides(Settings(), {"stream.nope": 1})


# ---- fuzz: every option of every command, values a user (or a script) might pass ----------

_NUMBERS = st.sampled_from(["0", "-1", "-5", "1", "1e-300", "1e308", "-1e308", "nan", "inf", "-inf", "1e6", "65536", "65537", "2.5", "1e9", str(2**64), "0x10", "", " ", "abc", "1,5"])
_VALUES = _NUMBERS | st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)

_RUN_OPTIONS = ["--stream-name", "--stream-type", "--source-id", "--outlet-name", "--duration", "--idle-timeout", "--resolve-timeout", "--max-chunk", "--assume-unit", "--threads"]
_SETUP_OPTIONS = ["--sfreq", "--stream-name", "--source-id"]
_COREG_OPTIONS = ["--max-rms-mm", "--unit", "--frame", "--method"]
_REPLAY_OPTIONS = ["--rate-scale", "--chunk-ms", "--duration", "--wait", "--stream", "--reader", "--name", "--type", "--source-id"]
_OFFLINE_OPTIONS = {  # parsed and validated exactly as the command does, without running it
    "simulate": ["--sfreq", "--chunk-size", "--seed", "--baseline", "--name", "--source-id", "--modality", "--duration"],
    "demo": ["--duration", "--calibration", "--modality", "--method"],
}


def _one_clear_line(err: str, command: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "no message"
    assert lines[-1].startswith(f"rtsource {command}: error: "), err


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_command_line(tmp_path_factory, data):
    tmp = tmp_path_factory.getbasetemp()
    command = data.draw(st.sampled_from(["run", "setup", "coreg", "replay", "simulate", "demo"]))
    table = {"run": _RUN_OPTIONS, "setup": _SETUP_OPTIONS, "coreg": _COREG_OPTIONS, "replay": _REPLAY_OPTIONS}
    pairs = data.draw(st.lists(st.tuples(st.sampled_from(table.get(command) or _OFFLINE_OPTIONS[command]), _VALUES), min_size=1, max_size=3))
    options = [f"{opt}={value}" for opt, value in pairs]  # "=" so values starting with "-" stay values
    if command in _OFFLINE_OPTIONS:
        import io
        from contextlib import redirect_stderr

        from rtsource.cli import _with_options

        buf = io.StringIO()
        try:
            with redirect_stderr(buf):
                args = build_parser().parse_args([command, *options])
        except SystemExit as exc:
            assert exc.code == 2 and "Traceback" not in buf.getvalue()
            return
        try:
            _with_options(Settings(), args)
        except ConfigError as exc:
            assert any(opt in str(exc) for opt, _ in pairs), str(exc)
        return
    if command == "run":
        argv = ["run", str(tmp / "missing-bundle.npz"), *options]
    elif command == "setup":
        cfg = tmp / "fuzz-setup.toml"
        cfg.write_text('[sensors]\nmontage = "missing-electrodes.tsv"\n')  # fails fast once the options pass
        argv = ["setup", str(cfg), *options]
    else:  # coreg, replay: a file that does not exist, refused once the options pass
        argv = [command, str(tmp / ("missing-electrodes.tsv" if command == "coreg" else "missing-recording.xdf")), *options]
    import io
    from contextlib import redirect_stderr, redirect_stdout

    err, out = io.StringIO(), io.StringIO()
    try:
        with redirect_stderr(err), redirect_stdout(out):
            rc = main(argv)
    except SystemExit as exc:  # argparse refuses a value of the wrong type: usage and one line
        assert exc.code == 2 and "Traceback" not in err.getvalue()
        assert f"rtsource {command}: error: argument" in err.getvalue()
        return
    assert rc == 2
    _one_clear_line(err.getvalue(), command)


# ---- config values: the same values through the file path and the override path -----------

def _keys():
    import dataclasses
    import typing

    hints = typing.get_type_hints(Settings)
    out = []
    for f in dataclasses.fields(Settings):
        cls = hints.get(f.name)
        if f.name == "base_dir" or typing.get_origin(cls) is tuple:
            continue
        out += [f"{f.name}.{g.name}" for g in dataclasses.fields(cls)]
    return out


_CONFIG_VALUES = (
    st.booleans()
    | st.integers()
    | st.sampled_from([0, -1, 2**63, 10**9, 1e-300, 1e308, -1e308, 1e6, float("nan"), float("inf"), 0.5])
    | st.floats()
    | st.text(max_size=8)
    | st.lists(st.integers() | st.floats() | st.text(max_size=3), max_size=4)
)


@settings(max_examples=400, deadline=None)
@given(key=st.sampled_from(_keys()), value=_CONFIG_VALUES)
def test_fuzz_config_values_through_overrides(key, value):
    """Any value for any key: accepted, or a ConfigError that names the key and the option."""
    section, name = key.split(".")
    try:
        s = apply_overrides(Settings(), {key: value}, labels={key: "--opt"})
    except ConfigError as exc:
        msg = str(exc)
        assert "--opt" in msg or f"[{section}]" in msg, msg
        return
    assert getattr(getattr(s, section), name) is not None


def test_extreme_inverse_values_are_refused_or_work():
    """snr = 1e-300 (ZeroDivisionError before) is refused; the allowed extremes build an operator."""
    from rtsource.config import InverseSettings
    from rtsource.inverse.covariance import NoiseCovariance
    from rtsource.inverse.make import make_operator

    for bad in (1e-300, 0.0, 1e300):
        with pytest.raises(ConfigError, match="snr"):
            apply_overrides(Settings(), {"inverse.snr": bad})
    rng = np.random.default_rng(1)
    n_chan, n_src = 16, 40
    gain = rng.normal(size=(n_chan, 3 * n_src)) * 1e-7
    normals = rng.normal(size=(n_src, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    names = tuple(f"E{i}" for i in range(n_chan))
    cov = NoiseCovariance(np.eye(n_chan) * 1e-12, names, 1000, "empirical", 0.0)
    for snr in (0.01, 1000.0):
        for depth in (0.0, 10.0):
            s = Settings(inverse=InverseSettings(snr=snr, depth=depth))
            try:
                op = make_operator(s.inverse.params(), gain, normals, cov, reference="average", ch_names=names, ch_types=("eeg",) * n_chan)
            except RtsourceError:
                continue
            assert np.all(np.isfinite(op.kernel)), (snr, depth)


def test_noise_seconds_and_simulator_sizes_are_bounded(tmp_path):
    from rtsource.config import load_config

    for text, fragment in (
        ("[noise_cov]\nseconds = 1e308\n", "[noise_cov].seconds = 1e+308: must be at most 600 s"),
        ("[noise_cov]\nseconds = 1e6\n", "must be at most 600 s"),
        ("[data_cov]\nseconds = 1e6\n", "[data_cov].seconds"),
        ("[simulate]\nn_noise_sources = 1000000000\n", "[simulate].n_noise_sources = 1000000000"),
        ("[simulate]\nseed = -1\n", "[simulate].seed = -1"),
        ("[inverse]\nsnr = 1e-300\n", "[inverse].snr = 1e-300"),
    ):
        p = tmp_path / "c.toml"
        p.write_text(text)
        with pytest.raises(ConfigError) as exc:
            load_config(p)
        assert fragment in str(exc.value), str(exc.value)


def test_simulator_refuses_more_noise_sources_than_positions():
    from rtsource.config import SimulateSettings
    from rtsource.simulator import Simulator

    s = Settings(simulate=SimulateSettings(spacing="ico4", n_noise_sources=19000))
    with pytest.raises(ConfigError, match=r"n_noise_sources = 19000: .* has \d+ usable positions"):
        Simulator.from_settings(s)


# ---- real processes: --max-chunk 0 on a live stream, signals while resolving and running -----

def _run_cmd(bundle_path, *extra):
    return [sys.executable, "-m", "rtsource.cli", "run", str(bundle_path), *extra]


@pytest.fixture(scope="module")
def bundle_file(tmp_path_factory):
    from rtsource.bundle import save_bundle

    return save_bundle(make_bundle(n_chan=8, n_src=20, ch_names=[f"E{i:02d}" for i in range(8)]), tmp_path_factory.mktemp("cli") / "b.npz")


def test_max_chunk_zero_on_a_live_stream_is_a_message_not_a_segfault(bundle_file):
    from .stream.lsl_helpers import eeg_outlet, unique

    name = unique("cli-maxchunk")
    outlet = eeg_outlet(name, [f"E{i:02d}" for i in range(8)])
    outlet.push_chunk(np.zeros((50, 8), dtype=np.float32))
    proc = subprocess.run(_run_cmd(bundle_file, "--stream-name", name, "--max-chunk", "0", "--duration", "2"), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "--max-chunk: [stream] max_chunk = 0: must be in 1..65536" in proc.stderr


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_while_resolving_is_one_line(bundle_file, sig, code):
    from .stream.lsl_helpers import unique

    import os

    # A suite started as a background job of a non-interactive shell (`pytest &`) runs with
    # SIGINT ignored, and an ignored signal stays ignored in every child: the child would
    # then never see the Ctrl-C (seen 2026-12-03). A Python handler is reset to the
    # default on exec, so installing one here gives the child Ctrl-C as a terminal would.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    # faulthandler: if the signal is ever lost, SIGABRT below prints the child's stacks
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    inherited = (signal.getsignal(sig), signal.pthread_sigmask(signal.SIG_BLOCK, []))  # what the child inherits
    try:
        proc = subprocess.Popen(_run_cmd(bundle_file, "--stream-name", unique("nobody"), "--resolve-timeout", "60"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        assert proc.stdout.readline().startswith("bundle: ")  # loaded; now resolving
        time.sleep(1.0)
        t0 = time.monotonic()
        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate(timeout=10)
            pytest.fail(f"{sig!r} did not end the run in 30 s (parent's handler and blocked signals: {inherited}); child's stdout {out!r}, stderr:\n{err}")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - t0 < 10, "the signal waited for the resolve timeout"
    assert proc.returncode == code, err
    assert err == f"rtsource run: interrupted by {signal.Signals(sig).name}\n"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_a_run_publishes_stopped(bundle_file, sig):
    from rtsource.stream.outputs import EVENTS_SUFFIX

    from .stream.lsl_helpers import Collector, eeg_outlet, unique

    in_name, out_name = unique("cli-sig-in"), unique("cli-sig-out")
    outlet = eeg_outlet(in_name, [f"E{i:02d}" for i in range(8)])
    proc = subprocess.Popen(_run_cmd(bundle_file, "--stream-name", in_name, "--outlet-name", out_name, "--resolve-timeout", "30"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        events = Collector(out_name + EVENTS_SUFFIX, timeout=60)
        assert outlet.wait_for_consumers(timeout=30)
        rng = np.random.default_rng(0)
        for _ in range(50):
            outlet.push_chunk((rng.normal(size=(10, 8)) * 10).astype(np.float32))
            time.sleep(0.02)
        time.sleep(0.5)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        time.sleep(0.5)
        events.stop()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "\nloop:" in out  # the summary
    data, _ = events.data()
    kinds = [json.loads(row[0])["event"] for row in data]
    assert "started" in kinds and kinds[-1] == "stopped", kinds


# ---- kernel wrappers: a chunk the buffers cannot hold is refused before any kernel runs ------

def test_stream_operator_checks_n_and_shapes():
    from rtsource.errors import StreamError
    from rtsource.stream.channels import ChannelMap
    from rtsource.stream.operator import FilterSpec, StreamOperator

    b = make_bundle(n_chan=8, n_src=20)
    cmap = ChannelMap(np.arange(8), np.ones(8), ("V",) * 8, (), False)
    for bad in (0, -5, 2.0, True):
        with pytest.raises(ConfigError, match="max_chunk"):
            StreamOperator(b, cmap, max_chunk=bad)
    op = StreamOperator(b, cmap, max_chunk=16, filter_spec=FilterSpec(highpass_hz=1.0))
    x = np.zeros((64, 8), np.float32)
    with pytest.raises(StreamError, match=r"n = 17 rows, but the buffers hold 0..16"):
        op.process(x, 17)  # a write past the 16-row buffers before
    with pytest.raises(StreamError, match="n = -1"):
        op.process(x, -1)
    with pytest.raises(StreamError, match=r"shape \(4, 8\); 10 rows"):
        op.process(x[:4], 10)
    with pytest.raises(StreamError, match="at least 8 columns"):
        op.process(x[:, :5], 4)
    with pytest.raises(StreamError, match="2-D numeric"):
        op.process(x.astype(object), 4)
    with pytest.raises(StreamError, match="n = 17"):
        op.restart_filter_at(x, 17)
    assert op.process(x, 0).shape == (0, 20)
    assert op.process(x, 16).shape == (16, 20)


def test_roi_and_bandpower_stages_check_n_and_shapes():
    from rtsource.errors import StreamError
    from rtsource.inverse.roi import roi_from_hemisphere
    from rtsource.roi_operator import RoiOperator
    from rtsource.stream.bandpower import BandPowerSpec, BandPowerStage
    from rtsource.stream.roi import RoiStage

    b = make_bundle(n_chan=8, n_src=20)
    op = RoiOperator.from_bundle(b, [roi_from_hemisphere(b.sources, "lh")], "mean_flip")
    stage = RoiStage(op, 16)
    x = np.zeros((32, 8), np.float32)
    with pytest.raises(StreamError, match="ROI stage: n = 17"):
        stage.process(x, 17)
    with pytest.raises(StreamError, match="at least 8 columns"):
        stage.process(x[:, :3], 2)
    with pytest.raises(ConfigError, match="max_chunk"):
        RoiStage(op, 0)
    bp = BandPowerStage(BandPowerSpec(), ["lh"], 500.0, 16)
    roi = np.zeros((32, 1), np.float32)
    with pytest.raises(StreamError, match="band-power stage: n = 17"):
        bp.process(roi, np.zeros(32), 17)
    with pytest.raises(StreamError, match="timestamps"):
        bp.process(roi, np.zeros(3), 10)
    with pytest.raises(ConfigError, match="max_chunk"):
        BandPowerStage(BandPowerSpec(), ["lh"], 500.0, 0)


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["--window", "nan"], "window = nan (--window)"),
        (["--average-ms", "-1"], "average_ms = -1.0 (--average-ms)"),
        (["--max-fps", "inf"], "max_fps = inf (--max-fps)"),
        (["--duration", "nan"], "duration = nan (--duration)"),  # int(nan * 1000) raised ValueError
        (["--size", "99999x99999"], "too large"),
        (["--vmin=-inf", "--vmax", "1"], "vmin = -inf (--vmin)"),
    ],
)
def test_view_numbers_are_checked_before_any_window(capsys, argv, fragment):
    pytest.importorskip("pyqtgraph")
    from rtsource.display import gui_binding

    if gui_binding() is None:
        pytest.skip("no Qt binding")
    assert main(["view", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rtsource view: error: ") and fragment in err, err


_RUNTIME_SECTIONS = ("stream", "preprocess", "performance", "rois", "bandpower", "badchannels", "adaptive", "output")


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_fuzz_accepted_values_reach_the_loop_cleanly(data):
    """Values the validation accepts must not crash what the loop builds from them."""
    from rtsource.session import feature_options, loop_options
    from rtsource.stream.operator import FilterSpec

    keys = [k for k in _keys() if k.split(".")[0] in _RUNTIME_SECTIONS]
    chosen = data.draw(st.dictionaries(st.sampled_from(keys), _CONFIG_VALUES | st.floats(0, 1e4) | st.integers(0, 10**5), max_size=4))
    try:
        s = apply_overrides(Settings(), chosen)
    except ConfigError:
        return
    try:
        opts = loop_options(s, "b.npz")
        FilterSpec(s.preprocess.highpass_hz, s.preprocess.lowpass_hz, s.preprocess.order).design(500.0) if opts.filter.active else None
        feature_options(s, make_bundle(n_chan=8, n_src=20))
    except RtsourceError:
        pass


def test_capture_length_is_bounded_before_resolving():
    """[noise_cov] seconds = 1e6 tried to allocate 238 GiB; 1e308 overflowed. Through the API
    too, the capture refuses before looking for a stream."""
    from rtsource.stream.calibration import capture_calibration
    from rtsource.stream.inlet import StreamSelector

    for seconds in (1e6, 1e308, float("nan"), 0.0, -1.0):
        with pytest.raises(ConfigError, match="at most 600"):
            capture_calibration(StreamSelector("nobody-at-all"), ("Cz",), seconds, resolve_timeout=30.0)
