"""A BIDS EEG or MEG session read natively into an :class:`~.acquisition.Acquisition`.

What setup needs of a BIDS session is in its small text sidecars, not in the data file:

==========================  ======================================================================
``*_channels.tsv``          ``name``, ``type``, ``units`` (required), ``status`` (``bad``),
                            ``sampling_frequency``: channels in file order, types mapped to
                            rtsource's (:data:`BIDS_TYPES`), units to SI (``"µV"`` -> ``"V"``)
``*_eeg.json``/``*_meg.json``  ``SamplingFrequency`` (Hz)
``*_electrodes.tsv``        EEG electrode positions (:func:`~rtsource.sensors.readers.read_bids_electrodes`)
``*_coordsystem.json``      ``EEGCoordinateSystem`` / ``MEGCoordinateSystem`` and units, mapped and
                            checked by :mod:`rtsource.sensors.readers.bids_frames`;
                            ``AnatomicalLandmarkCoordinates``, ``HeadCoilCoordinates`` and
                            ``DigitizedHeadPoints`` (a head-shape file in any montage format)
==========================  ======================================================================

The MEG sensor geometry is not in the sidecars (it is in the vendor's data file); an MEG
session gives channels, landmarks, head coils and head shape here, and the array is read
from the data file (``[recording] file``).

Reference: BIDS specification 1.9, "Electroencephalography", "Magnetoencephalography" and
appendix "Coordinate systems" (https://bids-specification.readthedocs.io).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import numpy as np

from ..errors import ChannelError, GeometryError, StreamError, UnitError
from ..geometry import Frame, Points
from ..geometry.units import LENGTH_UNITS, parse_signal_unit
from ..sensors.readers import Digitization, read_bids_electrodes, read_digitization
from ..sensors.readers.bids_frames import BidsSystem, bids_system, check_bids_positions, is_other, other_system_note
from ..sensors.readers.digitization import ReadReport
from ..sensors.readers.units import parse_length_unit
from .acquisition import Acquisition

logger = logging.getLogger(__name__)

__all__ = ["BIDS_TYPES", "read_bids_acquisition"]

#: BIDS channel type -> rtsource channel type (BIDS EEG and MEG channel tables).
BIDS_TYPES: dict[str, str] = {
    "EEG": "eeg",
    "MEGMAG": "mag",
    "MEGGRADAXIAL": "mag",  # axial gradiometers measure T, as MNE-Python types CTF/KIT channels
    "MEGGRADPLANAR": "grad",
    "MEGREFMAG": "ref_meg",
    "MEGREFGRADAXIAL": "ref_meg",
    "MEGREFGRADPLANAR": "ref_meg",
    "MEGOTHER": "misc",
    "EOG": "eog", "HEOG": "eog", "VEOG": "eog",
    "ECG": "ecg",
    "EMG": "emg",
    "TRIG": "stim",
    "HLU": "misc", "FITERR": "misc", "MISC": "misc", "REF": "misc", "AUDIO": "misc", "SYSCLOCK": "misc", "ADC": "misc",
    "DAC": "misc", "PD": "misc", "RESP": "misc", "GSR": "misc", "TEMP": "misc", "PPG": "misc", "EYEGAZE": "misc",
    "PUPIL": "misc", "HEEG": "misc",
}  # fmt: skip

#: The SI unit each signal type must be measured in.
_TYPE_UNITS = {"eeg": ("V",), "eog": ("V",), "ecg": ("V",), "emg": ("V",), "mag": ("T",), "grad": ("T/m",), "ref_meg": ("T", "T/m")}

#: Largest sidecar read (bytes): they are a few kB; anything larger is not a sidecar.
_MAX_SIDECAR = 16 * 2**20


def _read_text(path: Path) -> str:
    try:
        if path.stat().st_size > _MAX_SIDECAR:
            raise StreamError(f"{path}: {path.stat().st_size} bytes is too large for a BIDS sidecar")
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise StreamError(f"{path}: not UTF-8 text, as BIDS requires") from None
    except OSError as exc:
        raise StreamError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None


def _read_json(path: Path) -> dict:
    text = _read_text(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StreamError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}); fix the JSON syntax") from None
    except RecursionError:
        raise StreamError(f"{path}: JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise StreamError(f"{path}: the top level must be a JSON object, got {type(doc).__name__}")
    return doc


def _entities(name: str) -> tuple[str, ...]:
    """``sub-01_ses-1_task-rest_eeg.edf`` -> ``("sub-01", "ses-1", "task-rest")``."""
    parts = name.split(".")[0].split("_")
    return tuple(p for p in parts if "-" in p)


def _sidecar(folder: Path, entities: tuple[str, ...], suffix: str) -> Path | None:
    """The ``*_{suffix}`` file of ``folder`` for these entities (BIDS inheritance: a file may
    drop entities, e.g. ``sub-01_electrodes.tsv`` for every task); the most specific wins."""
    best, best_n = None, -1
    for f in folder.glob(f"*_{suffix}"):
        ent = _entities(f.name)
        if set(ent) <= set(entities) and len(ent) > best_n:
            best, best_n = f, len(ent)
    return best


def _locate(path: Path) -> tuple[Path, tuple[str, ...], str]:
    """The datatype folder (``eeg``/``meg``), the recording's entities and the datatype."""
    if not path.exists():
        raise StreamError(f"BIDS path {str(path)!r} does not exist; pass a session directory or a file in its eeg/ or meg/ folder")
    if path.is_file():
        folder, entities = path.parent, _entities(path.name)
    else:
        folder = path
        sessions = sorted(p for p in folder.glob("ses-*") if p.is_dir())
        if not any(folder.glob("*_channels.tsv")) and not (folder / "eeg").is_dir() and not (folder / "meg").is_dir() and len(sessions) == 1:
            folder = sessions[0]
        kinds = [k for k in ("eeg", "meg") if (folder / k).is_dir()]
        if len(kinds) > 1:
            raise StreamError(f"BIDS session {str(folder)!r} has both eeg/ and meg/ recordings; pass {str(folder / 'eeg')!r} or {str(folder / 'meg')!r}")
        if kinds:
            folder = folder / kinds[0]
        tables = sorted(folder.glob("*_channels.tsv"))
        if not tables:
            raise StreamError(f"{str(folder)!r} holds no *_channels.tsv; pass a BIDS session directory (sub-XX[/ses-YY]) or its eeg/ or meg/ folder")
        if len(tables) > 1:
            raise StreamError(
                f"{str(folder)!r} holds {len(tables)} recordings ({', '.join(t.name for t in tables[:6])}); pass one of their files "
                f"(e.g. {str(tables[0])!r}) to choose"
            )
        entities = _entities(tables[0].name)
    datatype = folder.name if folder.name in ("eeg", "meg") else ""
    if not datatype:
        datatype = next((k for k in ("meg", "eeg") if _sidecar(folder, entities, f"{k}.json") is not None), "eeg")
    return folder, entities, datatype


