"""Readers of electrode and digitiser position files, and of transform files.

Every reader returns a :class:`Digitization`: electrodes (labelled), fiducials (NAS, LPA,
RPA), headshape points and head-localisation (HPI) coils, each as :class:`Points` in metres
in one frame, plus a :class:`ReadReport` that says which unit and frame were assumed and
why. Positions are converted to metres here, at the edge, and nowhere else.

Formats
-------
========================  ==================================================================
``*_electrodes.tsv``      BIDS: tab-separated ``name x y z ...`` with the sibling
                          ``*_coordsystem.json`` giving units, coordinate system, landmarks
                          (``AnatomicalLandmarkCoordinates``) and head coils.
``.elc``                  ASA / ANT Neuro: ``UnitPosition``, ``Positions`` (``x y z`` or
                          ``label : x y z``), ``Labels`` (one per line or tab-separated).
``.sfp``                  BESA / EGI: ``label x y z`` per line, no unit (guessed); EGI's
                          ``FidNz``, ``FidT9``, ``FidT10`` are the fiducials.
``.bvef`` / ``.bvct``     BrainVision XML: ``<Electrode>`` with ``Name``, ``Theta``, ``Phi``,
                          ``Radius`` (degrees, mm; BESA convention, see :func:`read_bvef`), or
                          CapTrak ``<CapTrakElectrode>`` with ``X``, ``Y``, ``Z`` in mm.
``.pos`` ``.hsp`` ``.elp``  Polhemus-style digitiser text (see :func:`read_polhemus`).
``.csv`` ``.tsv`` ``.txt``  Generic ``label,x,y,z`` (see :func:`read_positions_csv`).
========================  ==================================================================

Units. A unit the file states is used; a unit passed by the caller overrides it; only when
neither exists is it guessed from the extent (:func:`rtsource.geometry.estimate_length_unit`).
A stated unit that the extent contradicts -- a head that would be under 5 cm or over 1 m
across, when a unit 10 or more times smaller or larger makes it head-sized -- is refused
with :class:`~rtsource.errors.UnitError` (millimetres read as metres and the reverse).

Errors. A malformed file raises :class:`~rtsource.errors.GeometryError` naming the file,
the line number and the offending text; duplicate labels raise
:class:`~rtsource.errors.ChannelError`; units :class:`~rtsource.errors.UnitError`. No other
exception escapes a reader (the property tests feed them random and mutated files).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable
from xml.parsers import expat

import numpy as np

from ..errors import ChannelError, FrameError, GeometryError, UnitError
from ..geometry import Frame, Points, Transform, as_frame
from ..geometry.head_frames import FIDUCIAL_NAMES, fiducial_name, frame_for_coordinate_system
from ..geometry.units import LENGTH_UNITS, estimate_length_unit
from ..channel_names import canonical_label
from .montage import Montage

logger = logging.getLogger(__name__)

#: A head-sized point set (electrodes, fiducials, headshape) spans this much (bounding-box
#: diagonal, metres). Outside it in the stated unit, but inside it in another unit, the
#: stated unit is refused.
HEAD_EXTENT_RANGE_M = (0.05, 1.0)

#: Radius an idealised unit-sphere BVEF montage is scaled to (metres).
BVEF_SPHERE_RADIUS_M = 0.085

_UNIT_SPELLINGS = {
    "m": "m", "meter": "m", "meters": "m", "metre": "m", "metres": "m",
    "cm": "cm", "centimeter": "cm", "centimeters": "cm", "centimetre": "cm", "centimetres": "cm",
    "mm": "mm", "millimeter": "mm", "millimeters": "mm", "millimetre": "mm", "millimetres": "mm",
    "dm": "dm",
}  # fmt: skip


# ---- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadReport:
    """What a reader assumed and why.

    Attributes
    ----------
    path : str
        The file read.
    format : str
        ``"bids"``, ``"elc"``, ``"sfp"``, ``"bvef"``, ``"bvct"``, ``"polhemus"``, ``"csv"``.
    unit : str
        The length unit of the numbers in the file.
    unit_source : str
        ``"file"`` (stated in it), ``"format"`` (fixed by the format), ``"argument"`` (the
        caller said so) or ``"guessed from extent"``.
    frame : Frame
        The frame the positions are in.
    frame_source : str
        Why: ``"file: ..."``, ``"format: ..."``, ``"argument"`` or ``"not stated"``.
    notes : tuple of str
        Anything else the reader decided (points left out, Nz used as nasion, ...).
    """

    path: str
    format: str
    unit: str
    unit_source: str
    frame: Frame
    frame_source: str
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        """One paragraph for logs and the CLI."""
        text = (
            f"{self.path} ({self.format}): unit {self.unit!r} ({self.unit_source}), "
            f"frame {self.frame.value!r} ({self.frame_source})"
        )
        return text + "".join(f"; {n}" for n in self.notes)


@dataclass(frozen=True)
class Digitization:
    """Positions read from a digitiser or montage file, all in one frame, metres.

    Attributes
    ----------
    electrodes : Points or None
        Labelled electrode positions.
    fiducials : Points or None
        Anatomical landmarks, labelled with the canonical names ``NAS``, ``LPA``, ``RPA``
        (in that order; any subset the file had).
    headshape : Points or None
        Unlabelled extra points on the scalp (Polhemus headshape).
    hpi : Points or None
        Head-localisation coils (MEG), labelled.
    report : ReadReport or None
        How the file was read.
    name : str
        Where the positions came from (file name).
    """

    electrodes: Points | None = None
    fiducials: Points | None = None
    headshape: Points | None = None
    hpi: Points | None = None
    report: ReadReport | None = None
    name: str = "digitization"

    def __post_init__(self) -> None:
        sets = self._sets()
        if not sets:
            raise GeometryError(f"{self.name}: no positions (no electrodes, fiducials, headshape or HPI coils)")
        frames = {s.frame for _, s in sets}
        if len(frames) > 1:
            listing = ", ".join(f"{k} in {s.frame.value!r}" for k, s in sets)
            raise GeometryError(f"{self.name}: point sets are in different frames ({listing}); transform them first")

    def _sets(self) -> list[tuple[str, Points]]:
        out = []
        for kind in ("electrodes", "fiducials", "headshape", "hpi"):
            pts = getattr(self, kind)
            if pts is not None and len(pts):
                out.append((kind, pts))
        return out

    @property
    def frame(self) -> Frame:
        return self._sets()[0][1].frame

    @property
    def has_fiducials(self) -> bool:
        """True when NAS, LPA and RPA are all present."""
        return self.fiducials is not None and set(self.fiducials.labels) >= set(FIDUCIAL_NAMES)

    def all_positions_m(self) -> np.ndarray:
        """Every position (electrodes, fiducials, headshape, HPI), metres, shape (n, 3)."""
        return np.concatenate([s.positions_m for _, s in self._sets()])

    def transformed(self, transform: Transform) -> "Digitization":
        """All point sets moved by ``transform`` (frames checked)."""
        moved = {k: s.to_unit("m").transformed(transform) for k, s in self._sets()}
        return Digitization(
            moved.get("electrodes"), moved.get("fiducials"), moved.get("headshape"), moved.get("hpi"), self.report, self.name
        )

    def with_frame(self, frame: Frame | str) -> "Digitization":
        """Declare the frame of positions read as UNKNOWN."""
        moved = {k: s.with_frame(frame) for k, s in self._sets()}
        return Digitization(
            moved.get("electrodes"), moved.get("fiducials"), moved.get("headshape"), moved.get("hpi"), self.report, self.name
        )

    def merged(self, other: "Digitization") -> "Digitization":
        """Electrodes/fiducials from ``self`` and headshape/HPI added from ``other`` (same frame).

        Used to combine a montage file with a separate headshape file. Fiducials of ``self``
        win; ``other``'s are used when ``self`` has none.
        """
        if other.frame != self.frame:
            raise FrameError(
                f"cannot merge {other.name!r} (frame {other.frame.value!r}) into {self.name!r} "
                f"(frame {self.frame.value!r}); both files must use the same digitiser frame"
            )

        def cat(a: Points | None, b: Points | None) -> Points | None:
            if a is None or not len(a):
                return b
            if b is None or not len(b):
                return a
            labels = a.labels + b.labels if (a.labels and b.labels) else ()
            return Points(np.concatenate([a.positions_m, b.positions_m]), a.frame, "m", labels)

        return Digitization(
            cat(self.electrodes, other.electrodes) if self.electrodes is None else self.electrodes,
            self.fiducials if self.fiducials is not None else other.fiducials,
            cat(self.headshape, other.headshape),
            cat(self.hpi, other.hpi),
            self.report,
            self.name,
        )

    def montage(self) -> Montage:
        """The electrodes (and fiducials when all three are present) as a :class:`Montage`."""
        if self.electrodes is None or not len(self.electrodes):
            raise ChannelError(f"{self.name}: the file has no labelled electrodes, so it gives no montage")
        fid = self.fiducials if self.has_fiducials else None
        if fid is not None:
            fid = fid.select(list(FIDUCIAL_NAMES))
        return Montage(self.electrodes, fid, self.name)


# ---- shared parsing helpers ----------------------------------------------------------------


@dataclass
class _Row:
    label: str | None
    xyz: tuple[float, float, float]
    line: int
    kind: str  # "electrode", "fiducial", "headshape", "hpi"


@dataclass
class _Parsed:
    rows: list[_Row] = field(default_factory=list)
    unit: str | None = None  # unit stated in the file (canonical)
    unit_line: int = 0
    frame: Frame | None = None
    frame_source: str = "not stated"
    notes: list[str] = field(default_factory=list)


def _fail(path: Path, line: int, text: str, problem: str, fix: str = "") -> GeometryError:
    shown = text.strip()
    if len(shown) > 80:
        shown = shown[:77] + "..."
    where = f"{path}, line {line}" if line else str(path)
    return GeometryError(f"{where}: {problem}: {shown!r}" + (f"; {fix}" if fix else ""))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise GeometryError(f"position file {str(path)!r} does not exist; check the path") from None
    except IsADirectoryError:
        raise GeometryError(f"position file {str(path)!r} is a directory; give the file itself") from None
    except OSError as exc:
        raise GeometryError(f"cannot read position file {str(path)!r}: {exc.strerror or exc}") from None


def _read_text(path: Path) -> str:
    data = _read_bytes(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # old ASA/BESA files are Windows-1252-ish; never fails


def _lines(text: str) -> Iterable[tuple[int, str]]:
    for i, line in enumerate(text.splitlines(), start=1):
        yield i, line


def _number(token: str, path: Path, line: int, text: str, what: str = "coordinate") -> float:
    try:
        value = float(token)
    except ValueError:
        raise _fail(path, line, text, f"{what} {token!r} is not a number", "fix or remove the line") from None
    if not math.isfinite(value) or abs(value) > 1e9:
        raise _fail(path, line, text, f"{what} {token!r} is not a finite, sensible number", "fix or remove the line")
    return value


def parse_length_unit(text: str, *, where: str = "unit") -> str:
    """Canonical length unit (``"m"``, ``"cm"``, ``"mm"``, ``"dm"``) for a spelling."""
    key = text.strip().strip("[]()").strip().casefold()
    try:
        return _UNIT_SPELLINGS[key]
    except KeyError:
        raise UnitError(f"{where}: length unit {text.strip()!r} is not known; use one of m, cm, mm") from None


def _extent(points: np.ndarray) -> float:
    return float(np.linalg.norm(np.ptp(points, axis=0))) if len(points) >= 2 else 0.0


def check_unit_against_extent(positions: np.ndarray, unit: str, *, where: str, source: str = "stated") -> None:
    """Refuse a unit that makes head-sized data implausibly small or large.

    Parameters
    ----------
    positions : ndarray, shape (n, 3)
        Coordinates as written in the file.
    unit : str
        The unit they are said to be in.
    where : str
        The file (for the message).
    source : str
        Who said so (``"stated in the file"``, ``"passed as unit="``).

    Raises
    ------
    UnitError
        When the bounding-box diagonal in ``unit`` is outside :data:`HEAD_EXTENT_RANGE_M`
        while another of m / cm / mm (a factor of 10 or more away) brings it inside.
        Fewer than 3 points, or coincident points, are not checked.
    """
    pts = np.asarray(positions, dtype=float)
    if len(pts) < 3:
        return
    extent = _extent(pts)
    if not extent > 0:
        return
    lo, hi = HEAD_EXTENT_RANGE_M
    size = extent * LENGTH_UNITS[unit]
    if lo <= size <= hi:
        return
    fits = [u for u in ("m", "cm", "mm") if lo <= extent * LENGTH_UNITS[u] <= hi]
    if fits:
        better = min(fits, key=lambda u: abs(math.log10(extent * LENGTH_UNITS[u] / 0.2)))
        raise UnitError(
            f"{where}: positions are said to be in {unit!r} ({source}) but then the head would be "
            f"{size * 1e3:.4g} mm across (bounding-box diagonal of {len(pts)} points), not the "
            f"50-1000 mm of a head; the numbers fit {better!r} (the head would be "
            f"{extent * LENGTH_UNITS[better] * 1e3:.0f} mm across). Fix the unit in the file or pass "
            f"unit={better!r}"
        )


def _resolve_unit(parsed: _Parsed, positions: np.ndarray, unit_arg: str | None, where: str, fmt_unit: str | None = None) -> tuple[str, str]:
    if unit_arg is not None:
        unit = parse_length_unit(unit_arg, where=f"{where}: unit argument")
        check_unit_against_extent(positions, unit, where=where, source="passed as unit=")
        return unit, "argument"
    if parsed.unit is not None:
        src = "stated in the file" + (f" on line {parsed.unit_line}" if parsed.unit_line else "")
        check_unit_against_extent(positions, parsed.unit, where=where, source=src)
        return parsed.unit, "file"
    if fmt_unit is not None:
        check_unit_against_extent(positions, fmt_unit, where=where, source="fixed by the format")
        return fmt_unit, "format"
    if len(positions) < 2 or not _extent(positions) > 0:
        raise UnitError(
            f"{where}: the file does not state a unit and {len(positions)} point(s) are too few to "
            f"guess it from their extent; pass unit='mm' (or 'cm', 'm')"
        )
    unit = estimate_length_unit(positions)
    size = _extent(positions) * LENGTH_UNITS[unit]
    lo, hi = HEAD_EXTENT_RANGE_M
    if len(positions) >= 3 and not lo <= size <= hi:
        raise UnitError(
            f"{where}: the file does not state a unit and its {len(positions)} points span "
            f"{_extent(positions):.4g} (bounding-box diagonal), not head-sized in m, cm or mm; "
            f"check the file or pass unit="
        )
    return unit, "guessed from extent"


_HEADSHAPE_WORDS = {"hsp", "headshape", "head_shape", "extra", "point", "hs", "shape", "headpoint", "head_point"}
_HEADSHAPE_RE = re.compile(r"^(hsp|extra|headshape|head_shape|point|hs)[ _-]?\d+$", re.I)
_HPI_RE = re.compile(r"^(hpi|chpi|coil|hpi_coil)[ _-]?\d*$", re.I)


def _classify(label: str, *, integer_is_headshape: bool) -> str:
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


def _assemble(
    parsed: _Parsed,
    path: Path,
    fmt: str,
    *,
    unit_arg: str | None,
    frame_arg: Frame | str | None,
    fmt_unit: str | None = None,
    fmt_frame: tuple[Frame, str] | None = None,
    scale_positions: float = 1.0,
) -> Digitization:
    where = str(path)
    if not parsed.rows:
        raise GeometryError(f"{where}: no positions found in the file ({fmt} format); is it the right file and format?")
    pos = np.array([r.xyz for r in parsed.rows], dtype=float) * scale_positions
    unit, unit_source = _resolve_unit(parsed, pos, unit_arg, where, fmt_unit)
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
            raise _fail(path, line, label, "an electrode has an empty label", "name every electrode")
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


def _directive(line: str) -> tuple[str, str] | None:
    """``# unit: mm`` / ``// frame = head`` style directives in comment lines."""
    m = re.match(r"^\s*(?:#|//|%)\s*(unit|units|frame|coordsys|coordinate_system|coordinates)\s*[:=]\s*(\S.*?)\s*$", line, re.I)
    if not m:
        return None
    key = m.group(1).casefold()
    return ("unit" if key.startswith("unit") else "frame"), m.group(2)


