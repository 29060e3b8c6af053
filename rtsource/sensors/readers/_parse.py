"""What the readers share: rows with line numbers, errors that quote the line, label kinds.

A reader turns its file into :class:`Parsed` rows (label, x y z as written, line, kind) plus
what the file stated (unit, frame); :func:`assemble` then applies the unit, checks labels and
builds the :class:`~.digitization.Digitization`. Errors go through :func:`fail`, which names
the file, the line number and the offending text.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ...channel_names import canonical_label
from ...errors import ChannelError, GeometryError, UnitError
from ...geometry import Frame, Points, as_frame
from ...geometry.head_frames import FIDUCIAL_NAMES, fiducial_name, frame_for_coordinate_system
from ...geometry.units import LENGTH_UNITS
from .digitization import Digitization, ReadReport
from .units import parse_length_unit, resolve_unit

logger = logging.getLogger(__name__)


@dataclass
class Row:
    """One position as written in the file, with its line (0: not from a line) and kind."""

    label: str | None
    xyz: tuple[float, float, float]
    line: int
    kind: str  # "electrode", "fiducial", "headshape", "hpi"


@dataclass
class Parsed:
    """A file's rows and what it stated about them (unit, frame), filled in by a reader."""

    rows: list[Row] = field(default_factory=list)
    unit: str | None = None  # unit stated in the file (canonical)
    unit_line: int = 0
    frame: Frame | None = None
    frame_source: str = "not stated"
    notes: list[str] = field(default_factory=list)


def fail(path: Path, line: int, text: str, problem: str, fix: str = "") -> GeometryError:
    """The error for a bad line: file, line number, the problem, the text (shortened), the fix."""
    shown = text.strip()
    if len(shown) > 80:
        shown = shown[:77] + "..."
    where = f"{path}, line {line}" if line else str(path)
    return GeometryError(f"{where}: {problem}: {shown!r}" + (f"; {fix}" if fix else ""))


def read_bytes(path: Path) -> bytes:
    """The file's bytes; a missing or unreadable file is a GeometryError naming it."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise GeometryError(f"position file {str(path)!r} does not exist; check the path") from None
    except IsADirectoryError:
        raise GeometryError(f"position file {str(path)!r} is a directory; give the file itself") from None
    except OSError as exc:
        raise GeometryError(f"cannot read position file {str(path)!r}: {exc.strerror or exc}") from None


def read_text(path: Path) -> str:
    """The file as text: UTF-8 (with or without BOM), else Latin-1."""
    data = read_bytes(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # old ASA/BESA files are Windows-1252-ish; never fails


def numbered_lines(text: str) -> Iterable[tuple[int, str]]:
    """``(line number, line)`` pairs, counting from 1."""
    for i, line in enumerate(text.splitlines(), start=1):
        yield i, line


def number(token: str, path: Path, line: int, text: str, what: str = "coordinate") -> float:
    """``token`` as a finite float of sensible size, else the error for its line."""
    try:
        value = float(token)
    except ValueError:
        raise fail(path, line, text, f"{what} {token!r} is not a number", "fix or remove the line") from None
    if not math.isfinite(value) or abs(value) > 1e9:
        raise fail(path, line, text, f"{what} {token!r} is not a finite, sensible number", "fix or remove the line")
    return value


_HEADSHAPE_WORDS = {"hsp", "headshape", "head_shape", "extra", "point", "hs", "shape", "headpoint", "head_point"}
_HEADSHAPE_RE = re.compile(r"^(hsp|extra|headshape|head_shape|point|hs)[ _-]?\d+$", re.I)
_HPI_RE = re.compile(r"^(hpi|chpi|coil|hpi_coil)[ _-]?\d*$", re.I)


def classify(label: str, *, integer_is_headshape: bool) -> str:
    """``"fiducial"``, ``"headshape"``, ``"hpi"`` or ``"electrode"``, from a point's label."""
    if fiducial_name(label):
        return "fiducial"
    key = label.strip().casefold()
    if key in _HEADSHAPE_WORDS or _HEADSHAPE_RE.match(key):
        return "headshape"
    if _HPI_RE.match(key):
        return "hpi"
    if integer_is_headshape and key.isdigit():
        return "headshape"
    return "electrode"


