"""Command line: ``rtsource setup | run | simulate | demo | coreg | replay | view | mark-bad | recalibrate | bench``.

    rtsource setup CONFIG.toml            build the operator bundle the config describes
    rtsource run CONFIG.toml|BUNDLE.npz   stream: LSL in -> sources out, until stopped
    rtsource simulate [--config C]        publish a simulated EEG/MEG stream on LSL
    rtsource demo                         all of the above on the template head, with a summary
    rtsource bench [kernels|hotswap|...]  speed against baselines measured in the same run
    rtsource coreg FILE                   align electrode positions to the template, QC picture
    rtsource replay FILE                  play a recording (XDF, EDF/BDF, BrainVision, FIF) on LSL
    rtsource view [NAME]                  live display of a running loop's outputs (rtsource[gui])
    rtsource mark-bad CH [--good]         rebuild a running loop's operator without (with) channels;
                                          exit 1 if the loop refuses (see its answer), 2 if none answers
    rtsource recalibrate [--seconds 60]   recalibrate a running loop's artifact correction live

Each command is a thin layer over the public API (``import rtsource``, docs/api.md):
argparse lives only here, and the library takes plain typed parameters. Errors that
rtsource raises for bad input are printed as one clear line (exit code 2); anything else is
a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from . import __version__
from .errors import RtsourceError

logger = logging.getLogger("rtsource")


def _settings(path: str | None):
    from .config import Settings, load_config

    return load_config(path) if path else Settings()


#: Options that override a config key, per command: argparse dest -> (config key, option).
#: They go through the config's own validation (rtsource.config.apply_overrides).
_CONFIG_OPTIONS = {
    "setup": {
        "sfreq": ("stream.sfreq", "--sfreq"), "stream_name": ("stream.name", "--stream-name"), "source_id": ("stream.source_id", "--source-id"),
        "recording": ("recording.file", "--recording"), "positions": ("recording.positions", "--positions"),
    },
    "run": {
        "stream_name": ("stream.name", "--stream-name"), "stream_type": ("stream.type", "--stream-type"),
        "source_id": ("stream.source_id", "--source-id"), "outlet_name": ("output.name", "--outlet-name"),
        "resolve_timeout": ("stream.resolve_timeout", "--resolve-timeout"), "max_chunk": ("stream.max_chunk", "--max-chunk"),
        "assume_unit": ("stream.assume_unit", "--assume-unit"), "latest_only": ("stream.latest_only", "--latest-only"),
        "threads": ("performance.threads", "--threads"),
    },
    "simulate": {
        "sfreq": ("simulate.sfreq", "--sfreq"), "chunk_size": ("simulate.chunk_size", "--chunk-size"), "seed": ("simulate.seed", "--seed"),
        "baseline_seconds": ("simulate.baseline_seconds", "--baseline"), "stream_name": ("simulate.stream_name", "--name"),
        "source_id": ("simulate.source_id", "--source-id"), "modality": ("sensors.modality", "--modality"),
        "artifacts": ("simulate.artifacts", "--artifacts"),
    },
    "demo": {"modality": ("sensors.modality", "--modality"), "method": ("inverse.method", "--method")},
    "coreg": {"max_rms_mm": ("coreg.max_rms_mm", "--max-rms-mm")},
}


def _with_options(settings, args):
    """The settings with the command's options applied, validated like the config file."""
    from .config import apply_overrides

    table = _CONFIG_OPTIONS.get(args.command, {})
    return apply_overrides(
        settings,
        {key: getattr(args, dest, None) for dest, (key, _) in table.items()},
        labels={key: option for key, option in table.values()},
    )


