"""Recordings as live streams: play a file on LSL in real time (``rtsource replay FILE``).

This is how a pipeline is tested on last week's session before the next participant
arrives: the file becomes an LSL stream with its channel names, types and units (XDF
meta-data convention ``desc/channels/channel/{label,type,unit}``), pushed in chunks at the
recording's pace, and ``rtsource run`` (or anything else) reads it as it would read the
amplifier.

    file ─> read_recording(): samples (n, channels), rate, names / types / units
         ─> Replayer: LSL outlet, chunks of ``chunk_ms`` pushed when their last sample is due

Formats (optional packages in brackets; each reader names the missing one):

============  =========================  ============================================
extension     reader                     values pushed
============  =========================  ============================================
.xdf          pyxdf [``xdf``]            the stream's own numbers and channel format
.edf / .bdf   edfio [``edf``]            physical values (float64) in the file's unit
.vhdr         MNE if installed, else     MNE: volts; built-in: A/D value x resolution
              the built-in reader        in the header's unit (float64)
.fif and      MNE-Python [``mne``]       SI units (V, T, T/m), float64
others MNE
reads
============  =========================  ============================================

edfio (not pyedflib) reads EDF/EDF+ and BDF/BDF+: it is pure Python on NumPy (no compiled
extension to build), returns physical values exactly as ``digital * gain + offset`` and
keeps EDF+ annotations out of the signals.

Timestamps are regular from the start of the replay: sample ``k`` of the file gets
``t0 + k / (sfreq * rate_scale)`` on this machine's LSL clock, ``t0`` being the clock when
the replay started. ``rate_scale`` changes the pace (2.0 plays twice as fast) while the
stream keeps the file's nominal rate (so bundles built for that rate still match). With
``loop=True`` the recording starts over after its end and the timestamps continue without a
jump. Irregular timestamps in an XDF file (gaps) are not reproduced: the samples are played
back to back, and a warning says how many gaps the file had.
"""

from __future__ import annotations

import configparser
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import __version__
from .errors import ChannelError, RtsourceError, StreamError, UnitError

logger = logging.getLogger(__name__)

#: LSL channel format for the NumPy dtypes a recording may hold.
_LSL_FORMATS = {np.dtype(np.float32): "float32", np.dtype(np.float64): "double64", np.dtype(np.int16): "int16", np.dtype(np.int32): "int32", np.dtype(np.int8): "int8", np.dtype(np.int64): "int64"}
_FORMAT_DTYPES = {v: k for k, v in _LSL_FORMATS.items()}

#: EDF+ signal-type prefixes (EDF+ specification, "standard texts": "EEG Fpz-Cz").
_EDF_TYPES = ("EEG", "ECG", "EOG", "ERG", "EMG", "MEG", "MCG", "EP", "TEMP", "RESP", "SAO2", "LIGHT", "SOUND", "EVENT")

#: MNE channel type -> (stream type, SI unit) of the values MNE returns.
_MNE_KINDS = {"eeg": ("EEG", "V"), "eog": ("EOG", "V"), "ecg": ("ECG", "V"), "emg": ("EMG", "V"), "seeg": ("SEEG", "V"), "ecog": ("ECOG", "V"), "dbs": ("DBS", "V"), "bio": ("BIO", "V"), "mag": ("MEG", "T"), "grad": ("MEG", "T/m"), "ref_meg": ("MEG", "T"), "stim": ("STIM", ""), "misc": ("MISC", "")}


class MissingDependency(RtsourceError, ImportError):
    """A reader needs an optional package that is not installed."""