def assemble(
    parsed: Parsed,
    path: Path,
    fmt: str,
    *,
    unit_arg: str | None,
    frame_arg: Frame | str | None,
    fmt_unit: str | None = None,
    fmt_frame: tuple[Frame, str] | None = None,
    scale_positions: float = 1.0,
) -> Digitization:
    """The :class:`Digitization` of a parsed file: unit resolved, metres, labels checked.

    Parameters
    ----------
    parsed : Parsed
        The reader's rows and what the file stated.
    path : Path
        The file (for messages and the report).
    fmt : str
        The format name written into the report.
    unit_arg, frame_arg : optional
        What the caller passed (wins over the file).
    fmt_unit : str, optional
        The unit the format fixes, used when the file states none.
    fmt_frame : (Frame, str), optional
        The frame the format fixes and why, used when the file states none.
    scale_positions : float
        Factor applied to the numbers before the unit (BrainVision unit-sphere montages).

    Raises
    ------
    ChannelError
        Repeated labels (case-insensitive, old 10-20 names = new) or a second fiducial.
    GeometryError, UnitError
        No positions, an empty label, a unit that does not fit the extent.
    """
    where = str(path)
    if not parsed.rows:
        raise GeometryError(f"{where}: no positions found in the file ({fmt} format); is it the right file and format?")
    pos = np.array([r.xyz for r in parsed.rows], dtype=float) * scale_positions
    unit, unit_source = resolve_unit(parsed.unit, parsed.unit_line, pos, unit_arg, where, fmt_unit)
    pos_m = pos * LENGTH_UNITS[unit]
    notes = list(parsed.notes)

    if frame_arg is not None:
        frame, frame_source = as_frame(frame_arg), "argument"
    elif parsed.frame is not None:
        frame, frame_source = parsed.frame, parsed.frame_source
    elif fmt_frame is not None:
        frame, frame_source = fmt_frame
    else:
        frame, frame_source = Frame.UNKNOWN, "not stated in the file"

    electrodes: list[tuple[str, np.ndarray, int]] = []
    fiducials: dict[str, tuple[np.ndarray, int, str]] = {}
    headshape: list[np.ndarray] = []
    hpi: list[tuple[str, np.ndarray, int]] = []
    for row, p in zip(parsed.rows, pos_m):
        if row.kind == "fiducial":
            name = fiducial_name(row.label or "")
            if name in fiducials:
                prev = fiducials[name]
                raise ChannelError(
                    f"{where}, line {row.line}: {row.label!r} is a second {name} (first: {prev[2]!r} on line "
                    f"{prev[1]}); keep one"
                )
            fiducials[name] = (p, row.line, row.label or name)
        elif row.kind == "headshape":
            headshape.append(p)
        elif row.kind == "hpi":
            hpi.append((row.label or f"hpi{len(hpi) + 1}", p, row.line))
        else:
            electrodes.append((row.label or "", p, row.line))

    # Labels must be unique as matched (case-insensitive, old 10-20 names = new ones). Files
    # that list both names of one electrode (T3 and T7) at the same place keep the first.
    seen: dict[str, tuple[str, int, np.ndarray]] = {}
    kept: list[tuple[str, np.ndarray, int]] = []
    for label, p, line in electrodes + hpi:
        if not label.strip():
            raise fail(path, line, label, "an electrode has an empty label", "name every electrode")
        key = canonical_label(label)
        if key in seen:
            first, first_line, first_p = seen[key]
            renamed = first.casefold() != label.casefold()
            if renamed and np.linalg.norm(p - first_p) <= 2e-3:
                notes.append(f"{label!r} (line {line}) is another name of {first!r} (line {first_line}) at the same place: kept {first!r}")
                continue
            same = " (the same electrode after case folding and 10-20 renaming, at a different place)" if renamed else ""
            raise ChannelError(
                f"{where}, line {line}: label {label!r} repeats {first!r} from line {first_line}{same}; "
                f"remove or rename one"
            )
        seen[key] = (label, line, p)
        kept.append((label, p, line))
    kept_ids = {id(x[1]) for x in kept}
    electrodes = [e for e in electrodes if id(e[1]) in kept_ids]
    hpi = [h for h in hpi if id(h[1]) in kept_ids]

    if "NAS" not in fiducials and "LPA" in fiducials and "RPA" in fiducials:
        nz = [(label, p, line) for label, p, line in electrodes if label.strip().casefold() == "nz"]
        if nz:
            fiducials["NAS"] = (nz[0][1], nz[0][2], nz[0][0])
            notes.append(f"no NAS/Nasion label: the electrode 'Nz' (line {nz[0][2]}) is used as the nasion")

    def pts(items, labelled=True):
        if not items:
            return None
        if labelled:
            return Points(np.array([x[1] for x in items]), frame, "m", tuple(x[0] for x in items))
        return Points(np.array(items), frame, "m")

    fid_items = [(n, fiducials[n][0]) for n in FIDUCIAL_NAMES if n in fiducials]
    if 0 < len(fid_items) < 3:
        notes.append(f"only {', '.join(n for n, _ in fid_items)} of the fiducials NAS, LPA, RPA are in the file")
    report = ReadReport(where, fmt, unit, unit_source, frame, frame_source, tuple(notes))
    if frame == Frame.UNKNOWN:
        logger.info("%s: frame not stated; positions must be aligned before use", where)
    return Digitization(
        pts(electrodes),
        Points(np.array([p for _, p in fid_items]), frame, "m", tuple(n for n, _ in fid_items)) if fid_items else None,
        pts(headshape, labelled=False),
        pts(hpi),
        report,
        path.name,
    )


def directive(line: str) -> tuple[str, str] | None:
    """``# unit: mm`` / ``// frame = head`` style directives in comment lines."""
    m = re.match(r"^\s*(?:#|//|%)\s*(unit|units|frame|coordsys|coordinate_system|coordinates)\s*[:=]\s*(\S.*?)\s*$", line, re.I)
    if not m:
        return None
    key = m.group(1).casefold()
    return ("unit" if key.startswith("unit") else "frame"), m.group(2)


def apply_directive(parsed: Parsed, key: str, value: str, path: Path, line: int, text: str) -> None:
    """Record a ``unit`` or ``frame`` directive of ``line`` in ``parsed``."""
    if key == "unit":
        try:
            parsed.unit = parse_length_unit(value, where=f"{path}, line {line}")
        except UnitError as exc:
            raise UnitError(f"{exc}: {text.strip()!r}") from None
        parsed.unit_line = line
    else:
        frame, reason = frame_for_coordinate_system(value)
        parsed.frame = frame
        parsed.frame_source = f"file, line {line}: {reason}"
        if frame == Frame.UNKNOWN:
            parsed.notes.append(reason)