def _read_channels(path: Path) -> tuple[list[str], list[str], list[str], list[str], list[float], list[str]]:
    """names, rtsource types, SI units, bads, per-channel rates (nan: not given), notes."""
    lines = [ln for ln in _read_text(path).splitlines() if ln.strip()]
    if not lines:
        raise StreamError(f"{path}: empty; a BIDS channels.tsv starts with the header 'name type units ...'")
    header = [h.strip().casefold() for h in lines[0].split("\t")]
    for want in ("name", "type", "units"):
        if want not in header:
            raise StreamError(f"{path}, line 1: the header has no {want!r} column ({lines[0]!r}); BIDS requires name, type and units")
    col = {k: header.index(k) for k in header}
    names, types, units, bads, rates, notes = [], [], [], [], [], []
    odd_types: dict[str, list[str]] = {}
    for lineno, line in enumerate(lines[1:], start=2):
        f = [x.strip() for x in line.split("\t")]
        if len(f) != len(header):
            raise StreamError(f"{path}, line {lineno}: {len(f)} tab-separated fields, but the header has {len(header)}: {line[:80]!r}")
        name, btype, unit = f[col["name"]], f[col["type"]].upper(), f[col["units"]]
        kind = BIDS_TYPES.get(btype)
        if kind is None:
            odd_types.setdefault(btype, []).append(name)
            kind = "misc"
        si = ""
        if unit.casefold() != "n/a" and unit:
            try:
                si = parse_signal_unit(unit)[1]
            except UnitError:
                if kind in _TYPE_UNITS:
                    raise UnitError(f"{path}, line {lineno}: channel {name!r} ({btype}) has units {unit!r}, which rtsource does not know; use uV, mV, V, fT, T or fT/cm") from None
        if kind in _TYPE_UNITS and si not in _TYPE_UNITS[kind]:
            raise UnitError(
                f"{path}, line {lineno}: channel {name!r} of type {btype} has units {unit!r}; a {btype} channel is measured in "
                f"{' or '.join(_TYPE_UNITS[kind])} (e.g. {'uV' if _TYPE_UNITS[kind] == ('V',) else 'fT'}); fix the units column"
            )
        names.append(name)
        types.append(kind)
        units.append(si)
        if "status" in col and f[col["status"]].casefold() == "bad":
            bads.append(name)
        rate = math.nan
        if "sampling_frequency" in col and f[col["sampling_frequency"]].casefold() != "n/a":
            try:
                rate = float(f[col["sampling_frequency"]])
            except ValueError:
                raise StreamError(f"{path}, line {lineno}: sampling_frequency {f[col['sampling_frequency']]!r} is not a number") from None
        rates.append(rate)
    for btype, chans in odd_types.items():
        notes.append(f"channel type {btype!r} is not a BIDS EEG/MEG type; {len(chans)} channel(s) read as misc ({', '.join(chans[:5])})")
    return names, types, units, bads, rates, notes


