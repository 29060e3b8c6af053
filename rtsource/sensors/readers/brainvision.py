"""BrainVision electrode files: ``.bvef`` (angles on an idealised head) and CapTrak ``.bvct``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

import numpy as np

from ...errors import GeometryError
from ...geometry import Frame
from ._parse import Parsed, Row, assemble, classify, fail, number, read_bytes
from .digitization import Digitization

#: Radius an idealised unit-sphere BVEF montage is scaled to (metres).
BVEF_SPHERE_RADIUS_M = 0.085


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
        raise fail(path, exc.lineno, bad, f"not well-formed XML ({expat.ErrorString(exc.code)})", "fix the XML") from None
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
    root = _parse_xml(read_bytes(path), path)
    parsed = Parsed()
    is_captrak = "captrak" in root.tag.casefold()
    if is_captrak:
        holder = next((c for c in root.children if c.tag.casefold() == "captrakelectrodelist"), None)
        elements = [c for c in (holder.children if holder else []) if c.tag.casefold() == "captrakelectrode"]
        fmt = "bvct"
    elif root.tag.casefold() == "electrodes":
        elements = [c for c in root.children if c.tag.casefold() == "electrode"]
        fmt = "bvef"
    else:
        raise fail(path, root.line, f"<{root.tag}>", "the root element is not <Electrodes> or <BrainVisionCapTrakFileV1>", "is this a BrainVision file?")
    radii: list[float] = []
    zero_radius: list[str] = []

    def num(node: _Node, name: str) -> float | None:
        got = node.child_text(name)
        if got is None:
            return None
        return number(got[0], path, got[1], f"<{name}>{got[0]}</{name}>", what=name)

    for el in elements:
        name = el.child_text("Name")
        if name is None or not name[0]:
            raise fail(path, el.line, f"<{el.tag}>", "electrode without a <Name>", "give every electrode a name")
        label = name[0]
        x, y, z = num(el, "X"), num(el, "Y"), num(el, "Z")
        if x is not None and y is not None and z is not None:
            xyz = (x, y, z)
            radii.append(float(np.linalg.norm(xyz)))
        elif is_captrak:
            raise fail(path, el.line, f"<{el.tag}> {label}", "CapTrak electrode without <X>, <Y>, <Z>")
        else:
            theta, phi, r = num(el, "Theta"), num(el, "Phi"), num(el, "Radius")
            if theta is None or phi is None or r is None:
                missing = [n for n, v in (("Theta", theta), ("Phi", phi), ("Radius", r)) if v is None]
                raise fail(path, el.line, f"<{el.tag}> {label}", f"electrode {label!r} has no {', '.join(missing)}")
            if r < 0:
                raise fail(path, el.line, f"<Radius>{r:g}</Radius>", f"electrode {label!r} has a negative radius")
            if r == 0:
                zero_radius.append(label)
                continue
            t, p = np.deg2rad(theta), np.deg2rad(phi)
            xyz = (r * np.sin(t) * np.cos(p), r * np.sin(t) * np.sin(p), r * np.cos(t))
            radii.append(r)
        parsed.rows.append(Row(label, tuple(float(v) for v in xyz), el.line, classify(label, integer_is_headshape=False)))
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
    return assemble(parsed, path, fmt, unit_arg=unit, frame_arg=frame, fmt_unit=fmt_unit, fmt_frame=fmt_frame, scale_positions=scale)


__all__ = ["BVEF_SPHERE_RADIUS_M", "read_bvef"]
