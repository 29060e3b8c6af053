"""Recordings as live streams: play a file on LSL in real time (``rtsource replay FILE``).

This is how a pipeline is tested on last week's session before the next participant
arrives: the file becomes an LSL stream with its channel names, types and units (XDF
meta-data convention ``desc/channels/channel/{label,type,unit}``), pushed in chunks at the
recording's pace, and ``rtsource run`` (or anything else) reads it as it would read the
amplifier.

    file ─> rtsource.recordings.read_recording(): samples (n, channels), rate, names / types / units
         ─> Replayer: LSL outlet, chunks of ``chunk_ms`` pushed when their last sample is due

The formats and their readers are in :mod:`rtsource.recordings`; this module is the player.

Timestamps are regular from the start of the replay: sample ``k`` of the file gets
``t0 + k / (sfreq * rate_scale)`` on this machine's LSL clock, ``t0`` being the clock when
the replay started. ``rate_scale`` changes the pace (2.0 plays twice as fast) while the
stream keeps the file's nominal rate (so bundles built for that rate still match). With
``loop=True`` the recording starts over after its end and the timestamps continue without a
jump. Irregular timestamps in an XDF file (gaps) are not reproduced: the samples are played
back to back, and a warning says how many gaps the file had.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import __version__
from .errors import StreamError
from .recordings import Recording, read_recording

logger = logging.getLogger(__name__)


def make_stream_info(rec: Recording, *, name: str | None = None, type_: str | None = None, source_id: str | None = None, loop: bool = False, rate_scale: float = 1.0):
    """The pylsl ``StreamInfo`` of a replay: channels with label/type/unit, and a replay block."""
    import pylsl

    name = name or rec.name
    sid = source_id or f"rtsource-replay-{Path(rec.path).name}"
    info = pylsl.StreamInfo(name, type_ or rec.type, rec.n_channels, rec.sfreq, rec.channel_format, sid)
    desc = info.desc()
    chans = desc.append_child("channels")
    for label, kind, unit in zip(rec.ch_names, rec.ch_types, rec.ch_units):
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("type", kind)
        ch.append_child_value("unit", unit)
    if rec.compensation_grade >= 0:  # CTF data: which synthetic gradient the samples carry (rtsource.stream.compensation)
        desc.append_child("acquisition").append_child_value("compensation_grade", str(int(rec.compensation_grade)))
    block = desc.append_child("replay")
    for key, value in (
        ("file", rec.path),
        ("format", rec.format),
        ("loop", str(bool(loop)).lower()),
        ("rate_scale", repr(float(rate_scale))),
        ("n_samples", str(rec.n_samples)),
        ("dropped", "; ".join(rec.dropped)),
        ("timestamps", "regular from the start of the replay: t0 + k / (sfreq * rate_scale)"),
        ("software", f"rtsource {__version__}"),
    ):
        block.append_child_value(key, value)
    return info


@dataclass
class ReplayStats:
    """What a replay did."""

    stream_name: str = ""
    source_id: str = ""
    samples_pushed: int = 0
    loops_completed: int = 0
    wall_seconds: float = 0.0
    late_chunks: int = 0  # chunks pushed more than one chunk period after they were due
    dropped: tuple[str, ...] = field(default_factory=tuple)
    file_samples: int = 0  # samples read from the file (one pass)
    declared_samples: int = 0  # samples the file says it holds (0: it does not say)
    damage: str = ""  # a truncated or damaged file: what is missing

    def summary(self) -> dict:
        out = {
            "stream": self.stream_name,
            "source_id": self.source_id,
            "samples_pushed": self.samples_pushed,
            "loops_completed": self.loops_completed,
            "wall_seconds": round(self.wall_seconds, 3),
            "late_chunks": self.late_chunks,
        }
        if self.damage:
            out["file_samples"] = self.file_samples
            out["declared_samples"] = self.declared_samples or "unknown"
            out["file_damage"] = self.damage
        return out


class Replayer:
    """Push a :class:`Recording` to an LSL outlet at the recording's pace.

    Parameters
    ----------
    recording : Recording
    loop : bool
        Start over after the end (timestamps continue).
    rate_scale : float
        Pace relative to real time (2.0: twice as fast). The nominal rate stays the file's.
    chunk_ms : float
        Duration of one pushed chunk in recording time (an amplifier sends 10-40 ms).
    name, type_, source_id : str, optional
        Override the stream's name / type / source_id.
    """

    def __init__(self, recording: Recording, *, loop: bool = False, rate_scale: float = 1.0, chunk_ms: float = 20.0, name: str | None = None, type_: str | None = None, source_id: str | None = None):
        import pylsl

        if not (np.isfinite(rate_scale) and 1e-3 <= rate_scale <= 1e4):
            raise StreamError(f"rate_scale is {rate_scale!r}; pass a factor between 0.001 and 10000 (1.0 = real time, 2.0 = twice as fast)")
        if not (np.isfinite(chunk_ms) and 0.01 <= chunk_ms <= 60000):
            raise StreamError(f"chunk_ms is {chunk_ms!r}; pass a duration between 0.01 and 60000 milliseconds (e.g. 20)")
        self.recording = recording
        self.loop = bool(loop)
        self.rate_scale = float(rate_scale)
        self.chunk = max(1, int(round(chunk_ms * 1e-3 * recording.sfreq)))
        self.info = make_stream_info(recording, name=name, type_=type_, source_id=source_id, loop=loop, rate_scale=rate_scale)
        self.outlet = pylsl.StreamOutlet(self.info, chunk_size=0, max_buffered=360)
        self.stats = ReplayStats(
            self.info.name(), self.info.source_id(), dropped=recording.dropped, file_samples=recording.n_samples,
            declared_samples=recording.declared_samples, damage=recording.damage,
        )  # fmt: skip
        self._stop = threading.Event()
        self._local_clock = pylsl.local_clock

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current chunk."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def wait_stopped(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for :meth:`stop`; True if it was called."""
        return self._stop.wait(timeout)

    def wait_for_consumers(self, timeout: float) -> bool:
        """Block until a consumer subscribed (True) or ``timeout`` s passed (False)."""
        return bool(self.outlet.wait_for_consumers(timeout))

    def run(self, duration: float | None = None) -> ReplayStats:
        """Play until the end (or forever with ``loop``), ``duration`` wall seconds, or :meth:`stop`."""
        rec, stats = self.recording, self.stats
        step = 1.0 / (rec.sfreq * self.rate_scale)  # seconds of wall clock per sample
        data = rec.data
        n = rec.n_samples
        start_wall = time.perf_counter()
        t0 = self._local_clock()
        k = 0  # samples pushed so far (over all loops)
        pos = 0  # position in the recording
        while not self._stop.is_set():
            if duration is not None and time.perf_counter() - start_wall >= duration:
                break
            take = min(self.chunk, n - pos)
            due = start_wall + (k + take) * step  # the chunk's last sample is due then
            wait = due - time.perf_counter()
            if wait > 0:
                if self._stop.wait(wait):
                    break
            elif -wait > self.chunk * step:
                stats.late_chunks += 1
            stamps = t0 + (k + np.arange(take)) * step
            self.outlet.push_chunk(data[pos : pos + take], stamps)
            k += take
            pos += take
            stats.samples_pushed = k
            if pos >= n:
                stats.loops_completed += 1
                if not self.loop:
                    break
                pos = 0
        stats.wall_seconds = time.perf_counter() - start_wall
        return stats

    def close(self) -> None:
        self.outlet = None