def _sfreq(sidecar: Path | None, types: list[str], rates: list[float], notes: list[str]) -> float:
    if sidecar is not None:
        value = _read_json(sidecar).get("SamplingFrequency")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            return float(value)
        if value is not None:
            raise StreamError(f"{sidecar}: SamplingFrequency = {value!r} must be a positive number of Hz")
    signal = {r for r, t in zip(rates, types) if t in _TYPE_UNITS and math.isfinite(r) and r > 0}
    if len(signal) == 1:
        return signal.pop()
    notes.append("the sampling rate is not stated (no SamplingFrequency in the sidecar JSON, no single sampling_frequency in channels.tsv)")
    return 0.0


def _meg_digitization(cs_path: Path, folder: Path, notes: list[str]) -> Digitization | None:
    """Landmarks, head coils and the head-shape file of a MEG coordsystem.json, checked."""
    doc = _read_json(cs_path)
    system_name = doc.get("MEGCoordinateSystem")
    if not isinstance(system_name, str) or not system_name.strip():
        notes.append(f"{cs_path.name} names no MEGCoordinateSystem; landmarks and head coils not read")
        return None
    if is_other(system_name):  # a described digitiser frame: usable when its landmarks place it
        system = BidsSystem("Other", Frame.UNKNOWN, "", "none", str(doc.get("MEGCoordinateSystemDescription") or "not described"))
    else:
        system = bids_system(system_name, where=str(cs_path))

    def unit_of(key: str, default: str | None) -> str | None:
        value = doc.get(key)
        return parse_length_unit(value, where=f"{cs_path}: {key}") if isinstance(value, str) and value.casefold() != "n/a" else default

    meg_unit = unit_of("MEGCoordinateUnits", None)

    def points(coord_key: str, sys_key: str, unit_key: str, canonical: bool) -> Points | None:
        coords = doc.get(coord_key)
        if not coords:
            return None
        if not isinstance(coords, dict):
            raise GeometryError(f"{cs_path}: {coord_key} must be an object of name: [x, y, z], got {coords!r}")
        their = doc.get(sys_key)
        if isinstance(their, str) and their.strip() and their.strip().casefold() != system.name.casefold():
            notes.append(f"{coord_key} are in {their!r}, the MEG sensors in {system.name!r}: left out (no transform given)")
            return None
        unit = unit_of(unit_key, meg_unit)
        if unit is None:
            raise UnitError(f"{cs_path}: {coord_key} has no unit ({unit_key} or MEGCoordinateUnits); add one ('m', 'cm' or 'mm')")
        from ..geometry.head_frames import fiducial_name

        labels, xyz = [], []
        for name, value in coords.items():
            if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
                raise GeometryError(f"{cs_path}: {coord_key}[{name!r}] must be [x, y, z] numbers, got {value!r}")
            label = fiducial_name(name) if canonical else str(name)
            if label is None:
                notes.append(f"landmark {name!r} in {coord_key} is not NAS/LPA/RPA: ignored")
                continue
            labels.append(label)
            xyz.append(value)
        return Points(np.array(xyz, float) * LENGTH_UNITS[unit], system.frame, "m", tuple(labels)) if labels else None

    fid = points("AnatomicalLandmarkCoordinates", "AnatomicalLandmarkCoordinateSystem", "AnatomicalLandmarkCoordinateUnits", True)
    hpi = points("HeadCoilCoordinates", "HeadCoilCoordinateSystem", "HeadCoilCoordinateUnits", False)
    if fid is not None:
        fid = fid.select([n for n in ("NAS", "LPA", "RPA") if n in fid.labels])
    fid_map = dict(zip(fid.labels, fid.positions_m)) if fid is not None else None
    if system.name == "Other":
        notes.append("MEG: " + other_system_note(fid_map is not None and len(fid_map) == 3, system.description, where=str(cs_path)))
    else:
        notes.append("MEG: " + check_bids_positions(system, fiducials=fid_map, where=str(cs_path)))
    report = ReadReport(str(cs_path), "bids", meg_unit or "m", "file", system.frame, f"file {cs_path.name}: {system.name} ({system.axes})")
    dig = Digitization(fiducials=fid, hpi=hpi, report=report, name=cs_path.name) if (fid is not None or hpi is not None) else None
    hs_name = doc.get("DigitizedHeadPoints")
    if isinstance(hs_name, str) and hs_name.strip() and hs_name.casefold() != "n/a":
        hs_sys = doc.get("DigitizedHeadPointsCoordinateSystem")
        if isinstance(hs_sys, str) and hs_sys.strip() and hs_sys.strip().casefold() != system.name.casefold():
            notes.append(f"DigitizedHeadPoints are in {hs_sys!r}, the MEG sensors in {system.name!r}: left out (no transform given)")
        else:
            hs = read_digitization(folder / Path(hs_name).name, unit=unit_of("DigitizedHeadPointsCoordinateUnits", None), frame=system.frame)
            notes.append(f"head shape: {hs.report.describe()}")
            hs = hs.as_headshape()
            dig = hs if dig is None else dig.merged(hs)
    return dig