def _seconds(text: str) -> float:
    """argparse type of durations and timeouts that are not config keys: finite, > 0, at most a year."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3.2e7:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds > 0 (at most a year)")
    return value


# ---- setup ------------------------------------------------------------------------------

def cmd_setup(args) -> int:
    from .pipeline.setup import setup

    for dest in ("recording", "positions"):  # paths given on the command line are relative to here, not the config
        if getattr(args, dest, None):
            setattr(args, dest, str(Path(getattr(args, dest)).expanduser().resolve()))
    settings = _with_options(_settings(args.config), args)
    out = Path(args.out) if args.out else settings.resolve_path(settings.bundle.path)
    stream = None
    if args.stream_name or args.source_id:
        from .stream.inlet import StreamSelector

        st = settings.stream  # the options are in the settings now
        stream = StreamSelector(st.name, st.type, st.source_id)
    bundle = setup(
        settings, out=out, sfreq=settings.stream.sfreq or None, calibration=args.calibration, data_calibration=args.data_calibration, stream=stream,
        progress=lambda m: print(m, flush=True),
    )  # fmt: skip
    print(f"bundle: {bundle.describe()}")
    return 0


# ---- run --------------------------------------------------------------------------------

def cmd_run(args) -> int:
    from .pipeline.run import open_loop

    toml = Path(args.target).suffix == ".toml"
    settings = _with_options(_settings(args.target if toml else args.config), args)  # the options, validated like the config
    loop = open_loop(
        settings if toml else args.target,
        config=settings,
        bundle=args.bundle if toml else None,
        source=args.source,
        idle_timeout=args.idle_timeout,
    )
    bundle = loop.bundle
    print(f"bundle: {bundle.describe()}")
    loop.connect()  # Ctrl-C or SIGTERM while the stream is resolved: see main()
    desc = loop.inlet.description
    print(f"input:  {desc.label()}; {loop.channel_map.summary()}")
    print(f"output: {loop.options.output_name!r} ({bundle.n_sources} channels, {bundle.output_unit or 'dimensionless'})", flush=True)
    _stop_on_signals(loop.stop)
    try:
        stats = loop.run(duration=args.duration)
    except KeyboardInterrupt:
        stats = loop.stats
    finally:
        loop.close()
    _print_table("loop", stats.summary())
    stage = getattr(loop.features, "event_stage", None)
    if stage is not None:  # markers in, epochs out, drops by reason, connectivity rows
        _print_table("events", stage.summary())
    if loop.error is not None:
        raise loop.error if isinstance(loop.error, RtsourceError) else RtsourceError(str(loop.error))
    notable = [e for e in loop.events.recent if e["event"] not in ("started", "stopped")]
    if notable:
        print(f"\nevents ({len(notable)}; also published on {loop.options.output_name + '-events'!r}):")
        for e in notable[-20:]:
            print("  " + ", ".join(f"{k}={v}" for k, v in e.items()))
    return 0


# ---- simulate ---------------------------------------------------------------------------

def cmd_simulate(args) -> int:
    from .simulator import Simulator

    settings = _with_options(_settings(args.config), args)
    sim = Simulator.from_settings(settings)
    s = settings.simulate
    print(
        f"simulating {sim.generator.n_channels} {settings.sensors.modality.upper()} channels at {s.sfreq:g} Hz on LSL stream "
        f"{s.stream_name!r} (source_id {s.source_id!r}), unit {s.unit}; Ctrl-C to stop",
        flush=True,
    )
    for j, d in enumerate(sim.generator.dipoles):
        print(f"  source {j}: {d.frequency_hz:g} Hz, {d.amplitude_am * 1e9:g} nAm at {(d.position_m * 1e3).round(1).tolist()} mm", flush=True)
    for e in s.evoked:
        print(f"  evoked source: {e.amplitude_nam:g} nAm at {list(e.position_mm)} mm, {e.latency_s * 1e3:g} ms after each {e.event!r} marker", flush=True)
    for c in s.coupled:
        print(f"  coupled pair: {list(c.position_a_mm)} -> {list(c.position_b_mm)} mm, {c.frequency_hz:g} Hz, lag {c.lag_deg:g} deg, coupling {c.coupling:g}", flush=True)
    if sim.markers is not None:
        print(f"  markers on {s.stream_name + '-markers'!r} every {s.event_interval_s:g} s (+ up to {s.event_jitter_s:g} s)", flush=True)
    _stop_on_signals(sim.stop)
    try:
        n = sim.run(duration=args.duration)
    except KeyboardInterrupt:
        n = sim.samples_pushed
    print(f"pushed {n} samples")
    return 0


# ---- demo -------------------------------------------------------------------------------

def cmd_demo(args) -> int:
    from .cache import cache_dir
    from .pipeline.demo import run_demo

    settings = _with_options(_settings(args.config), args)
    bundle_path = Path(args.bundle) if args.bundle else cache_dir() / "demo_bundle.npz"
    summary = run_demo(
        settings,
        config_path=args.config,
        duration=args.duration,
        calibration_seconds=args.calibration,
        bundle_path=bundle_path,
        progress=lambda msg: print(f"[demo] {msg}", flush=True),
        gui=args.gui,
    )
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"\nbundle: {summary['bundle']}")
    _print_table("loop", summary["loop"])
    _print_table("consumer", summary["consumer"])
    loc = summary["localisation"]
    print("\nlocalisation (template frame, mm):")
    for j, row in enumerate(loc["per_source"]):
        print(f"  source {j} ({row['rhythm_hz']:g} Hz): simulated at {row['true_mm']}, found at {row['found_mm']}: error {row['error_mm']} mm")
    if "strongest" in loc:
        st = loc["strongest"]
        print(f"  strongest output at {st['found_mm']}, nearest simulated source {st['nearest_true_mm']}: {st['error_mm']} mm")
    return 0


def _stop_on_signals(stop) -> None:
    """Ctrl-C and SIGTERM (a supervisor, `kill`) end the run cleanly: the loop finishes its
    chunk, publishes `stopped` and prints the summary. A second Ctrl-C interrupts at once."""
    import signal
    import threading

    def handler(signum, frame):
        if signum == signal.SIGINT and getattr(handler, "stopping", False):
            raise KeyboardInterrupt
        handler.stopping = True
        stop()

    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def cmd_coreg(args) -> int:
    from .config import Settings, load_config
    from .coreg import run_coreg

    settings = _with_options(load_config(args.config) if args.config else Settings(), args)
    aliases = dict(settings.sensors.aliases)
    for item in args.alias or []:
        name, _, std = item.partition("=")
        if not name or not std:
            raise RtsourceError(f"--alias {item!r}: use NAME=STANDARD_NAME, e.g. --alias 'EEG 001=Fp1'")
        aliases[name] = std
    subject = {}
    if settings.head.model == "freesurfer":  # the config's FreeSurfer subject is the head
        from .pipeline.subject import head_from_settings, head_to_mri

        subject = {"head": head_from_settings(settings), "transform": head_to_mri(settings)}
    result = run_coreg(
        args.montage,
        aliases=aliases or None,
        headshape_path=args.headshape,
        headshape_unit=args.headshape_unit,
        headshape_format=args.headshape_format,
        method=args.method,
        scale=args.scale,
        max_rms_mm=settings.coreg.max_rms_mm,
        qc_png=args.qc_png,
        allow_bad_fit=args.allow_bad_fit,
        channels=settings.sensors.channels if args.config else None,
        unit=args.unit,
        frame=args.frame,
        format=args.format,
        **subject,
    )
    print(result.summary())
    if args.out:
        print(f"written to {result.write_json(args.out)}")
    return 0


def cmd_replay(args) -> int:
    from .replay import run_replay

    import signal

    def ready(player) -> None:
        rec = player.recording
        print(
            f"replaying {rec.path} ({rec.format}): {rec.n_channels} channels at {rec.sfreq:g} Hz, {rec.duration:.1f} s"
            f"{', looped' if player.loop else ''}{f', x{player.rate_scale:g}' if player.rate_scale != 1 else ''} "
            f"as LSL stream {player.stats.stream_name!r} (source_id {player.stats.source_id!r}); Ctrl-C to stop",
            flush=True,
        )
        if rec.dropped:
            print(f"not replayed: {', '.join(rec.dropped)}", flush=True)

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM ends the replay like Ctrl-C
    try:
        stats = run_replay(
            args.file, loop=args.loop, rate_scale=args.rate_scale, name=args.name, type_=args.stream_type, source_id=args.source_id,
            chunk_ms=args.chunk_ms, stream=args.stream, reader=args.reader, duration=args.duration, wait_for_consumers=args.wait, on_ready=ready,
        )  # fmt: skip
    except KeyboardInterrupt:
        return 0
    _print_table("replay", stats.summary())
    return 0


def cmd_mark(args) -> int:
    from .stream.control import send_commands
    from .stream.control_auth import default_key_path, read_key

    command = "mark_good" if args.good else "mark_bad"
    key = read_key(args.key_file or default_key_path(args.output))
    answers = send_commands(args.output, [(command, ch) for ch in args.channels], key=key, wait_s=args.wait, answer_timeout_s=args.timeout)
    for a in answers:
        if a.ok:
            print(f"{a.channel}: {'marked good' if args.good else 'marked bad'}; the new operator was live {a.swap_ms:.0f} ms after the command")
        else:
            print(f"rtsource mark-bad: {a.channel}: {a.reason}: {a.message}", file=sys.stderr)
    return 0 if all(a.ok for a in answers) else 1


def cmd_recalibrate(args) -> int:
    from .stream.control import send_commands
    from .stream.control_auth import default_key_path, read_key

    key = read_key(args.key_file or default_key_path(args.output))
    text = f"{args.seconds:g}" + (f":{args.methods}" if args.methods else "")
    (a,) = send_commands(args.output, [("recalibrate_artifacts", text)], key=key, wait_s=args.wait, answer_timeout_s=30.0, confirm_swap=False)
    if not a.ok:
        print(f"rtsource recalibrate: {a.reason}: {a.message}", file=sys.stderr)
        return 1
    what = args.methods.replace(",", ", ") if args.methods else "every method of the calibration"
    print(f"recording {args.seconds:g} s of the stream; {what} recalibrated on them and swapped in (events: artifact_calibration)")
    return 0


def cmd_view(args) -> int:
    if args.events:
        from .display.event_views import run_events_view

        return run_events_view(args.name, screenshot=args.screenshot, seconds=args.duration or 0.0)
    from .display import run_view

    return run_view(
        args.name, bundle=args.bundle, mesh=args.mesh, view=args.view, average_ms=args.average_ms, threshold=args.threshold,
        vmin=args.vmin, vmax=args.vmax, window=args.window, max_fps=args.max_fps, size=args.size, duration=args.duration,
        screenshot=args.screenshot, screenshot_after=args.screenshot_after, report=args.report, atlas=args.atlas,
    )  # fmt: skip


def cmd_bench(args) -> int:
    from .bench import run_bench

    run_bench(args.what, json_path=args.json, quick=args.quick, method=args.method, progress=lambda line: print(line, flush=True))
    if args.json:
        print(f"results written to {args.json}")
    return 0


def _print_table(title: str, values: dict) -> None:
    print(f"\n{title}:")
    for k, v in values.items():
        print(f"  {k:<28} {v}")


# ---- entry point ------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rtsource", description="Real-time EEG/MEG source estimation over LSL")
    p.add_argument("--version", action="version", version=f"rtsource {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("setup", help="build an operator bundle from a config")
    s.add_argument("config", nargs="?", help="TOML configuration (default: the defaults)")
    s.add_argument("--out", help="bundle path (default: [bundle] path of the config)")
    s.add_argument("--recording", help="the lab's recording (FIF, BIDS directory, EDF/BDF/BrainVision/XDF): overrides [recording] file")
    s.add_argument("--positions", help="positions file for a recording without digitisation: overrides [recording] positions")
    s.add_argument("--sfreq", type=float, help="sampling rate in Hz (default: [stream] sfreq, else the calibration's)")
    s.add_argument("--calibration", help="rest recording (XDF, EDF/BDF, BrainVision, FIF) for the noise covariance instead of capturing it from the stream")
    s.add_argument("--data-calibration", help="LCMV: recording for the data covariance instead of capturing it from the stream")
    s.add_argument("--stream-name", help="override [stream] name for the calibration")
    s.add_argument("--source-id", help="override [stream] source_id for the calibration")
    s.set_defaults(func=cmd_setup)

    r = sub.add_parser("run", help="apply a bundle to a live LSL stream")
    r.add_argument("target", help="bundle (.npz) or config (.toml, uses its [bundle] path)")
    r.add_argument("--config", help="config for stream/output settings when TARGET is a bundle")
    r.add_argument("--bundle", help="bundle path when TARGET is a config")
    r.add_argument("--stream-name", help="LSL stream name to read")
    r.add_argument("--stream-type", help="LSL stream type to read")
    r.add_argument("--source-id", help="LSL source_id to read")
    r.add_argument("--outlet-name", help="name of the published source stream")
    r.add_argument("--duration", type=_seconds, help="seconds to run (default: until Ctrl-C)")
    r.add_argument("--idle-timeout", type=_seconds, help="stop after this many seconds without data")
    r.add_argument("--resolve-timeout", type=float, help="seconds to wait for the stream")
    r.add_argument("--max-chunk", type=int, help="largest chunk processed at once (samples)")
    r.add_argument("--assume-unit", help="unit for channels whose metadata has none (e.g. uV)")
    r.add_argument("--latest-only", action="store_true", default=None, help="when behind, skip the backlog (reported) instead of catching up")
    r.add_argument("--threads", type=int, help="kernel threads (default: [performance] threads; 0 = all cores but one)")
    r.add_argument("--source", help="ftbuffer://HOST:PORT reads a FieldTrip realtime buffer instead of LSL")
    r.set_defaults(func=cmd_run)

    m = sub.add_parser("simulate", help="publish a simulated EEG/MEG stream (and its ground truth)")
    m.add_argument("--config", help="TOML configuration ([simulate] and [sensors])")
    m.add_argument("--duration", type=_seconds, help="seconds to run (default: until Ctrl-C)")
    m.add_argument("--sfreq", type=float, help="sampling rate in Hz (default: [simulate] sfreq, 500)")
    m.add_argument("--chunk-size", dest="chunk_size", type=int, help="samples per pushed chunk (default: [simulate] chunk_size, 10)")
    m.add_argument("--seed", type=int, help="random seed of sources and noise (default: [simulate] seed, 0)")
    m.add_argument("--baseline", dest="baseline_seconds", type=float, help="noise-only seconds at the start")
    m.add_argument("--name", dest="stream_name", help="LSL stream name")
    m.add_argument("--source-id", dest="source_id", help="LSL source_id")
    m.add_argument("--modality", choices=["eeg", "meg", "eeg+meg"], help="override [sensors] modality")
    m.add_argument(
        "--artifacts", type=lambda text: [k.strip() for k in text.split(",") if k.strip() not in ("", "none")],
        help="comma list of blinks,saccades,ecg,emg,pops,drifts, or none (scales: [simulate] *_uv keys)",
    )  # fmt: skip
    m.set_defaults(func=cmd_simulate)

    d = sub.add_parser("demo", help="simulate, set up, stream and report, on the template head")
    d.add_argument("--config", help="TOML configuration (default: built-in demo settings)")
    d.add_argument("--duration", type=_seconds, default=20.0, help="seconds of streaming with active sources")
    d.add_argument("--calibration", type=_seconds, default=10.0, help="seconds of noise-only calibration")
    d.add_argument("--bundle", help="where to write the bundle (default: the cache directory)")
    d.add_argument("--json", action="store_true", help="print the summary as JSON")
    d.add_argument("--gui", action="store_true", help="open `rtsource view` next to the loop (needs rtsource[gui])")
    d.add_argument("--modality", choices=["eeg", "meg", "eeg+meg"], help="simulate and estimate from EEG, MEG or both")
    d.add_argument("--method", choices=["MNE", "dSPM", "sLORETA", "eLORETA", "LCMV"], help="override [inverse] method")
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser("coreg", help="align an electrode file to the template head and check the fit")
    c.add_argument("montage", help="electrode file (.tsv BIDS, .elc, .sfp, .bvef, .pos, .csv)")
    c.add_argument("--headshape", help="headshape points file in the same frame (any montage format, or plain 'x y z' text)")
    c.add_argument("--headshape-unit", choices=("m", "cm", "mm"), help="unit of the headshape file (needed for plain 'x y z' text)")
    c.add_argument("--headshape-format", help="format of the headshape file (default: from its extension)")
    c.add_argument("--method", choices=["icp", "fiducials", "none"], default="icp", help="fiducials then robust ICP (icp), fiducials only, or none (default icp)")
    c.add_argument("--scale", action="store_true", help="allow a uniform scale")
    c.add_argument("--max-rms-mm", type=float, help="refuse fits worse than this (default: [coreg] max_rms_mm, 5)")
    c.add_argument("--allow-bad-fit", action="store_true", help="report a bad fit instead of refusing it")
    c.add_argument("--qc-png", help="write the QC picture here")
    c.add_argument("--unit", choices=["m", "cm", "mm"], help="override the file's unit")
    c.add_argument("--frame", help="override the file's frame (head, ctf, template, ...)")
    c.add_argument("--format", help="override the file format detection")
    c.add_argument("--alias", action="append", metavar="NAME=STD", help="file label -> standard name (repeatable)")
    c.add_argument("--config", help="take channels and aliases from this config's [sensors] (and its FreeSurfer subject as the head)")
    c.add_argument("--out", help="write the result (transform, positions, QC) as JSON")
    c.set_defaults(func=cmd_coreg)

    k = sub.add_parser("mark-bad", help="mark channels bad (or --good) in a running loop: the operator is rebuilt without them")
    k.add_argument("channels", nargs="+", help="channel names as in the bundle")
    k.add_argument("--good", action="store_true", help="take the channels back instead")
    k.add_argument("--output", default="rtsource-sources", help="the loop's [output] name")
    k.add_argument("--wait", type=_seconds, default=10.0, help="seconds to wait for the loop to listen")
    k.add_argument("--timeout", type=_seconds, default=30.0, help="seconds to wait for the answers and the operator swaps")
    k.add_argument("--key-file", help="the loop's control key (default: the one `rtsource run` created for --output)")
    k.set_defaults(func=cmd_mark)

    r = sub.add_parser("recalibrate", help="recalibrate a running loop's artifact correction on the next seconds of its stream")
    r.add_argument("--seconds", type=_seconds, default=60.0, help="seconds to record (15-600): rest for asr, blinks and eye movements for projection/regression")
    r.add_argument("--methods", default="", help="comma-separated: asr, regression, projection (default: all the bundle's)")
    r.add_argument("--output", default="rtsource-sources", help="the loop's [output] name")
    r.add_argument("--wait", type=_seconds, default=10.0, help="seconds to wait for the loop to listen")
    r.add_argument("--key-file", help="the loop's control key (default: the one `rtsource run` created for --output)")
    r.set_defaults(func=cmd_recalibrate)

    v = sub.add_parser("view", help="live display: 3D cortex, ROI / band-power traces, loop health (needs rtsource[gui])")
    _add_view_arguments(v)
    v.add_argument("--events", action="store_true", help="show NAME-evoked (running average) and NAME-connectivity (matrix) instead")
    v.set_defaults(func=cmd_view)

    y = sub.add_parser("replay", help="play a recording (XDF, EDF/BDF, BrainVision, FIF) as an LSL stream")
    y.add_argument("file", help="recording: .xdf (needs rtsource[xdf]), .edf/.bdf (rtsource[edf]), .vhdr, .fif (rtsource[mne])")
    y.add_argument("--loop", action="store_true", help="start over at the end (timestamps continue)")
    y.add_argument("--rate-scale", type=float, default=1.0, help="pace relative to real time (2 = twice as fast)")
    y.add_argument("--name", help="LSL stream name (default: the file's stream name or stem)")
    y.add_argument("--type", dest="stream_type", help="LSL stream type (default: the file's, else EEG)")
    y.add_argument("--source-id", help="LSL source_id (default: rtsource-replay-FILENAME)")
    y.add_argument("--chunk-ms", type=float, default=20.0, help="chunk duration in recording time (ms)")
    y.add_argument("--stream", help="XDF: which stream to play (name or index)")
    y.add_argument("--reader", choices=("auto", "mne", "builtin"), default="auto", help="BrainVision reader")
    y.add_argument("--duration", type=float, help="stop after this many seconds")
    y.add_argument("--wait", type=float, default=0.0, help="seconds to wait for a consumer before the first sample")
    y.set_defaults(func=cmd_replay)

    b = sub.add_parser("bench", help="measure speed against baselines in the same run")
    b.add_argument("what", nargs="?", default="all", choices=["kernels", "lowrank", "latency", "startup", "hotswap", "connectivity", "artifacts", "decimation", "peers", "capacity", "headmotion", "all"],
                   help="which benchmark (default: all)")
    b.add_argument("--json", help="write the results to this file")
    b.add_argument("--quick", action="store_true", help="fewer sizes and repetitions")
    b.add_argument("--method", default="dSPM", choices=["MNE", "dSPM", "sLORETA", "eLORETA", "LCMV"], help="inverse method of the hot-swap benchmark (default dSPM)")
    b.set_defaults(func=cmd_bench)
    return p


def _add_view_arguments(v: argparse.ArgumentParser) -> None:
    default = "rtsource-sources"  # rtsource.display.DEFAULT_OUTPUT (not imported: --help stays fast)
    v.add_argument("name", nargs="?", default=default, help=f"output name: the source stream's name (default {default}); "
                   "NAME-roi, NAME-bandpower, NAME-telemetry and NAME-events are found from it")
    v.add_argument("--bundle", help="bundle to take the cortex mesh from (default: the one named in the stream's metadata)")
    v.add_argument("--mesh", choices=("auto", "bundle", "ico4", "ico5"), default="auto",
                   help="surface to draw: the bundle's (auto), or the template's ico4 (5124 vertices, cheaper) / ico5 (20484)")
    v.add_argument("--view", choices=("left", "right", "top", "back", "front", "oblique"), default="top", help="initial camera view")
    v.add_argument("--atlas", default="", help="outline this atlas's regions on the cortex ('aparc'; a FreeSurfer subject's bundle: its own annot)")
    v.add_argument("--average-ms", type=float, default=50.0, help="colour the cortex by the mean over the newest N ms (0: newest sample)")
    v.add_argument("--threshold", type=float, default=0.3, help="fraction of the colour range below which cortex stays grey (0..0.95)")
    v.add_argument("--vmin", type=float, help="fixed lower colour limit (with --vmax; default: automatic range)")
    v.add_argument("--vmax", type=float, help="fixed upper colour limit (default: automatic range)")
    v.add_argument("--window", type=float, default=10.0, help="seconds of ROI / band-power history shown")
    v.add_argument("--max-fps", type=float, default=60.0, help="frame-rate cap (0: as fast as possible, for measuring)")
    v.add_argument("--size", default="1600x900", help="window size WIDTHxHEIGHT in pixels")
    v.add_argument("--duration", type=float, help="close after this many seconds")
    v.add_argument("--screenshot", help="save the window to this PNG once the cortex and traces show data, then close")
    v.add_argument("--screenshot-after", type=float, default=0.0, help="take the screenshot no earlier than this many seconds after start")
    v.add_argument("--report", help="write frame-rate measurements (JSON) to this file when closing")


def _quiet_liblsl(verbose: int) -> None:
    """liblsl logs INFO lines to stderr by default; keep its warnings and errors only."""
    from .lsl_config import configure_liblsl

    configure_liblsl(0 if verbose >= 2 else -2)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    _quiet_liblsl(args.verbose)
    import signal
    import threading

    # SIGTERM before a command installs its own handler (e.g. while the stream is being
    # resolved) ends it like Ctrl-C: one line, no traceback, exit 128 + signal number.
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    try:
        return args.func(args)
    except RtsourceError as exc:
        print(f"rtsource {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, _Terminated) as exc:
        signum = signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT
        print(f"rtsource {args.command}: interrupted by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + int(signum)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(BaseException):
    """SIGTERM outside a command's own handling (raised like KeyboardInterrupt)."""


def _terminate(signum, frame):
    raise _Terminated


if __name__ == "__main__":
    sys.exit(main())
