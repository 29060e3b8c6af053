"""BrainVision files (.vhdr + .eeg + .vmrk): MNE-Python's reader if installed, else a small built-in one.

MNE returns volts; the built-in reader returns ``A/D value * resolution`` in the header's
unit (float64), for machines without MNE.
"""

from __future__ import annotations

import configparser
from pathlib import Path

import numpy as np

from ..errors import StreamError
from .dependencies import has
from .mne_files import read_mne
from .recording import Recording


def read_brainvision(path: str | Path, *, reader: str = "auto") -> Recording:
    """BrainVision (.vhdr + .eeg + .vmrk): MNE-Python's reader if installed, else the built-in one."""
    if reader not in ("auto", "mne", "builtin"):
        raise StreamError(f"reader {reader!r} is not one of 'auto', 'mne', 'builtin'")
    if reader == "mne" or (reader == "auto" and has("mne")):
        return read_mne(path, kind="brainvision")
    return _read_brainvision_builtin(Path(path))



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