def read_bids_acquisition(path: str | Path, positions: str | Path | None = None, *, accuracy: str = "normal") -> Acquisition:
    """Read a BIDS EEG or MEG session's sidecars into an :class:`Acquisition`.

    Parameters
    ----------
    path : str or Path
        A session directory (``sub-01`` or ``sub-01/ses-1``), its ``eeg/`` or ``meg/`` folder,
        or any file of the recording (``sub-01_task-rest_eeg.edf``, ``..._channels.tsv``), which
        chooses the recording when the folder holds several.
    positions : str or Path, optional
        A positions file (any format :func:`rtsource.sensors.readers.read_digitization`
        reads) used instead of the session's electrodes / landmarks.
    accuracy : {"point", "normal", "accurate"}
        MEG coil integration accuracy, when the MEG sensors are read from a FIF data file of
        the session (``*_meg.fif``).

    Returns
    -------
    Acquisition
        ``format = "bids"``; channels with rtsource types and SI units, ``bads`` from
        ``status``, the rate from ``SamplingFrequency``, the EEG electrodes (named like the
        channels), landmarks, head coils and head-shape points in the frame the
        coordinate system maps to (checked), and in ``notes`` every mapping made.

    Raises
    ------
    StreamError, UnitError, GeometryError, FrameError, ChannelError
        A missing or malformed sidecar (file and line named), a unit that does not fit its
        channel type, a coordinate system rtsource does not map or that the positions
        contradict.
    """
    folder, entities, datatype = _locate(Path(path))
    table = _sidecar(folder, entities, "channels.tsv")
    if table is None:
        raise StreamError(f"{str(folder)!r} has no *_channels.tsv for {'_'.join(entities) or 'this recording'}; a BIDS {datatype.upper()} recording needs one")
    names, types, units, bads, rates, notes = _read_channels(table)
    sfreq = _sfreq(_sidecar(folder, entities, f"{datatype}.json"), types, rates, notes)
    dig = None
    electrodes = _sidecar(folder, entities, "electrodes.tsv")
    if electrodes is not None:
        dig = read_bids_electrodes(electrodes)
        notes.append(f"electrodes: {dig.report.describe()}")
        if dig.electrodes is not None:
            missing = sorted(set(dig.electrodes.labels) - set(names))
            eeg_without = [n for n, t in zip(names, types) if t == "eeg" and n not in dig.electrodes.labels]
            if missing:
                notes.append(f"{len(missing)} electrode(s) of {electrodes.name} are not channels: {', '.join(missing[:8])}")
            if eeg_without:
                notes.append(f"{len(eeg_without)} EEG channel(s) have no position in {electrodes.name}: {', '.join(eeg_without[:8])}")
    elif "eeg" in types:
        notes.append(f"no *_electrodes.tsv in {str(folder)!r}: EEG positions must come from [sensors] montage")
    meg = dev_head_t = None
    if datatype == "meg":
        cs = _sidecar(folder, entities, "coordsystem.json")
        meg_dig = _meg_digitization(cs, folder, notes) if cs is not None else None
        if meg_dig is not None:
            dig = meg_dig if dig is None else _merge(dig, meg_dig)
        meg, dev_head_t = _meg_array(folder, entities, accuracy, notes)
    if positions is not None:
        dig = read_digitization(positions)
        notes.append(f"positions from {positions} (instead of the session's): {dig.report.describe()}")
    try:
        acq = Acquisition(
            str(path), "bids", sfreq, tuple(names), tuple(types), tuple(units), bads=tuple(bads), digitization=dig, meg=meg, dev_head_t=dev_head_t,
            notes=tuple(notes),
        )  # fmt: skip
    except StreamError as exc:
        raise ChannelError(f"{table}: {exc}") from None
    for note in notes:
        logger.info("%s: %s", table.name, note)
    return acq


