"""Polhemus-style digitiser text: ``.pos``, ``.hsp``, ``.elp`` (fiducials, headshape, HPI coils, electrodes)."""

from __future__ import annotations

from pathlib import Path

from ...geometry import Frame
from ...geometry.head_frames import FIDUCIAL_NAMES
from ._parse import Parsed, Row, apply_directive, assemble, classify, directive, fail, number, numbered_lines, read_text
from .digitization import Digitization


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
    text = read_text(path)
    parsed = Parsed()
    n_fid = 0
    next_name: str | None = None
    n_hpi = 0
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
        if s.startswith("%"):
            tag = s[:2].upper()
            rest = s[2:].split()
            if tag == "%F":
                if len(rest) != 3:
                    raise fail(path, lineno, line, f"'%F' needs x y z, got {len(rest)} fields")
                if n_fid >= 3:
                    raise fail(path, lineno, line, "more than three '%F' fiducial lines (nasion, LPA, RPA)")
                xyz = tuple(number(t, path, lineno, line) for t in rest)
                parsed.rows.append(Row(FIDUCIAL_NAMES[n_fid], xyz, lineno, "fiducial"))
                n_fid += 1
            elif tag == "%N":
                next_name = " ".join(rest) or None
            elif tag == "%S":
                if len(rest) != 3:
                    raise fail(path, lineno, line, f"'%S' needs x y z, got {len(rest)} fields")
                xyz = tuple(number(t, path, lineno, line) for t in rest)
                n_hpi += 1
                parsed.rows.append(Row(next_name or f"hpi{n_hpi}", xyz, lineno, "hpi"))
                next_name = None
            continue
        tokens = s.split()
        if len(tokens) <= 2 and all(t.isdigit() for t in tokens):
            continue  # point counts
        if len(tokens) == 3:
            xyz = tuple(number(t, path, lineno, line) for t in tokens)
            parsed.rows.append(Row(None, xyz, lineno, "headshape"))
        elif len(tokens) == 4:
            xyz = tuple(number(t, path, lineno, line) for t in tokens[1:])
            kind = classify(tokens[0], integer_is_headshape=True)
            parsed.rows.append(Row(None if kind == "headshape" else tokens[0], xyz, lineno, kind))
        else:
            raise fail(path, lineno, line, f"expected 'x y z' or 'label x y z', got {len(tokens)} fields", "fix or remove the line")
    return assemble(parsed, path, "polhemus", unit_arg=unit, frame_arg=frame)


__all__ = ["read_polhemus"]
