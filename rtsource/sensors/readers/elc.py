"""ASA / ANT Neuro ``.elc`` electrode files."""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import GeometryError
from ...geometry import Frame
from ._parse import Parsed, Row, assemble, classify, fail, number, numbered_lines, read_text
from .digitization import Digitization
from .units import parse_length_unit

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
    text = read_text(path)
    parsed = Parsed()
    state = "header"
    n_declared: tuple[int, int] | None = None
    positions: list[tuple[tuple[float, float, float], int, str | None]] = []
    labels: list[tuple[str, int]] = []
    labels_line = 0
    for lineno, line in numbered_lines(text):
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
                raise fail(path, lineno, line, "NumberPositions is not an integer") from None
            continue
        if state == "header":
            if m and m.group(1):
                continue  # other header keys (ReferenceLabel, ...) carry nothing we need
            raise fail(path, lineno, line, "unexpected text before the 'Positions' section", "an .elc file starts with 'Key value' lines")
        if state == "positions":
            label = None
            body = s
            if ":" in s:
                label, body = (x.strip() for x in s.split(":", 1))
                if not label:
                    raise fail(path, lineno, line, "empty label before ':'")
            tokens = body.split()
            if len(tokens) != 3:
                raise fail(path, lineno, line, f"expected 3 coordinates (x y z), got {len(tokens)} fields", "fix the position line")
            xyz = tuple(number(t, path, lineno, line) for t in tokens)
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
            raise fail(
                path, labels_line, "Labels",
                f"{len(labels)} labels for {len(positions)} positions", "every position needs exactly one label",
            )
        names = [(lab, pos[1]) for (lab, _), pos in zip(labels, positions)]
    else:
        raise GeometryError(f"{path}: positions have no labels (no 'Labels' section and no 'label : x y z' lines)")
    if n_declared is not None and n_declared[0] != len(positions):
        raise fail(
            path, n_declared[1], f"NumberPositions= {n_declared[0]}",
            f"the header promises {n_declared[0]} positions but the file has {len(positions)}", "fix NumberPositions",
        )
    for (xyz, _, _), (label, line) in zip(positions, names):
        parsed.rows.append(Row(label, xyz, line, classify(label, integer_is_headshape=False)))
    if parsed.unit is None:
        parsed.notes.append("no UnitPosition line")
    return assemble(parsed, path, "elc", unit_arg=unit, frame_arg=frame)


__all__ = ["read_elc"]