def _meg_array(folder: Path, entities: tuple[str, ...], accuracy: str, notes: list[str]):
    """The MEG array and device->head transform of the session's FIF data file, if it has one.

    Other vendors' data (CTF ``.ds``, KIT ``.con``, 4D) hold the geometry in formats read
    through MNE-Python's FIF conversion; their sidecars alone give no sensor geometry.
    """
    fifs = sorted(f for f in folder.glob("*_meg.fif") if set(_entities(f.name)) >= set(entities))
    fifs = fifs or sorted(f for f in folder.glob("*_split-01_meg.fif") if set(_entities(f.name)) >= set(entities))
    if not fifs:
        notes.append("MEG sensor geometry is in the vendor data file, not the BIDS sidecars, and the session has no *_meg.fif; "
                     "convert the data to FIF (mne.io.read_raw(...).save) and give it as [recording] file")  # fmt: skip
        return None, None
    from ..sensors.meg.fif import read_meg_array_fif

    array = read_meg_array_fif(fifs[0], accuracy=accuracy)
    notes.append(f"MEG sensors from {fifs[0].name}: {array.n_channels} channels, accuracy {accuracy!r}")
    return array, array.dev_head_t


def _merge(eeg: Digitization, meg: Digitization) -> Digitization:
    """EEG electrodes with the MEG landmarks, coils and head shape (same frame required)."""
    if eeg.frame != meg.frame:
        raise GeometryError(
            f"the EEG electrodes are in the {eeg.frame.value!r} frame but the MEG landmarks in {meg.frame.value!r}; "
            "BIDS gives no transform between them: write both in the MEG coordinate system"
        )
    return dataclasses.replace(eeg.merged(meg), fiducials=eeg.fiducials if eeg.fiducials is not None else meg.fiducials)
