"""BIDS electrode files: ``*_electrodes.tsv`` with the sibling ``*_coordsystem.json``."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from pathlib import Path

from ...errors import GeometryError
from ...geometry import Frame
from ...geometry.head_frames import FIDUCIAL_NAMES
from ...geometry.units import LENGTH_UNITS
from ._parse import Parsed, Row, assemble, classify, fail, number, numbered_lines, read_text
from .bids_frames import BidsSystem, bids_system, check_bids_positions, is_other, other_system_note
from .digitization import Digitization
from .units import parse_length_unit

logger = logging.getLogger(__name__)


def _find_coordsystem(path: Path) -> Path | None:
    name = path.name
    if name.endswith("_electrodes.tsv"):
        candidate = path.with_name(name[: -len("_electrodes.tsv")] + "_coordsystem.json")
        if candidate.exists():
            return candidate
    # BIDS allows the coordsystem file to drop entities (e.g. _acq-); take the only one with
    # the same subject, or the only one in the folder.
    found = sorted(path.parent.glob("*_coordsystem.json"))
    sub = re.match(r"^(sub-[^_]+)", name)
    if sub:
        same = [f for f in found if f.name.startswith(sub.group(1) + "_")]
        if len(same) == 1:
            return same[0]
    return found[0] if len(found) == 1 else None


def _json_xyz(value, key: str, path: Path) -> tuple[float, float, float] | None:
    if isinstance(value, str) and value.strip().casefold() in ("n/a", ""):
        return None
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        or not all(math.isfinite(v) and abs(v) <= 1e9 for v in value)
    ):
        raise GeometryError(f"{path}: {key} must be a list of 3 finite numbers [x, y, z], got {value!r}")
    return float(value[0]), float(value[1]), float(value[2])


def _json_str(doc: dict, key: str, path: Path) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise GeometryError(f"{path}: {key} must be a string, got {value!r}")
    return value.strip() or None


def read_bids_electrodes(
    path: str | Path,
    *,
    coordsystem: str | Path | None = None,
    unit: str | None = None,
    frame: Frame | str | None = None,
) -> Digitization:
    """Read a BIDS ``*_electrodes.tsv`` with its ``*_coordsystem.json``.

    Parameters
    ----------
    path : path
        The electrodes file: tab-separated, header with at least ``name``, ``x``, ``y``, ``z``
        (other columns are ignored); ``n/a`` coordinates leave that electrode out (noted).
    coordsystem : path, optional
        The coordsystem JSON; by default the sibling with the same entities
        (``sub-01_ses-1_electrodes.tsv`` -> ``sub-01_ses-1_coordsystem.json``), else the
        only one for that subject in the folder. Without one, the unit is guessed and the
        frame is UNKNOWN.
    unit, frame : optional
        Override what the JSON says.

    Notes
    -----
    Read from the JSON: ``EEGCoordinateSystem`` / ``iEEGCoordinateSystem``, mapped to a
    frame explicitly and checked against the landmarks or the 10-20 labels by
    :mod:`.bids_frames` (CapTrak, ElektaNeuromag -> HEAD; CTF, EEGLAB, 4DBti, KitYokogawa ->
    CTF (ALS); fsaverage, MNI -> TEMPLATE; ``Other`` -> UNKNOWN only with the three landmarks,
    which then align it; any other name is refused with the supported list unless ``frame=``
    is given; the mapping and the check are in the report's notes),
    ``EEGCoordinateUnits``, ``AnatomicalLandmarkCoordinates`` (or the older
    ``FiducialsCoordinates``) with their own system and units, and ``HeadCoilCoordinates``
    (HPI). Landmarks or coils declared in a different coordinate system than the electrodes
    are left out (noted), since no transform between the two is given.
    """
    path = Path(path)
    text = read_text(path)
    parsed = Parsed()
    header: list[str] | None = None
    cols: dict[str, int] = {}
    skipped: list[str] = []
    for lineno, line in numbered_lines(text):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("\t")]
        if header is None:
            header = [f.casefold() for f in fields]
            for want in ("name", "x", "y", "z"):
                if want not in header:
                    raise fail(
                        path, lineno, line, f"the header has no {want!r} column",
                        "a BIDS electrodes.tsv starts with the tab-separated header 'name x y z ...'",
                    )
                cols[want] = header.index(want)
            continue
        if len(fields) != len(header):
            raise fail(path, lineno, line, f"{len(fields)} tab-separated fields, but the header has {len(header)}", "fix the row")
        label = fields[cols["name"]]
        raw = [fields[cols[k]] for k in ("x", "y", "z")]
        if any(v.casefold() == "n/a" for v in raw):
            skipped.append(label)
            continue
        xyz = tuple(number(v, path, lineno, line) for v in raw)
        parsed.rows.append(Row(label, xyz, lineno, classify(label, integer_is_headshape=False)))
    if header is None:
        raise GeometryError(f"{path}: the file is empty; a BIDS electrodes.tsv needs the header 'name x y z ...'")
    if skipped:
        parsed.notes.append(f"{len(skipped)} electrode(s) with n/a positions left out: {', '.join(skipped[:10])}")

    declared: BidsSystem | None = None
    other: str | None = None  # the description of an 'Other' system
    cs_path = Path(coordsystem) if coordsystem is not None else _find_coordsystem(path)
    if cs_path is None:
        parsed.notes.append("no *_coordsystem.json found next to the file")
        logger.warning("%s: no coordsystem.json found; unit guessed, frame unknown", path)
    else:
        raw_json = read_text(cs_path)
        try:
            doc = json.loads(raw_json)
        except json.JSONDecodeError as exc:
            bad = raw_json.splitlines()[exc.lineno - 1] if 0 < exc.lineno <= len(raw_json.splitlines()) else ""
            raise fail(cs_path, exc.lineno, bad, f"not valid JSON ({exc.msg})", "fix the JSON syntax") from None
        except RecursionError:
            raise GeometryError(f"{cs_path}: JSON nested too deeply") from None
        if not isinstance(doc, dict):
            raise GeometryError(f"{cs_path}: the top level must be a JSON object, got {type(doc).__name__}")
        system = None
        for prefix in ("EEG", "iEEG"):
            system = _json_str(doc, f"{prefix}CoordinateSystem", cs_path)
            units = _json_str(doc, f"{prefix}CoordinateUnits", cs_path)
            if system or units:
                break
        else:
            units = None
        if units and units.casefold() != "n/a":
            parsed.unit = parse_length_unit(units, where=f"{cs_path}: EEGCoordinateUnits")
        if system and frame is None and is_other(system):
            other = _json_str(doc, f"{prefix}CoordinateSystemDescription", cs_path) or ""
            parsed.frame, parsed.frame_source = Frame.UNKNOWN, f"file {cs_path.name}: Other (aligned by its landmarks)"
        elif system and frame is None:
            declared = bids_system(system, where=str(cs_path))
            parsed.frame, parsed.frame_source = declared.frame, f"file {cs_path.name}: {declared.name} ({declared.axes})"
        else:
            parsed.notes.append(f"{cs_path.name} does not name the coordinate system")

        def extra(coord_key: str, sys_key: str, unit_key: str, kind: str) -> None:
            coords = doc.get(coord_key)
            if coords is None:
                return
            if not isinstance(coords, dict):
                raise GeometryError(f"{cs_path}: {coord_key} must be an object of name: [x, y, z], got {coords!r}")
            their_sys = _json_str(doc, sys_key, cs_path)
            if their_sys and system and their_sys.casefold() != system.casefold():
                parsed.notes.append(
                    f"{coord_key} are in {their_sys!r}, the electrodes in {system!r}: left out (no transform given)"
                )
                return
            their_units = _json_str(doc, unit_key, cs_path)
            factor = 1.0
            if their_units and their_units.casefold() != "n/a" and parsed.unit is not None:
                factor = LENGTH_UNITS[parse_length_unit(their_units, where=f"{cs_path}: {unit_key}")] / LENGTH_UNITS[parsed.unit]
            for name, value in coords.items():
                xyz = _json_xyz(value, f"{coord_key}[{name!r}]", cs_path)
                if xyz is None:
                    continue
                k = kind if kind == "hpi" else classify(str(name), integer_is_headshape=False)
                if kind == "fiducial" and k != "fiducial":
                    parsed.notes.append(f"landmark {name!r} in {coord_key} is not NAS/LPA/RPA: ignored")
                    continue
                parsed.rows.append(Row(str(name), tuple(v * factor for v in xyz), 0, k))

        extra("AnatomicalLandmarkCoordinates", "AnatomicalLandmarkCoordinateSystem", "AnatomicalLandmarkCoordinateUnits", "fiducial")
        if not any(r.kind == "fiducial" for r in parsed.rows):
            extra("FiducialsCoordinates", "FiducialsCoordinateSystem", "FiducialsCoordinateUnits", "fiducial")
        extra("HeadCoilCoordinates", "HeadCoilCoordinateSystem", "HeadCoilCoordinateUnits", "hpi")
    dig = assemble(parsed, path, "bids", unit_arg=unit, frame_arg=frame)
    if declared is not None or other is not None:
        note = checked_frame_note(dig, declared, str(cs_path)) if declared is not None else other_system_note(dig.has_fiducials, other, where=str(cs_path))
        dig = dataclasses.replace(dig, report=dataclasses.replace(dig.report, notes=dig.report.notes + (note,)))
    return dig


def checked_frame_note(dig: Digitization, declared: BidsSystem, where: str) -> str:
    """Check a digitisation against its declared BIDS system (:func:`check_bids_positions`)."""
    fid = None
    if dig.fiducials is not None:
        fid = {n: p for n, p in zip(dig.fiducials.labels, dig.fiducials.positions_m) if n in FIDUCIAL_NAMES}
    el = dig.electrodes
    return check_bids_positions(
        declared, fiducials=fid, labels=el.labels if el is not None else (), positions_m=el.positions_m if el is not None else None, where=where
    )


__all__ = ["checked_frame_note", "read_bids_electrodes"]
