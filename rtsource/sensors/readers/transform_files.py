"""Transform files: a 4x4 rigid transform (e.g. MEG device -> head) as JSON or text, read and written."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from ...errors import FrameError, GeometryError, UnitError
from ...geometry import Transform, as_frame
from ...geometry.units import LENGTH_UNITS
from ._parse import fail, number, numbered_lines, read_text
from .units import parse_length_unit


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
    text = read_text(path)
    where = str(path)
    frm = to = None
    unit = "m"
    rows: list[list[float]] = []
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            bad = text.splitlines()[exc.lineno - 1] if 0 < exc.lineno <= len(text.splitlines()) else ""
            raise fail(path, exc.lineno, bad, f"not valid JSON ({exc.msg})") from None
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
        for lineno, line in numbered_lines(text):
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
                raise fail(path, lineno, line, f"a matrix row needs 4 numbers, got {len(tokens)}")
            if len(rows) == 4:
                raise fail(path, lineno, line, "more than 4 matrix rows")
            rows.append([number(t, path, lineno, line, what="matrix entry") for t in tokens])
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


__all__ = ["read_transform", "write_transform"]