def _apply_directive(parsed: _Parsed, key: str, value: str, path: Path, line: int, text: str) -> None:
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


# ---- BIDS ---------------------------------------------------------------------------------


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
    Read from the JSON: ``EEGCoordinateSystem`` / ``iEEGCoordinateSystem`` (mapped by
    :func:`rtsource.geometry.head_frames.frame_for_coordinate_system`: CapTrak,
    ElektaNeuromag -> HEAD; CTF, EEGLAB -> CTF (ALS); MNI305, fsaverage -> TEMPLATE; others
    UNKNOWN), ``EEGCoordinateUnits``, ``AnatomicalLandmarkCoordinates`` (or the older
    ``FiducialsCoordinates``) with their own system and units, and ``HeadCoilCoordinates``
    (HPI). Landmarks or coils declared in a different coordinate system than the electrodes
    are left out (noted), since no transform between the two is given.
    """
    path = Path(path)
    text = _read_text(path)
    parsed = _Parsed()
    header: list[str] | None = None
    cols: dict[str, int] = {}
    skipped: list[str] = []
    for lineno, line in _lines(text):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("\t")]
        if header is None:
            header = [f.casefold() for f in fields]
            for want in ("name", "x", "y", "z"):
                if want not in header:
                    raise _fail(
                        path, lineno, line, f"the header has no {want!r} column",
                        "a BIDS electrodes.tsv starts with the tab-separated header 'name x y z ...'",
                    )
                cols[want] = header.index(want)
            continue
        if len(fields) != len(header):
            raise _fail(path, lineno, line, f"{len(fields)} tab-separated fields, but the header has {len(header)}", "fix the row")
        label = fields[cols["name"]]
        raw = [fields[cols[k]] for k in ("x", "y", "z")]
        if any(v.casefold() == "n/a" for v in raw):
            skipped.append(label)
            continue
        xyz = tuple(_number(v, path, lineno, line) for v in raw)
        parsed.rows.append(_Row(label, xyz, lineno, _classify(label, integer_is_headshape=False)))
    if header is None:
        raise GeometryError(f"{path}: the file is empty; a BIDS electrodes.tsv needs the header 'name x y z ...'")
    if skipped:
        parsed.notes.append(f"{len(skipped)} electrode(s) with n/a positions left out: {', '.join(skipped[:10])}")

    cs_path = Path(coordsystem) if coordsystem is not None else _find_coordsystem(path)
    if cs_path is None:
        parsed.notes.append("no *_coordsystem.json found next to the file")
        logger.warning("%s: no coordsystem.json found; unit guessed, frame unknown", path)
    else:
        raw_json = _read_text(cs_path)
        try:
            doc = json.loads(raw_json)
        except json.JSONDecodeError as exc:
            bad = raw_json.splitlines()[exc.lineno - 1] if 0 < exc.lineno <= len(raw_json.splitlines()) else ""
            raise _fail(cs_path, exc.lineno, bad, f"not valid JSON ({exc.msg})", "fix the JSON syntax") from None
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
        if system:
            fr, reason = frame_for_coordinate_system(system)
            parsed.frame, parsed.frame_source = fr, f"file {cs_path.name}: {reason}"
            if fr == Frame.UNKNOWN:
                desc = _json_str(doc, f"{prefix}CoordinateSystemDescription", cs_path)
                parsed.notes.append(reason + (f" (described as: {desc})" if desc else ""))
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
                k = kind if kind == "hpi" else _classify(str(name), integer_is_headshape=False)
                if kind == "fiducial" and k != "fiducial":
                    parsed.notes.append(f"landmark {name!r} in {coord_key} is not NAS/LPA/RPA: ignored")
                    continue
                parsed.rows.append(_Row(str(name), tuple(v * factor for v in xyz), 0, k))

        extra("AnatomicalLandmarkCoordinates", "AnatomicalLandmarkCoordinateSystem", "AnatomicalLandmarkCoordinateUnits", "fiducial")
        if not any(r.kind == "fiducial" for r in parsed.rows):
            extra("FiducialsCoordinates", "FiducialsCoordinateSystem", "FiducialsCoordinateUnits", "fiducial")
        extra("HeadCoilCoordinates", "HeadCoilCoordinateSystem", "HeadCoilCoordinateUnits", "hpi")
    return _assemble(parsed, path, "bids", unit_arg=unit, frame_arg=frame)


# ---- ASA .elc -----------------------------------------------------------------------------

_ELC_KEY = re.compile(r"^([A-Za-z][A-Za-z_]*)\s*=?\s*(.*)$")


def read_elc(path: str | Path, *, unit: str | None = None, frame: Frame | str | None = None) -> Digitization:
    """Read an ASA / ANT Neuro ``.elc`` electrode file.

    Layout: header lines ``Key value`` (``UnitPosition mm``, ``NumberPositions= 97``,
    ``ReferenceLabel avg``), a ``Positions`` line followed by one ``x y z`` or
    ``label : x y z`` line per position, then a ``Labels`` line followed by the labels (one
    per line, or several separated by tabs). ``Polygons`` and later sections are ignored.
    ``#`` and ``//`` start comments. The frame is not stated by the format (UNKNOWN).
    ``LPA``, ``RPA`` and ``Nz`` (or ``NAS``) are the fiducials.
    """
    path = Path(path)
    text = _read_text(path)
    parsed = _Parsed()
    state = "header"
    n_declared: tuple[int, int] | None = None
    positions: list[tuple[tuple[float, float, float], int, str | None]] = []
    labels: list[tuple[str, int]] = []
    labels_line = 0
    for lineno, line in _lines(text):
        s = line.strip()
        if not s or s.startswith("#") or s.startswith("//"):
            continue
        low = s.casefold()
        if low == "positions":
            state = "positions"
            continue
        if low == "labels":
            state, labels_line = "labels", lineno
            continue
        m = _ELC_KEY.match(s)
        key = m.group(1).casefold() if m else ""
        if state != "labels" and key in ("numberpolygons", "typepolygons", "polygons"):
            state = "ignore"
            continue
        if state in ("header", "positions") and key == "unitposition":
            parsed.unit = parse_length_unit(m.group(2), where=f"{path}, line {lineno}")
            parsed.unit_line = lineno
            continue
        if state in ("header", "positions") and key == "numberpositions":
            try:
                n_declared = (int(m.group(2)), lineno)
            except ValueError:
                raise _fail(path, lineno, line, "NumberPositions is not an integer") from None
            continue
        if state == "header":
            if m and m.group(1):
                continue  # other header keys (ReferenceLabel, ...) carry nothing we need
            raise _fail(path, lineno, line, "unexpected text before the 'Positions' section", "an .elc file starts with 'Key value' lines")
        if state == "positions":
            label = None
            body = s
            if ":" in s:
                label, body = (x.strip() for x in s.split(":", 1))
                if not label:
                    raise _fail(path, lineno, line, "empty label before ':'")
            tokens = body.split()
            if len(tokens) != 3:
                raise _fail(path, lineno, line, f"expected 3 coordinates (x y z), got {len(tokens)} fields", "fix the position line")
            xyz = tuple(_number(t, path, lineno, line) for t in tokens)
            positions.append((xyz, lineno, label))
        elif state == "labels":
            parts = [p.strip() for p in s.split("\t")] if "\t" in s else [s]
            labels.extend((p, lineno) for p in parts if p)
    if state == "header" and not positions:
        raise GeometryError(f"{path}: no 'Positions' section; is this an ASA .elc file?")
    inline = [p[2] for p in positions]
    if all(x is not None for x in inline) and positions:
        names = [(x, p[1]) for x, p in zip(inline, positions)]
    elif labels:
        if len(labels) != len(positions):
            raise _fail(
                path, labels_line, "Labels",
                f"{len(labels)} labels for {len(positions)} positions", "every position needs exactly one label",
            )
        names = [(lab, pos[1]) for (lab, _), pos in zip(labels, positions)]
    else:
        raise GeometryError(f"{path}: positions have no labels (no 'Labels' section and no 'label : x y z' lines)")
    if n_declared is not None and n_declared[0] != len(positions):
        raise _fail(
            path, n_declared[1], f"NumberPositions= {n_declared[0]}",
            f"the header promises {n_declared[0]} positions but the file has {len(positions)}", "fix NumberPositions",
        )
    for (xyz, _, _), (label, line) in zip(positions, names):
        parsed.rows.append(_Row(label, xyz, line, _classify(label, integer_is_headshape=False)))
    if parsed.unit is None:
        parsed.notes.append("no UnitPosition line")
    return _assemble(parsed, path, "elc", unit_arg=unit, frame_arg=frame)


# ---- BESA / EGI .sfp -----------------------------------------------------------------------


def read_sfp(path: str | Path, *, unit: str | None = None, frame: Frame | str | None = None) -> Digitization:
    """Read a BESA / EGI ``.sfp`` file: one ``label x y z`` per line (whitespace-separated).

    The format states neither unit (EGI writes cm, BESA mm: guessed from the extent unless
    ``unit`` is given) nor frame (UNKNOWN). ``FidNz``, ``FidT9``, ``FidT10`` (EGI) and
    ``Nasion``/``LPA``/``RPA`` are the fiducials. ``#`` starts a comment line.
    """
    path = Path(path)
    text = _read_text(path)
    parsed = _Parsed()
    for lineno, line in _lines(text):
        s = line.strip()
        if not s or s.startswith("#") or s.startswith("//"):
            continue
        tokens = s.split()
        if len(tokens) != 4:
            raise _fail(path, lineno, line, f"expected 'label x y z' (4 fields), got {len(tokens)}", "fix or remove the line")
        xyz = tuple(_number(t, path, lineno, line) for t in tokens[1:])
        parsed.rows.append(_Row(tokens[0], xyz, lineno, _classify(tokens[0], integer_is_headshape=False)))
    return _assemble(parsed, path, "sfp", unit_arg=unit, frame_arg=frame)


# ---- BrainVision .bvef / .bvct ---------------------------------------------------------------


@dataclass
class _Node:
    tag: str
    line: int
    children: list["_Node"] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def child_text(self, name: str) -> tuple[str, int] | None:
        for c in self.children:
            if c.tag.casefold() == name.casefold():
                return "".join(c.text).strip(), c.line
        return None


def _parse_xml(data: bytes, path: Path) -> _Node:
    head = data[:4096].decode("latin-1").casefold()
    if "<!doctype" in head or "<!entity" in head or b"<!ENTITY" in data or b"<!DOCTYPE" in data:
        raise GeometryError(f"{path}: XML with a DOCTYPE or ENTITY declaration is refused (BrainVision files have none)")
    parser = expat.ParserCreate()
    stack: list[_Node] = []
    roots: list[_Node] = []

    def start(tag, attrs):
        node = _Node(tag, parser.CurrentLineNumber)
        (stack[-1].children if stack else roots).append(node)
        stack.append(node)

    def end(tag):
        stack.pop()

    def chars(text):
        if stack:
            stack[-1].text.append(text)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        lines = data.decode("utf-8", "replace").splitlines()
        bad = lines[exc.lineno - 1] if 0 < exc.lineno <= len(lines) else ""
        raise _fail(path, exc.lineno, bad, f"not well-formed XML ({expat.ErrorString(exc.code)})", "fix the XML") from None
    except (ValueError, UnicodeError, LookupError, RecursionError) as exc:  # LookupError: unknown encoding
        raise GeometryError(f"{path}: cannot parse the XML ({exc})") from None
    if not roots:
        raise GeometryError(f"{path}: no XML element found")
    return roots[0]


def read_bvef(path: str | Path, *, unit: str | None = None, frame: Frame | str | None = None) -> Digitization:
    """Read a BrainVision electrode file (``.bvef``) or CapTrak file (``.bvct``).

    ``.bvef``: ``<Electrodes>`` holding ``<Electrode>`` elements with ``<Name>``,
    ``<Theta>``, ``<Phi>`` (degrees) and ``<Radius>`` (mm). The angles follow BESA's
    convention: theta is the signed polar angle from the vertex (Cz), negative on the left;
    phi the azimuth from the T7->T8 axis toward the front, so
    ``x = r sin(theta) cos(phi)``, ``y = r sin(theta) sin(phi)``, ``z = r cos(theta)``
    with x toward T8, y toward Fpz, z through Cz (an idealised sphere frame, not a fiducial
    frame: UNKNOWN). When every radius is 1 the montage is a unit sphere and is scaled to
    :data:`BVEF_SPHERE_RADIUS_M`. Electrodes with radius 0 (no position) are left out.
    Explicit ``<X>``, ``<Y>``, ``<Z>`` children, when present, win over the angles.

    ``.bvct`` (``<BrainVisionCapTrakFileV1>``): ``<CapTrakElectrode>`` with ``<Name>``,
    ``<X>``, ``<Y>``, ``<Z>`` in mm in the CapTrak frame (HEAD: RAS from the fiducials).
    """
    path = Path(path)
    root = _parse_xml(_read_bytes(path), path)
    parsed = _Parsed()
    is_captrak = "captrak" in root.tag.casefold()
    if is_captrak:
        holder = next((c for c in root.children if c.tag.casefold() == "captrakelectrodelist"), None)
        elements = [c for c in (holder.children if holder else []) if c.tag.casefold() == "captrakelectrode"]
        fmt = "bvct"
    elif root.tag.casefold() == "electrodes":
        elements = [c for c in root.children if c.tag.casefold() == "electrode"]
        fmt = "bvef"
    else:
        raise _fail(path, root.line, f"<{root.tag}>", "the root element is not <Electrodes> or <BrainVisionCapTrakFileV1>", "is this a BrainVision file?")
    radii: list[float] = []
    zero_radius: list[str] = []

    def num(node: _Node, name: str) -> float | None:
        got = node.child_text(name)
        if got is None:
            return None
        return _number(got[0], path, got[1], f"<{name}>{got[0]}</{name}>", what=name)

    for el in elements:
        name = el.child_text("Name")
        if name is None or not name[0]:
            raise _fail(path, el.line, f"<{el.tag}>", "electrode without a <Name>", "give every electrode a name")
        label = name[0]
        x, y, z = num(el, "X"), num(el, "Y"), num(el, "Z")
        if x is not None and y is not None and z is not None:
            xyz = (x, y, z)
            radii.append(float(np.linalg.norm(xyz)))
        elif is_captrak:
            raise _fail(path, el.line, f"<{el.tag}> {label}", "CapTrak electrode without <X>, <Y>, <Z>")
        else:
            theta, phi, r = num(el, "Theta"), num(el, "Phi"), num(el, "Radius")
            if theta is None or phi is None or r is None:
                missing = [n for n, v in (("Theta", theta), ("Phi", phi), ("Radius", r)) if v is None]
                raise _fail(path, el.line, f"<{el.tag}> {label}", f"electrode {label!r} has no {', '.join(missing)}")
            if r < 0:
                raise _fail(path, el.line, f"<Radius>{r:g}</Radius>", f"electrode {label!r} has a negative radius")
            if r == 0:
                zero_radius.append(label)
                continue
            t, p = np.deg2rad(theta), np.deg2rad(phi)
            xyz = (r * np.sin(t) * np.cos(p), r * np.sin(t) * np.sin(p), r * np.cos(t))
            radii.append(r)
        parsed.rows.append(_Row(label, tuple(float(v) for v in xyz), el.line, _classify(label, integer_is_headshape=False)))
    if zero_radius:
        parsed.notes.append(f"electrode(s) with radius 0 (no position) left out: {', '.join(zero_radius)}")
    scale = 1.0
    fmt_unit = "mm"
    if not is_captrak and radii and np.allclose(radii, 1.0):
        scale = BVEF_SPHERE_RADIUS_M * 1e3
        parsed.notes.append(f"all radii are 1 (idealised unit sphere): scaled to a {BVEF_SPHERE_RADIUS_M * 1e3:.0f} mm sphere")
    if is_captrak:
        fmt_frame = (Frame.HEAD, "format: CapTrak coordinates are RAS from the fiducials (head frame)")
    else:
        fmt_frame = (Frame.UNKNOWN, "format: BrainVision idealised head (x T7->T8, y Oz->Fpz, z Cz), not a fiducial frame")
    return _assemble(parsed, path, fmt, unit_arg=unit, frame_arg=frame, fmt_unit=fmt_unit, fmt_frame=fmt_frame, scale_positions=scale)


# ---- Polhemus-style digitiser text --------------------------------------------------------


def read_polhemus(path: str | Path, *, unit: str | None = None, frame: Frame | str | None = None) -> Digitization:
    """Read Polhemus-style digitiser text: fiducials, headshape points, HPI coils, electrodes.

    Accepted lines (whitespace-separated; blank lines ignored):

    - ``# ...`` or ``// ...``: comments. Directives in comments: ``# unit: mm`` and
      ``# frame: head`` (any name :func:`rtsource.geometry.head_frames.frame_for_coordinate_system`
      knows: head, ctf, CapTrak, template, unknown, ...).
    - ``LABEL x y z``: ``LABEL`` a fiducial (nasion/nas/fidnz, lpa/left/fidt9, rpa/right/
      fidt10) -> fiducial; ``hpi1``, ``hpi_2``, ``coil3`` -> HPI coil; ``hsp``, ``extra``,
      ``headshape`` (optionally numbered) or a bare integer (Brainstorm ``.pos`` indices) ->
      headshape point; anything else -> electrode.
    - ``x y z``: a headshape point.
    - Polhemus Isotrak ``.hsp`` / ``.elp``: ``%F x y z`` are the fiducials in the order
      nasion, LPA, RPA; ``%N name`` names the next ``%S x y z`` (an HPI coil); other ``%``
      lines are ignored.
    - A line of one or two integers (point counts in ``.pos`` / ``.hsp`` headers) is skipped.

    No unit stated: guessed from the extent. No frame stated: UNKNOWN.
    """
    path = Path(path)
    text = _read_text(path)
    parsed = _Parsed()
    n_fid = 0
    next_name: str | None = None
    n_hpi = 0
    for lineno, line in _lines(text):
        s = line.strip()
        if not s:
            continue
        d = _directive(s)
        if d is not None:
            _apply_directive(parsed, d[0], d[1], path, lineno, line)
            continue
        if s.startswith("#") or s.startswith("//"):
            continue
        if s.startswith("%"):
            tag = s[:2].upper()
            rest = s[2:].split()
            if tag == "%F":
                if len(rest) != 3:
                    raise _fail(path, lineno, line, f"'%F' needs x y z, got {len(rest)} fields")
                if n_fid >= 3:
                    raise _fail(path, lineno, line, "more than three '%F' fiducial lines (nasion, LPA, RPA)")
                xyz = tuple(_number(t, path, lineno, line) for t in rest)
                parsed.rows.append(_Row(FIDUCIAL_NAMES[n_fid], xyz, lineno, "fiducial"))
                n_fid += 1
            elif tag == "%N":
                next_name = " ".join(rest) or None
            elif tag == "%S":
                if len(rest) != 3:
                    raise _fail(path, lineno, line, f"'%S' needs x y z, got {len(rest)} fields")
                xyz = tuple(_number(t, path, lineno, line) for t in rest)
                n_hpi += 1
                parsed.rows.append(_Row(next_name or f"hpi{n_hpi}", xyz, lineno, "hpi"))
                next_name = None
            continue
        tokens = s.split()
        if len(tokens) <= 2 and all(t.isdigit() for t in tokens):
            continue  # point counts
        if len(tokens) == 3:
            xyz = tuple(_number(t, path, lineno, line) for t in tokens)
            parsed.rows.append(_Row(None, xyz, lineno, "headshape"))
        elif len(tokens) == 4:
            xyz = tuple(_number(t, path, lineno, line) for t in tokens[1:])
            kind = _classify(tokens[0], integer_is_headshape=True)
            parsed.rows.append(_Row(None if kind == "headshape" else tokens[0], xyz, lineno, kind))
        else:
            raise _fail(path, lineno, line, f"expected 'x y z' or 'label x y z', got {len(tokens)} fields", "fix or remove the line")
    return _assemble(parsed, path, "polhemus", unit_arg=unit, frame_arg=frame)


# ---- generic CSV / TSV ------------------------------------------------------------------------

_HEADER_UNIT = re.compile(r"^(x|y|z)\s*(?:[_\s]\s*|\(|\[)\s*(m|cm|mm|meters?|metres?|millimet(?:er|re)s?|centimet(?:er|re)s?)\s*[\)\]]?$", re.I)
_LABEL_COLUMNS = ("label", "name", "channel", "electrode", "ch_name", "labels", "site")


def read_positions_csv(
    path: str | Path, *, unit: str | None = None, frame: Frame | str | None = None, delimiter: str | None = None
) -> Digitization:
    """Read a generic table of ``label, x, y, z`` rows.

    - Delimiter: tab, comma or semicolon, detected from the first data line (else runs of
      spaces), or given.
    - Optional header row (its x/y/z cells are not numbers): columns are then found by name
      (``label``/``name``/``channel``/``electrode``, ``x``, ``y``, ``z``; others ignored) and
      may carry the unit (``x_mm``, ``x (mm)``, ``x [m]``). Without a header the first four
      columns are label, x, y, z and there must be exactly four.
    - ``#`` comment lines, with the directives ``# unit: mm`` and ``# frame: head``.
    - Fiducial labels (NAS/Nasion/LPA/RPA/...) become fiducials, ``hsp``/``headshape`` rows
      headshape points, ``hpi1``... HPI coils, the rest electrodes.
    """
    path = Path(path)
    text = _read_text(path)
    parsed = _Parsed()
    sep = delimiter
    cols: tuple[int, int, int, int] | None = None
    n_cols: int | None = None
    header_units: set[str] = set()
    header_line = 0
    for lineno, line in _lines(text):
        s = line.strip()
        if not s:
            continue
        d = _directive(s)
        if d is not None:
            _apply_directive(parsed, d[0], d[1], path, lineno, line)
            continue
        if s.startswith("#") or s.startswith("//"):
            continue
        if sep is None:
            sep = next((c for c in ("\t", ",", ";") if c in s), " ")
        fields = [f.strip().strip('"').strip() for f in (s.split() if sep == " " else s.split(sep))]
        if cols is None and n_cols is None:
            try:
                [float(f) for f in fields[1:4]]
                is_header = len(fields) < 4
            except ValueError:
                is_header = True
            if is_header and len(fields) >= 4:
                names = [f.casefold() for f in fields]
                found: dict[str, int] = {}
                for i, name in enumerate(names):
                    m = _HEADER_UNIT.match(name)
                    axis = name if name in ("x", "y", "z") else (m.group(1).casefold() if m else None)
                    if axis and axis not in found:
                        found[axis] = i
                        if m:
                            header_units.add(parse_length_unit(m.group(2)))
                    elif name in _LABEL_COLUMNS and "label" not in found:
                        found["label"] = i
                missing = [k for k in ("label", "x", "y", "z") if k not in found]
                if missing:
                    raise _fail(path, lineno, line, f"the header has no {' / '.join(missing)} column", "name the columns label, x, y, z")
                if len(header_units) > 1:
                    raise _fail(path, lineno, line, f"the x, y, z columns name different units {sorted(header_units)}")
                if header_units:
                    parsed.unit, parsed.unit_line = header_units.pop(), lineno
                cols = (found["label"], found["x"], found["y"], found["z"])
                n_cols = len(fields)
                header_line = lineno
                continue
            if is_header:
                raise _fail(path, lineno, line, f"expected 'label{sep}x{sep}y{sep}z', got {len(fields)} field(s)", "fix the line")
            if len(fields) != 4:
                raise _fail(path, lineno, line, f"expected 4 fields (label, x, y, z) without a header, got {len(fields)}", "fix the line or add a header row")
            cols, n_cols = (0, 1, 2, 3), 4
        if len(fields) != n_cols:
            why = f"the header on line {header_line} has {n_cols}" if header_line else f"earlier rows have {n_cols}"
            raise _fail(path, lineno, line, f"{len(fields)} fields, but {why}", "fix the row")
        label = fields[cols[0]]
        xyz = tuple(_number(fields[c], path, lineno, line) for c in cols[1:])
        kind = _classify(label, integer_is_headshape=False)
        parsed.rows.append(_Row(None if kind == "headshape" else label, xyz, lineno, kind))
    return _assemble(parsed, path, "csv", unit_arg=unit, frame_arg=frame)


def write_positions_csv(path: str | Path, digitization: Digitization, *, unit: str = "mm") -> Path:
    """Write a :class:`Digitization` as a CSV that :func:`read_positions_csv` reads back.

    Rows: fiducials, electrodes, HPI coils (labelled), headshape points (label ``hsp``);
    ``# unit:`` and ``# frame:`` directives on top.
    """
    path = Path(path)
    f = LENGTH_UNITS[parse_length_unit(unit)]
    lines = [f"# unit: {unit}", f"# frame: {digitization.frame.value}", "label,x,y,z"]
    for kind in ("fiducials", "electrodes", "hpi", "headshape"):
        pts = getattr(digitization, kind)
        if pts is None:
            continue
        labels = pts.labels or ("hsp",) * len(pts)
        for label, p in zip(labels, pts.positions_m / f):
            if "," in label or label != label.strip():
                raise ChannelError(f"label {label!r} cannot be written to CSV (comma or surrounding spaces)")
            lines.append(f"{label},{p[0]:.6g},{p[1]:.6g},{p[2]:.6g}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---- dispatch ---------------------------------------------------------------------------

#: Reader per format name.
READERS = {
    "bids": read_bids_electrodes,
    "elc": read_elc,
    "sfp": read_sfp,
    "bvef": read_bvef,
    "polhemus": read_polhemus,
    "csv": read_positions_csv,
}

_SUFFIXES = {
    ".elc": "elc",
    ".sfp": "sfp",
    ".bvef": "bvef",
    ".bvct": "bvef",
    ".pos": "polhemus",
    ".hsp": "polhemus",
    ".elp": "polhemus",
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
}


def detect_format(path: str | Path) -> str:
    """The reader name for a file, from its name (``*_electrodes.tsv`` is BIDS)."""
    p = Path(path)
    if p.name.casefold().endswith("_electrodes.tsv"):
        return "bids"
    fmt = _SUFFIXES.get(p.suffix.casefold())
    if fmt is None:
        raise GeometryError(
            f"cannot tell the format of {str(p)!r} from its extension {p.suffix!r}; use one of "
            f"*_electrodes.tsv, {', '.join(sorted(_SUFFIXES))}, or pass format= one of {sorted(READERS)}"
        )
    return fmt


def read_digitization(
    path: str | Path, *, format: str | None = None, unit: str | None = None, frame: Frame | str | None = None
) -> Digitization:
    """Read any supported position file (format from the extension unless given).

    Parameters
    ----------
    path : path
        The file.
    format : str, optional
        One of ``"bids"``, ``"elc"``, ``"sfp"``, ``"bvef"``, ``"polhemus"``, ``"csv"``.
    unit : str, optional
        Length unit of the numbers in the file, overriding what it says (still checked
        against the extent).
    frame : Frame or str, optional
        Frame of the positions, overriding what the file says.
    """
    fmt = format or detect_format(path)
    if fmt not in READERS:
        raise GeometryError(f"format {fmt!r} is not known; use one of {sorted(READERS)}")
    dig = READERS[fmt](path, unit=unit, frame=frame)
    logger.info("%s", dig.report.describe())
    return dig


def read_montage(path: str | Path, **kwargs) -> Montage:
    """The electrodes of a position file as a :class:`Montage` (see :func:`read_digitization`)."""
    return read_digitization(path, **kwargs).montage()


# ---- transform files ------------------------------------------------------------------------


def _check_matrix(m: np.ndarray, where: str) -> None:
    r = m[:3, :3]
    g = r.T @ r
    s2 = float(np.trace(g) / 3.0)
    if not s2 > 0 or not np.allclose(g, s2 * np.eye(3), atol=1e-4 * s2) or np.linalg.det(r) <= 0:
        raise GeometryError(
            f"{where}: the 3x3 block is not a rotation (times a uniform scale); got {np.round(r, 5).tolist()}"
        )
    t = float(np.linalg.norm(m[:3, 3]))
    if t > 1.0:
        raise UnitError(
            f"{where}: the translation is {t:.4g} m, not a head-to-device distance; is the file in mm? "
            f"state '# unit: mm' (text) or \"unit\": \"mm\" (JSON)"
        )


def read_transform(path: str | Path) -> Transform:
    """Read a 4x4 transform (e.g. MEG device -> head) from JSON or text.

    JSON::

        {"from": "device", "to": "head", "unit": "m",
         "matrix": [[r11, r12, r13, tx], [r21, r22, r23, ty], [r31, r32, r33, tz], [0, 0, 0, 1]]}

    Text: ``# from: device``, ``# to: head``, optional ``# unit: mm`` (of the translation,
    default m), then 3 or 4 rows of 4 numbers. The 3x3 block must be a rotation (optionally
    times a uniform scale); a translation over 1 m is refused as a unit mistake.
    """
    path = Path(path)
    text = _read_text(path)
    where = str(path)
    frm = to = None
    unit = "m"
    rows: list[list[float]] = []
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            bad = text.splitlines()[exc.lineno - 1] if 0 < exc.lineno <= len(text.splitlines()) else ""
            raise _fail(path, exc.lineno, bad, f"not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise GeometryError(f"{where}: JSON nested too deeply") from None
        if not isinstance(doc, dict):
            raise GeometryError(f"{where}: expected a JSON object with from, to, matrix")
        frm, to, unit = doc.get("from"), doc.get("to"), doc.get("unit", "m")
        mat = doc.get("matrix")
        if not isinstance(unit, str):
            raise GeometryError(f"{where}: unit must be a string, got {unit!r}")
        if (
            not isinstance(mat, list)
            or len(mat) not in (3, 4)
            or not all(isinstance(r, list) and len(r) == 4 for r in mat)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for r in mat for v in r)
        ):
            raise GeometryError(f"{where}: matrix must be 3 or 4 rows of 4 finite numbers, got {mat!r}")
        rows = [[float(v) for v in r] for r in mat]
    else:
        for lineno, line in _lines(text):
            s = line.strip()
            if not s:
                continue
            m = re.match(r"^(?:#|//)\s*(from|to|unit)\s*[:=]\s*(\S+)\s*$", s, re.I)
            if m:
                key, value = m.group(1).casefold(), m.group(2)
                if key == "from":
                    frm = value
                elif key == "to":
                    to = value
                else:
                    unit = value
                continue
            if s.startswith("#") or s.startswith("//"):
                continue
            tokens = s.split()
            if len(tokens) != 4:
                raise _fail(path, lineno, line, f"a matrix row needs 4 numbers, got {len(tokens)}")
            if len(rows) == 4:
                raise _fail(path, lineno, line, "more than 4 matrix rows")
            rows.append([_number(t, path, lineno, line, what="matrix entry") for t in tokens])
    if not isinstance(frm, str) or not isinstance(to, str):
        raise GeometryError(f"{where}: the transform must name its frames ('from' and 'to', e.g. device -> head)")
    if len(rows) == 3:
        rows.append([0.0, 0.0, 0.0, 1.0])
    if len(rows) != 4:
        raise GeometryError(f"{where}: expected 3 or 4 matrix rows of 4 numbers, got {len(rows)}")
    m = np.array(rows, dtype=float)
    if not np.allclose(m[3], [0, 0, 0, 1]):
        raise GeometryError(f"{where}: the last matrix row must be 0 0 0 1, got {m[3].tolist()}")
    m[:3, 3] *= LENGTH_UNITS[parse_length_unit(unit, where=f"{where}: unit")]
    _check_matrix(m, where)
    try:
        return Transform(as_frame(frm), as_frame(to), m)
    except FrameError as exc:
        raise FrameError(f"{where}: {exc}") from None


def write_transform(path: str | Path, transform: Transform) -> Path:
    """Write a transform as the JSON :func:`read_transform` reads (translation in metres)."""
    path = Path(path)
    doc = {
        "from": transform.from_frame.value,
        "to": transform.to_frame.value,
        "unit": "m",
        "matrix": [[float(v) for v in row] for row in transform.matrix],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path


__all__ = [
    "BVEF_SPHERE_RADIUS_M",
    "Digitization",
    "HEAD_EXTENT_RANGE_M",
    "READERS",
    "ReadReport",
    "check_unit_against_extent",
    "detect_format",
    "parse_length_unit",
    "read_bids_electrodes",
    "read_bvef",
    "read_digitization",
    "read_elc",
    "read_montage",
    "read_polhemus",
    "read_positions_csv",
    "read_sfp",
    "read_transform",
    "write_positions_csv",
    "write_transform",
]