def _need(module: str, extra: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(f"reading {what} needs the {module!r} package; install it with `pip install rtsource[{extra}]` (or `pip install {module}`)") from None


@dataclass(frozen=True)
class Recording:
    """A recording loaded for replay.

    Attributes
    ----------
    data : ndarray, shape (n_samples, n_channels)
        Samples in ``ch_units``; read-only. Its dtype decides the LSL channel format.
    sfreq : float
        Sampling rate in Hz.
    ch_names, ch_types, ch_units : tuple of str
        Per channel, as the stream will describe them.
    name, type : str
        Stream name and type to publish under (overridable in :func:`run_replay`).
    path, format : str
        Where it came from, and the reader used ("xdf", "edf", "bdf", "brainvision", "mne").
    dropped : tuple of str
        Channels of the file that are not replayed (another sampling rate, not numeric), so
        nothing disappears without a trace.
    file_gaps : int
        Gaps in the file's own timestamps (XDF), not reproduced by the replay.
    declared_samples : int
        Samples the file's header or footer says the recording holds (0: it does not say).
    damage : str
        What is wrong with a file that could be read only in part (truncated: the
        recording stopped before the file was closed), else "".
    """

    data: np.ndarray
    sfreq: float
    ch_names: tuple[str, ...]
    ch_types: tuple[str, ...]
    ch_units: tuple[str, ...]
    name: str
    type: str
    path: str
    format: str
    dropped: tuple[str, ...] = ()
    file_gaps: int = 0
    declared_samples: int = 0
    damage: str = ""

    def __post_init__(self) -> None:
        data = np.array(self.data, copy=True)
        if data.ndim != 2:
            raise StreamError(f"recording {self.path!r}: samples have shape {data.shape}, expected (n_samples, n_channels)")
        if data.dtype not in _LSL_FORMATS:
            data = data.astype(np.float64)
        data.flags.writeable = False
        object.__setattr__(self, "data", data)
        n = data.shape[1]
        for key in ("ch_names", "ch_types", "ch_units"):
            value = tuple(str(x) for x in getattr(self, key))
            if len(value) != n:
                raise StreamError(f"recording {self.path!r}: {len(value)} {key} for {n} channels")
            object.__setattr__(self, key, value)
        if not (np.isfinite(self.sfreq) and self.sfreq > 0):
            raise StreamError(f"recording {self.path!r} has sampling rate {self.sfreq!r}; only regularly sampled recordings can be replayed")
        if data.shape[0] == 0:
            raise StreamError(f"recording {self.path!r} has no samples" + (f": {self.damage}" if self.damage else ""))

    @property
    def n_samples(self) -> int:
        return self.data.shape[0]

    @property
    def n_channels(self) -> int:
        return self.data.shape[1]

    @property
    def channel_format(self) -> str:
        return _LSL_FORMATS[self.data.dtype]

    @property
    def duration(self) -> float:
        return self.n_samples / self.sfreq


# ---- readers -----------------------------------------------------------------------------

def read_recording(path: str | Path, *, stream: str | int | None = None, reader: str = "auto") -> Recording:
    """Load a recording for replay, choosing the reader by extension.

    Parameters
    ----------
    path : str or Path
        ``.xdf``, ``.edf``, ``.bdf``, ``.vhdr``, ``.fif`` (``.fif.gz``), or anything else
        MNE-Python reads (``mne.io.read_raw``).
    stream : str or int, optional
        XDF only: the stream to play (name, or index in the file). Default: the one numeric,
        regularly sampled stream, or the one of type EEG among several.
    reader : {"auto", "mne", "builtin"}
        BrainVision only: MNE-Python's reader ("auto" uses it when installed) or rtsource's
        own small reader.

    Raises
    ------
    StreamError
        Missing or unreadable file, no replayable stream in it, or an ambiguous choice.
    MissingDependency
        The optional package for this format is not installed.
    """
    path = Path(path)
    if not path.exists():
        raise StreamError(f"recording {str(path)!r} does not exist; check the path")
    if not path.is_file():
        raise StreamError(f"recording {str(path)!r} is not a file; pass the recording itself (a BrainVision set: its .vhdr)")
    suffix = "".join(path.suffixes[-2:]).lower() if path.name.lower().endswith(".fif.gz") else path.suffix.lower()
    if suffix == ".xdf" or suffix == ".xdfz":
        return read_xdf(path, stream=stream)
    if suffix in (".edf", ".bdf"):
        return read_edf(path)
    if suffix == ".vhdr":
        return read_brainvision(path, reader=reader)
    if suffix in (".eeg", ".vmrk"):
        raise StreamError(f"recording {str(path)!r}: pass the BrainVision header (.vhdr), which names the data and marker files")
    return read_mne(path)


def read_xdf(path: str | Path, *, stream: str | int | None = None) -> Recording:
    """One numeric, regularly sampled stream of an XDF file (pyxdf), values untouched."""
    pyxdf = _need("pyxdf", "xdf", "XDF files")
    path = Path(path)
    if path.suffix.lower() == ".xdf":
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic != b"XDF:":
            what = "is empty (0 bytes)" if not magic else f"does not start with the XDF magic 'XDF:' (it starts with {magic!r})"
            raise StreamError(f"XDF file {str(path)!r} {what}; is it an XDF recording?")
    complaints = _LogCapture("pyxdf")  # pyxdf reports damage by logging, then carries on
    try:
        with complaints:
            streams, _ = pyxdf.load_xdf(str(path), synchronize_clocks=False, dejitter_timestamps=False, handle_clock_resets=False)
    except Exception as exc:  # pyxdf raises plain Exceptions on damaged files
        raise StreamError(f"cannot read XDF file {str(path)!r}: it is damaged or cut short ({type(exc).__name__}: {exc})") from None

    def field_(info, key, default=""):
        v = info.get(key)
        return v[0] if isinstance(v, list) and v else (v if v is not None else default)

    candidates = []
    for i, s in enumerate(streams):
        info = s["info"]
        fmt = field_(info, "channel_format")
        rate = _number(field_(info, "nominal_srate", 0) or 0)
        if fmt in _FORMAT_DTYPES and rate > 0 and isinstance(s["time_series"], np.ndarray):
            candidates.append(i)
    listing = "; ".join(
        f"[{i}] name={field_(s['info'], 'name')!r} type={field_(s['info'], 'type')!r} "
        f"{field_(s['info'], 'channel_count')} ch {field_(s['info'], 'channel_format')} @ {field_(s['info'], 'nominal_srate')} Hz"
        for i, s in enumerate(streams)
    )
    if stream is not None:
        if isinstance(stream, int) or (isinstance(stream, str) and stream.isdigit()):
            chosen = [int(stream)] if int(stream) < len(streams) else []
        else:
            chosen = [i for i in range(len(streams)) if field_(streams[i]["info"], "name") == stream]
        if not chosen:
            raise StreamError(f"XDF file {str(path)!r} has no stream {stream!r}; it has: {listing or 'no streams'}")
        if chosen[0] not in candidates:
            raise StreamError(f"XDF stream {stream!r} in {str(path)!r} is not numeric and regularly sampled, so it cannot be replayed; streams: {listing}")
        index = chosen[0]
    else:
        if not candidates:
            raise StreamError(f"XDF file {str(path)!r} has no numeric, regularly sampled stream to replay; it has: {listing or 'no streams'}")
        if len(candidates) > 1:
            eeg = [i for i in candidates if field_(streams[i]["info"], "type").upper() in ("EEG", "MEG")]
            if len(eeg) != 1:
                raise StreamError(f"XDF file {str(path)!r} has {len(candidates)} replayable streams ({listing}); choose one with --stream NAME")
            candidates = eeg
        index = candidates[0]
    s = streams[index]
    info = s["info"]
    data = np.asarray(s["time_series"])
    if data.ndim == 1:
        data = data[:, None]
    n_chan = data.shape[1]
    names, types, units = [f"ch{i + 1}" for i in range(n_chan)], [""] * n_chan, [""] * n_chan
    desc = field_(info, "desc", None)
    chans = None
    if isinstance(desc, dict):
        block = field_(desc, "channels", None)
        if isinstance(block, dict):
            chans = block.get("channel")
    if chans:
        if len(chans) != n_chan:
            raise ChannelError(f"XDF stream {field_(info, 'name')!r} describes {len(chans)} channels but has {n_chan}")
        for i, ch in enumerate(chans):
            names[i] = field_(ch, "label") or names[i]
            types[i] = field_(ch, "type")
            units[i] = field_(ch, "unit")
    else:
        logger.warning("XDF stream %r has no channel descriptions; replaying as ch1..ch%d without units", field_(info, "name"), n_chan)
    rate = _number(field_(info, "nominal_srate"))
    stamps = np.asarray(s.get("time_stamps", []), dtype=np.float64)
    gaps = int(np.sum(np.diff(stamps) > 3.0 / rate)) if len(stamps) > 1 else 0
    if gaps:
        logger.warning("XDF stream %r has %d gaps in its timestamps; the replay plays its samples back to back", field_(info, "name"), gaps)
    others = [field_(streams[i]["info"], "name") for i in range(len(streams)) if i != index]
    footer = s.get("footer") or {}
    declared = int(_number(field_(footer.get("info", {}), "sample_count", 0) or 0)) if isinstance(footer, dict) else 0
    damage = ""
    if declared and declared != len(data):
        damage = f"the footer declares {declared} samples of stream {field_(info, 'name')!r} but the file holds {len(data)}"
    elif not footer:
        damage = (
            f"the file ends without the footer of stream {field_(info, 'name')!r} (written when a recording is stopped), so it was cut short; "
            f"{len(data)} samples ({len(data) / rate:.1f} s) could be read"
            + (f" (pyxdf: {complaints.messages[0]})" if complaints.messages else "")
        )
    return Recording(
        data=data.astype(_FORMAT_DTYPES[field_(info, "channel_format")], copy=False),
        sfreq=rate,
        ch_names=names,
        ch_types=types,
        ch_units=units,
        name=field_(info, "name") or path.stem,
        type=field_(info, "type") or "EEG",
        path=str(path),
        format="xdf",
        dropped=tuple(f"stream {n}" for n in others),
        file_gaps=gaps,
        declared_samples=declared,
        damage=damage,
    )


def _edf_type_and_label(label: str, unit: str) -> tuple[str, str]:
    """EDF+ labels read "EEG Fpz-Cz": the first word is the signal type when it is a standard one."""
    label = label.strip()
    head, _, rest = label.partition(" ")
    if rest.strip() and head.upper() in _EDF_TYPES:
        return head.upper(), rest.strip()
    try:
        from .geometry.units import parse_signal_unit

        base = parse_signal_unit(unit)[1]
    except (UnitError, ValueError):
        base = ""
    return ("EEG" if base == "V" else "MISC"), label


def read_edf(path: str | Path) -> Recording:
    """EDF/EDF+ or BDF/BDF+ (edfio): physical values of the signals at the dominant rate.

    Signals at other rates than the one most signals share are not replayed (LSL streams
    have one rate); they are listed in :attr:`Recording.dropped` and logged.
    """
    edfio = _need("edfio", "edf", "EDF/BDF files")
    path = Path(path)
    kind = path.suffix.upper()[1:]
    layout = _edf_layout(path)  # our own reading of the fixed header: clear messages, and the declared length
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # edfio warns about truncation; _edf_layout reports it
            f = edfio.read_bdf(path) if path.suffix.lower() == ".bdf" else edfio.read_edf(path)
    except Exception as exc:  # edfio raises ValueError and friends on malformed headers
        raise StreamError(f"cannot read {kind} file {str(path)!r}: {exc}") from None
    signals = list(f.signals)
    if not signals:
        raise StreamError(f"{str(path)!r} has no signals")
    rates = [float(s.sampling_frequency) for s in signals]
    values, counts = np.unique(rates, return_counts=True)
    rate = float(values[np.argmax(counts)])
    keep = [s for s, r in zip(signals, rates) if r == rate]
    dropped = tuple(f"{s.label} ({r:g} Hz)" for s, r in zip(signals, rates) if r != rate)
    if dropped:
        logger.warning("%s: %d signal(s) at other rates than %g Hz are not replayed: %s", path.name, len(dropped), rate, ", ".join(dropped))
    n = min(len(s.data) for s in keep)
    data = np.empty((n, len(keep)), dtype=np.float64)
    names, types, units = [], [], []
    for j, s in enumerate(keep):
        data[:, j] = s.data[:n]
        unit = s.physical_dimension.strip()
        kind, label = _edf_type_and_label(s.label, unit)
        names.append(label)
        types.append(kind)
        units.append(unit)
    declared = int(round(layout.n_records * layout.record_s * rate)) if layout.n_records > 0 else 0
    damage = ""
    if layout.records_in_file < layout.n_records:
        damage = (
            f"the header declares {layout.n_records} data records ({declared} samples, {layout.n_records * layout.record_s:g} s) "
            f"but the file holds {layout.records_in_file} complete ones ({n} samples): it was cut short"
        )
    return Recording(
        data, rate, names, types, units, name=path.stem, type="EEG", path=str(path), format=path.suffix.lower()[1:], dropped=dropped,
        declared_samples=declared, damage=damage,
    )  # fmt: skip


@dataclass(frozen=True)
class _EdfLayout:
    n_records: int  # declared in the header (-1: unknown, being recorded)
    record_s: float  # duration of one data record
    records_in_file: int  # complete records present


def _edf_layout(path: Path) -> _EdfLayout:
    """The fixed part of an EDF/BDF header, checked field by field (EDF spec, Kemp et al. 1992).

    Raises StreamError naming the file and the field for what edfio would report as
    "list index out of range" or an unbound variable.
    """
    kind = path.suffix.upper()[1:]
    raw = path.read_bytes()[:256]
    size = path.stat().st_size
    where = f"cannot read {kind} file {str(path)!r}:"
    if size < 256:
        raise StreamError(f"{where} it {'is empty' if not size else f'has {size} bytes'}; an {kind} header alone is 256 bytes (truncated or not {kind})")
    if raw[:8] not in (b"0       ", b"\xffBIOSEMI"):
        raise StreamError(f"{where} it does not start with an EDF/BDF version field ({raw[:8]!r}); is it an {kind} recording?")

    def field(start: int, stop: int, name: str, cast=int):
        text = raw[start:stop].decode("ascii", "replace").strip()
        try:
            return cast(text)
        except ValueError:
            raise StreamError(f"{where} header field '{name}' is {text!r}, not a number") from None

    header_bytes = field(184, 192, "number of bytes in header record")
    n_records = field(236, 244, "number of data records")
    record_s = field(244, 252, "duration of a data record", float)
    ns = field(252, 256, "number of signals")
    if ns < 1:
        raise StreamError(f"{where} the header declares {ns} signals; there is nothing to replay")
    if header_bytes != 256 * (ns + 1):
        raise StreamError(f"{where} the header declares {header_bytes} header bytes but {ns} signals need {256 * (ns + 1)}")
    if size < header_bytes:
        raise StreamError(f"{where} it is cut off inside its header ({size} of {header_bytes} bytes)")
    with open(path, "rb") as f:
        f.seek(256 + ns * 216)
        spr_text = f.read(ns * 8).decode("ascii", "replace")
    try:
        spr = [int(spr_text[i * 8 : i * 8 + 8]) for i in range(ns)]
    except ValueError:
        raise StreamError(f"{where} the samples-per-record fields {spr_text!r} are not numbers") from None
    if not (np.isfinite(record_s) and record_s > 0):
        raise StreamError(f"{where} the data record duration is {record_s:g} s; a recording with signals needs a positive duration")
    record_bytes = sum(spr) * (3 if kind == "BDF" else 2)
    in_file = (size - header_bytes) // record_bytes if record_bytes > 0 else 0
    return _EdfLayout(n_records, record_s, int(in_file))


def read_brainvision(path: str | Path, *, reader: str = "auto") -> Recording:
    """BrainVision (.vhdr + .eeg + .vmrk): MNE-Python's reader if installed, else the built-in one."""
    if reader not in ("auto", "mne", "builtin"):
        raise StreamError(f"reader {reader!r} is not one of 'auto', 'mne', 'builtin'")
    if reader == "mne" or (reader == "auto" and _has("mne")):
        return read_mne(path, kind="brainvision")
    return _read_brainvision_builtin(Path(path))


def _number(text) -> float:
    """A header number; malformed text reads as 0 (refused later as "not regularly sampled")."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return 0.0
    return value if np.isfinite(value) else 0.0


class _LogCapture(logging.Handler):
    """Collects what a library logs (warnings and worse) while it reads a file."""

    def __init__(self, logger_name: str):
        super().__init__(logging.WARNING)
        self._logger = logging.getLogger(logger_name)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.messages) < 10:
            self.messages.append(record.getMessage().splitlines()[0][:200])

    def __enter__(self):
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self._logger.removeHandler(self)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _read_brainvision_builtin(path: Path) -> Recording:
    """A small reader of the BrainVision Core Data Format 1.0 (binary, multiplexed).

    Channel lines read ``Ch<n>=<name>,<reference>,<resolution>,<unit>`` (``\\1`` stands for
    a comma in names); values are ``A/D value * resolution`` in ``unit`` (default uV).
    """
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise StreamError(f"cannot read BrainVision header {str(path)!r}: {exc}") from None
    first, _, body = text.partition("\n")
    if "Brain Vision" not in first and "BrainVision" not in first:
        raise StreamError(f"{str(path)!r} is not a BrainVision header (first line {first.strip()!r})")
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    cp.optionxform = str  # keep key case
    body = body.split("[Comment]")[0]
    try:
        cp.read_string(body)
    except configparser.Error as exc:
        raise StreamError(f"cannot parse BrainVision header {str(path)!r}: {exc}") from None

    def get(section, key, default=None):
        try:
            return cp.get(section, key).strip()
        except (configparser.NoSectionError, configparser.NoOptionError):
            if default is None:
                raise StreamError(f"BrainVision header {str(path)!r} lacks [{section}] {key}") from None
            return default

    if get("Common Infos", "DataFormat", "BINARY").upper() != "BINARY":
        raise StreamError(f"{str(path)!r}: only binary BrainVision data are read by the built-in reader; install MNE-Python for ASCII")
    if get("Common Infos", "DataOrientation", "MULTIPLEXED").upper() != "MULTIPLEXED":
        raise StreamError(f"{str(path)!r}: only multiplexed BrainVision data are read by the built-in reader; install MNE-Python for vectorized")
    def number(section, key, cast, low):
        text = get(section, key)
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not np.isfinite(value) or value < low:
            raise StreamError(f"BrainVision header {str(path)!r}: [{section}] {key} = {text!r} must be a number >= {low:g}")
        return value

    n_chan = number("Common Infos", "NumberOfChannels", int, 1)
    interval_us = number("Common Infos", "SamplingInterval", float, 1e-3)
    data_file = path.with_name(get("Common Infos", "DataFile"))
    fmt = get("Binary Infos", "BinaryFormat", "INT_16").upper()
    dtypes = {"INT_16": "<i2", "INT_32": "<i4", "IEEE_FLOAT_32": "<f4", "UINT_16": "<u2"}
    if fmt not in dtypes:
        raise StreamError(f"{str(path)!r}: BinaryFormat {fmt!r} is not one of {', '.join(dtypes)}")
    names, res, units = [], [], []
    for i in range(1, n_chan + 1):
        parts = get("Channel Infos", f"Ch{i}").split(",")
        name = parts[0].replace("\\1", ",")
        try:
            r = float(parts[2]) if len(parts) > 2 and parts[2].strip() else 1.0
        except ValueError:
            raise StreamError(f"BrainVision header {str(path)!r}: the resolution of Ch{i} ({parts[2].strip()!r}) is not a number") from None
        u = parts[3].strip() if len(parts) > 3 and parts[3].strip() else "uV"
        names.append(name)
        res.append(r)
        units.append(u.replace("µ", "u").replace("μ", "u"))
    try:
        raw = np.fromfile(data_file, dtype=dtypes[fmt])
    except OSError as exc:
        raise StreamError(f"cannot read BrainVision data file {str(data_file)!r} (named by {path.name}): {exc}") from None
    n = raw.size // n_chan
    damage = ""
    if raw.size % n_chan:
        damage = f"the data file {data_file.name} ends inside a sample ({raw.size % n_chan} of {n_chan} values of sample {n + 1}): it was cut short"
    data = raw[: n * n_chan].reshape(n, n_chan).astype(np.float64) * np.asarray(res)
    types = ["EEG" if u in ("uV", "mV", "V", "nV") else "MISC" for u in units]
    return Recording(data, 1e6 / interval_us, names, types, units, name=path.stem, type="EEG", path=str(path), format="brainvision", damage=damage)


def read_mne(path: str | Path, *, kind: str = "") -> Recording:
    """Any file MNE-Python reads as Raw (FIF, BrainVision, EEGLAB, ...): values in SI units."""
    mne = _need("mne", "mne", f"{Path(path).suffix or 'this'} files")
    path = Path(path)
    try:
        if kind == "brainvision":
            raw = mne.io.read_raw_brainvision(str(path), preload=True, verbose="error")
        elif path.name.lower().endswith((".fif", ".fif.gz")):
            raw = mne.io.read_raw_fif(str(path), preload=True, verbose="error")
        else:
            raw = mne.io.read_raw(str(path), preload=True, verbose="error")
    except Exception as exc:  # MNE's readers raise many kinds on a damaged file (even AttributeError)
        if str(exc) == "" or isinstance(exc, (AttributeError, IndexError, KeyError, TypeError)):
            exc = f"the file is damaged, truncated or not a recording ({type(exc).__name__}: {exc})"
        raise StreamError(f"MNE-Python cannot read {str(path)!r}: {exc}") from None
    kinds = raw.get_channel_types()
    types, units = [], []
    for k in kinds:
        t, u = _MNE_KINDS.get(k, (k.upper(), ""))
        types.append(t)
        units.append(u)
    stream_type = "MEG" if any(k in ("mag", "grad") for k in kinds) else "EEG"
    return Recording(raw.get_data().T, float(raw.info["sfreq"]), raw.ch_names, types, units, name=path.name.split(".")[0], type=stream_type, path=str(path), format="brainvision" if kind else "mne")


# ---- the player --------------------------------------------------------------------------

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
