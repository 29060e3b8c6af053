"""BESA / EGI ``.sfp`` electrode files."""

from __future__ import annotations

from pathlib import Path

from ...geometry import Frame
from ._parse import Parsed, Row, assemble, classify, fail, number, numbered_lines, read_text
from .digitization import Digitization


def read_sfp(path: str | Path, *, unit: str | None = None, frame: Frame | str | None = None) -> Digitization:
    """Read a BESA / EGI ``.sfp`` file: one ``label x y z`` per line (whitespace-separated).

    The format states neither unit (EGI writes cm, BESA mm: guessed from the extent unless
    ``unit`` is given) nor frame (UNKNOWN). ``FidNz``, ``FidT9``, ``FidT10`` (EGI) and
    ``Nasion``/``LPA``/``RPA`` are the fiducials. ``#`` starts a comment line.
    """
    path = Path(path)
    text = read_text(path)
    parsed = Parsed()
    for lineno, line in numbered_lines(text):
        s = line.strip()
        if not s or s.startswith("#") or s.startswith("//"):
            continue
        tokens = s.split()
        if len(tokens) != 4:
            raise fail(path, lineno, line, f"expected 'label x y z' (4 fields), got {len(tokens)}", "fix or remove the line")
        xyz = tuple(number(t, path, lineno, line) for t in tokens[1:])
        parsed.rows.append(Row(tokens[0], xyz, lineno, classify(tokens[0], integer_is_headshape=False)))
    return assemble(parsed, path, "sfp", unit_arg=unit, frame_arg=frame)


__all__ = ["read_sfp"]
