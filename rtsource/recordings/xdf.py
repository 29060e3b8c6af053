"""XDF files (pyxdf): one numeric, regularly sampled stream, its values untouched.

Channel names, types and units come from the XDF meta-data convention
``desc/channels/channel/{label,type,unit}``. Irregular timestamps (gaps) are counted, not
reproduced; a stream without its footer (written when a recording is stopped) was cut short.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import ChannelError, StreamError
from .dependencies import need
from .recording import FORMAT_DTYPES, Recording

logger = logging.getLogger(__name__)


def read_xdf(path: str | Path, *, stream: str | int | None = None) -> Recording:
    """One numeric, regularly sampled stream of an XDF file (pyxdf), values untouched."""
    pyxdf = need("pyxdf", "xdf", "XDF files")
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
        if fmt in FORMAT_DTYPES and rate > 0 and isinstance(s["time_series"], np.ndarray):
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
        data=data.astype(FORMAT_DTYPES[field_(info, "channel_format")], copy=False),
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