def run_replay(
    path: str | Path,
    *,
    loop: bool = False,
    rate_scale: float = 1.0,
    name: str | None = None,
    type_: str | None = None,
    source_id: str | None = None,
    chunk_ms: float = 20.0,
    stream: str | int | None = None,
    reader: str = "auto",
    duration: float | None = None,
    wait_for_consumers: float = 0.0,
    stop_event: threading.Event | None = None,
    on_ready: Callable[[Replayer], None] | None = None,
    linger: float = 1.0,
) -> ReplayStats:
    """Play a recording as an LSL stream in real time (``rtsource replay FILE``).

    Parameters
    ----------
    path : str or Path
        The recording (see :func:`read_recording` for formats).
    loop : bool
        Start over at the end, timestamps continuing.
    rate_scale : float
        Pace relative to real time.
    name, type_, source_id : str, optional
        Stream name (default: the file's stream name or stem), type, source_id.
    chunk_ms : float
        Chunk duration in recording time.
    stream : str or int, optional
        XDF: which stream of the file.
    reader : {"auto", "mne", "builtin"}
        BrainVision reader.
    duration : float, optional
        Stop after this many wall-clock seconds.
    wait_for_consumers : float
        Seconds to wait for a consumer before the first sample (0: start at once, as a live
        amplifier would; a consumer that connects later misses the beginning).
    stop_event : threading.Event, optional
        Set it to stop the replay from another thread.
    on_ready : callable, optional
        Called with the :class:`Replayer` once its outlet exists (before any sample).
    linger : float
        Seconds the outlet stays open after the last sample, so consumers receive the end.

    Returns
    -------
    ReplayStats
    """
    for key, value in (("duration", duration), ("wait_for_consumers", wait_for_consumers), ("linger", linger)):
        if value is not None and not (np.isfinite(value) and 0 <= value <= 3.2e7):
            raise StreamError(f"{key} is {value!r}; pass a number of seconds (>= 0, at most a year)")
    rec = read_recording(path, stream=stream, reader=reader)
    if rec.damage:
        declared = f" of {rec.declared_samples} declared" if rec.declared_samples else ""
        logger.warning("%s: %d%s samples will be played: %s", rec.path, rec.n_samples, declared, rec.damage)
    player = Replayer(rec, loop=loop, rate_scale=rate_scale, chunk_ms=chunk_ms, name=name, type_=type_, source_id=source_id)
    logger.info(
        "replaying %s (%s): %d channels at %g Hz, %.1f s, as LSL stream %r",
        rec.path, rec.format, rec.n_channels, rec.sfreq, rec.duration, player.stats.stream_name,
    )  # fmt: skip
    done = threading.Event()
    if stop_event is not None:

        def watch():
            while not done.is_set():
                if stop_event.wait(0.1):
                    player.stop()
                    return

        threading.Thread(target=watch, daemon=True, name="rtsource-replay-stop").start()
    try:
        if on_ready is not None:
            on_ready(player)
        if wait_for_consumers > 0 and not player.wait_for_consumers(wait_for_consumers):
            raise StreamError(f"no consumer subscribed to replay stream {player.stats.stream_name!r} within {wait_for_consumers:g} s")
        stats = player.run(duration=duration)
        if linger > 0 and not player.stopped:
            # keep the outlet alive so that consumers receive the last chunks (destroying it
            # at once can cut off data still in transit)
            player.wait_stopped(linger)
        return stats
    finally:
        done.set()
        player.close()
