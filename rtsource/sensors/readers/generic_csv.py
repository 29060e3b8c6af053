"""Generic position tables: ``label, x, y, z`` rows in ``.csv`` / ``.tsv`` / ``.txt``, read and written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...errors import ChannelError, UnitError
from ...geometry import Frame
from ...geometry.units import LENGTH_UNITS, estimate_length_unit
from ._parse import Parsed, Row, apply_directive, assemble, classify, directive, fail, number, numbered_lines, read_text
from .digitization import Digitization
from .units import parse_length_unit

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
    - Head-shape files without labels: three numeric columns ``x y z`` (or a header with only
      x, y, z columns). Every row is a head-shape point; the unit must be stated (``unit=``,
      ``# unit: mm`` or the header), since a guess from the extent of a partial head shape
      can be a factor of ten off -- the error names the unit the extent suggests.
    - ``#`` comment lines, with the directives ``# unit: mm`` and ``# frame: head``.
    - Fiducial labels (NAS/Nasion/LPA/RPA/...) become fiducials, ``hsp``/``headshape`` rows
      headshape points, ``hpi1``... HPI coils, the rest electrodes.
    """
    path = Path(path)
    text = read_text(path)
    parsed = Parsed()
    sep = delimiter
    cols: tuple[int, int, int, int] | None = None
    n_cols: int | None = None
    header_units: set[str] = set()
    header_line = 0
    bare = False  # x, y, z columns without labels: head-shape points
    for lineno, line in numbered_lines(text):
        s = line.strip()
        if not s:
            continue
        d = directive(s)
        if d is not None:
            apply_directive(parsed, d[0], d[1], path, lineno, line)
            continue
        if s.startswith("#") or s.startswith("//"):
            continue
        if sep is None:
            sep = next((c for c in ("\t", ",", ";") if c in s), " ")
        fields = [f.strip().strip('"').strip() for f in (s.split() if sep == " " else s.split(sep))]
        if cols is None and n_cols is None and len(fields) == 3 and _all_numbers(fields):
            # a plain "x y z" head-shape file: no labels, every row a head-shape point
            cols, n_cols, bare = (-1, 0, 1, 2), 3, True
        if cols is None and n_cols is None:
            try:
                [float(f) for f in fields[1:4]]
                is_header = len(fields) < 4
            except ValueError:
                is_header = True
            if is_header and len(fields) >= 3:
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
                missing = [k for k in ("x", "y", "z") if k not in found]
                if missing:
                    raise fail(path, lineno, line, f"the header has no {' / '.join(missing)} column", "name the columns label, x, y, z")
                if len(header_units) > 1:
                    raise fail(path, lineno, line, f"the x, y, z columns name different units {sorted(header_units)}")
                if header_units:
                    parsed.unit, parsed.unit_line = header_units.pop(), lineno
                cols = (found.get("label", -1), found["x"], found["y"], found["z"])
                bare = "label" not in found
                n_cols = len(fields)
                header_line = lineno
                continue
            if is_header:
                raise fail(path, lineno, line, f"expected 'label{sep}x{sep}y{sep}z', got {len(fields)} field(s)", "fix the line")
            if len(fields) != 4:
                raise fail(path, lineno, line, f"expected 4 fields (label, x, y, z) without a header, got {len(fields)}", "fix the line or add a header row")
            cols, n_cols = (0, 1, 2, 3), 4
        if len(fields) != n_cols:
            why = f"the header on line {header_line} has {n_cols}" if header_line else f"earlier rows have {n_cols}"
            raise fail(path, lineno, line, f"{len(fields)} fields, but {why}", "fix the row")
        label = fields[cols[0]] if cols[0] >= 0 else "hsp"
        xyz = tuple(number(fields[c], path, lineno, line) for c in cols[1:])
        kind = classify(label, integer_is_headshape=False)
        parsed.rows.append(Row(None if kind == "headshape" else label, xyz, lineno, kind))
    if bare and parsed.rows:
        parsed.notes.append(f"{len(parsed.rows)} unlabelled x y z rows read as head-shape points")
        if unit is None and parsed.unit is None:
            guess = estimate_length_unit(np.array([r.xyz for r in parsed.rows], dtype=float))
            raise UnitError(
                f"{path}: a plain 'x y z' head-shape file does not say its unit (the extent suggests {guess!r}); state it: "
                f"unit={guess!r} ([coreg] headshape_unit = {guess!r}, --headshape-unit {guess}), a '# unit: {guess}' line, "
                f"or a header 'x_{guess} y_{guess} z_{guess}'"
            )
    return assemble(parsed, path, "csv", unit_arg=unit, frame_arg=frame)


def _all_numbers(fields: list[str]) -> bool:
    try:
        [float(f) for f in fields]
    except ValueError:
        return False
    return True


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


__all__ = ["read_positions_csv", "write_positions_csv"]
