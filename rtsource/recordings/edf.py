"""EDF/EDF+ and BDF/BDF+ files (edfio): physical values of the signals at the dominant rate.

edfio (not pyedflib) reads both: it is pure Python on NumPy (no compiled extension to
build), returns physical values exactly as ``digital * gain + offset`` and keeps EDF+
annotations out of the signals. The fixed header is also read here, field by field, for
clear messages and for the declared length (a file cut short is reported, not refused).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import StreamError, UnitError
from .dependencies import need
from .recording import Recording

logger = logging.getLogger(__name__)

#: EDF+ signal-type prefixes (EDF+ specification, "standard texts": "EEG Fpz-Cz").
_EDF_TYPES = ("EEG", "ECG", "EOG", "ERG", "EMG", "MEG", "MCG", "EP", "TEMP", "RESP", "SAO2", "LIGHT", "SOUND", "EVENT")


def _edf_type_and_label(label: str, unit: str) -> tuple[str, str]:
    """EDF+ labels read "EEG Fpz-Cz": the first word is the signal type when it is a standard one."""
    label = label.strip()
    head, _, rest = label.partition(" ")
    if rest.strip() and head.upper() in _EDF_TYPES:
        return head.upper(), rest.strip()
    try:
        from ..geometry.units import parse_signal_unit

        base = parse_signal_unit(unit)[1]
    except (UnitError, ValueError):
        base = ""
    return ("EEG" if base == "V" else "MISC"), label


def read_edf(path: str | Path) -> Recording:
    """EDF/EDF+ or BDF/BDF+ (edfio): physical values of the signals at the dominant rate.

    Signals at other rates than the one most signals share are not replayed (LSL streams
    have one rate); they are listed in :attr:`Recording.dropped` and logged.
    """
    edfio = need("edfio", "edf", "EDF/BDF files")
    path = Path(path)
    kind = path.suffix.upper()[1:]
    layout = _edf_layout(path)  # our own reading of the fixed header: clear messages, and the declared length
    try:
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

