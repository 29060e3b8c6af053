"""MNE-Python's ``-trans.fif`` and ``-fiducials.fif`` files, read natively (no MNE needed).

A FIF file is a sequence of tags, each a big-endian header ``kind, type, size, next``
(int32) followed by ``size`` bytes of data (Elekta/Neuromag FIF format; MNE-Python writes
them in sequence). Two tags matter here:

``FIFF_COORD_TRANS`` (kind 222, type 35)
    int32 from-frame, int32 to-frame, float32 rotation (3 x 3, row-major), float32
    translation (3, metres), then the inverse (ignored).
``FIFF_DIG_POINT`` (kind 213, type 33)
    int32 kind (1: cardinal), int32 ident (1: LPA, 2: nasion, 3: RPA), float32 r (3, m);
    the frame of a fiducials file is ``FIFF_MNE_COORD_FRAME`` (kind 3506, int32).

Frame codes: 1 device, 4 head, 5 MRI (surface RAS). ``.fif.gz`` is read too.

A ``-bem.fif`` / ``-bem-sol.fif`` holds one ``FIFFB_BEM_SURF`` block (311) per surface:
``FIFF_BEM_SURF_ID`` (3101; 4 head, 3 outer skull, 1 inner skull), ``NNODE`` (3103),
``NTRI`` (3104), ``NODES`` (3105, float32 n x 3, m), ``TRIANGLES`` (3106, int32 n x 3,
1-based), and the frame ``FIFF_BEM_COORD_FRAME`` (3112). Matrix tags end with their
dimensions, which the counts make redundant. A solution file's matrix is skipped, not read.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from ..errors import GeometryError
from ..geometry import Frame, Mesh, Points, Transform

_COORD_TRANS, _DIG_POINT, _COORD_FRAME = 222, 213, 3506
_FRAMES = {1: Frame.DEVICE, 4: Frame.HEAD, 5: Frame.MRI}
_FIDUCIALS = {1: "LPA", 2: "NAS", 3: "RPA"}
_MAX_BYTES = 50_000_000


def _tags(path: Path):
    """(kind, type, data) of every tag, in file order."""
    raw = path.read_bytes()[: _MAX_BYTES + 1]
    if len(raw) > _MAX_BYTES:
        raise GeometryError(f"{path}: larger than {_MAX_BYTES // 1_000_000} MB; not a transform or fiducials file")
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise GeometryError(f"{path}: not a readable gzip file ({exc})") from None
        if len(raw) > _MAX_BYTES:
            raise GeometryError(f"{path}: unpacks to more than {_MAX_BYTES // 1_000_000} MB")
    if len(raw) < 16 or struct.unpack(">i", raw[:4])[0] != 100:
        raise GeometryError(f"{path}: not a FIF file (it must start with a file-id tag); give MNE-Python's -trans.fif / -fiducials.fif")
    pos = 0
    while pos + 16 <= len(raw):
        kind, typ, size, _ = struct.unpack(">iiii", raw[pos : pos + 16])
        if size < 0 or pos + 16 + size > len(raw):
            raise GeometryError(f"{path}: tag {kind} at byte {pos} claims {size} bytes past the end; the file is damaged")
        yield kind, typ, raw[pos + 16 : pos + 16 + size]
        pos += 16 + size


def _frame(code: int, path: Path) -> Frame:
    if code not in _FRAMES:
        raise GeometryError(f"{path}: coordinate frame code {code} is not device (1), head (4) or MRI (5)")
    return _FRAMES[code]


def read_trans_fif(path: str | Path) -> Transform:
    """The first coordinate transform of an MNE ``-trans.fif`` (head <-> MRI, metres).

    Raises
    ------
    GeometryError
        Not a FIF file, no transform in it, or a damaged tag.
    """
    path = Path(path)
    for kind, _, data in _tags(path):
        if kind == _COORD_TRANS:
            if len(data) < 56:
                raise GeometryError(f"{path}: a coordinate transform tag of {len(data)} bytes (needs 104)")
            src, dst = struct.unpack(">ii", data[:8])
            values = np.frombuffer(data[8:56], ">f4").astype(np.float64)
            m = np.eye(4)
            m[:3, :3] = values[:9].reshape(3, 3)
            m[:3, 3] = values[9:12]
            return Transform(_frame(src, path), _frame(dst, path), m)
    raise GeometryError(f"{path}: no coordinate transform in this FIF file; give the -trans.fif that mne coreg saved")


def read_fiducials_fif(path: str | Path) -> Points:
    """NAS, LPA, RPA from an MNE ``-fiducials.fif`` (metres, in its frame, usually MRI)."""
    path = Path(path)
    found: dict[str, np.ndarray] = {}
    frame = Frame.MRI
    for kind, _, data in _tags(path):
        if kind == _COORD_FRAME and len(data) >= 4:
            frame = _frame(struct.unpack(">i", data[:4])[0], path)
        elif kind == _DIG_POINT and len(data) >= 20:
            point_kind, ident = struct.unpack(">ii", data[:8])
            if point_kind == 1 and ident in _FIDUCIALS:
                found[_FIDUCIALS[ident]] = np.frombuffer(data[8:20], ">f4").astype(np.float64)
    missing = [n for n in ("NAS", "LPA", "RPA") if n not in found]
    if missing:
        raise GeometryError(f"{path}: no {', '.join(missing)} among the digitised points; save the fiducials with mne coreg")
    return Points(np.array([found[n] for n in ("NAS", "LPA", "RPA")]), frame, "m", ("NAS", "LPA", "RPA"))


_BEM_SURF_ID, _BEM_NNODE, _BEM_NTRI, _BEM_NODES, _BEM_TRIANGLES, _BEM_FRAME = 3101, 3103, 3104, 3105, 3106, 3112
_BLOCK_START, _BLOCK_END, _BEM_SURF_BLOCK = 104, 105, 311
#: BEM surface ids -> rtsource's names (MNE-Python's FIFFV_BEM_SURF_ID_*).
BEM_SURFACE_IDS = {4: "outer_skin", 3: "outer_skull", 1: "inner_skull"}
_BEM_WANTED = {_BEM_SURF_ID, _BEM_NNODE, _BEM_NTRI, _BEM_NODES, _BEM_TRIANGLES, _BEM_FRAME, _BLOCK_START, _BLOCK_END}
_MAX_BEM_TAG = 400_000_000  # 10^7 vertices of float32 x 3: larger tags are skipped or refused


def _stream_tags(path: Path, wanted: set[int]):
    """(kind, data) of the wanted tags, seeking past the others (a BEM solution can be GBs)."""
    if not path.is_file():
        raise GeometryError(f"{path} does not exist; check [head] bem")
    with open(path, "rb") as f:
        opener = gzip.open if f.read(2) == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        head = f.read(16)
        if len(head) < 16 or struct.unpack(">i", head[:4])[0] != 100:
            raise GeometryError(f"{path}: not a FIF file (it must start with a file-id tag); give MNE-Python's -bem.fif or -bem-sol.fif")
        f.seek(struct.unpack(">i", head[8:12])[0], 1)
        while True:
            head = f.read(16)
            if len(head) < 16:
                return
            kind, _, size, _ = struct.unpack(">iiii", head)
            if size < 0 or (kind in wanted and size > _MAX_BEM_TAG):
                raise GeometryError(f"{path}: tag {kind} claims {size} bytes; the file is damaged")
            if kind in wanted:
                data = f.read(size)
                if len(data) < size:
                    raise GeometryError(f"{path}: tag {kind} is cut off; the file is damaged")
                yield kind, data
            else:
                f.seek(size, 1)


def read_bem_surfaces_fif(path: str | Path) -> dict[str, Mesh]:
    """The surfaces of an MNE ``-bem.fif`` or ``-bem-sol.fif``, by name (see :data:`BEM_SURFACE_IDS`).

    Returns
    -------
    dict of str to Mesh
        ``"outer_skin"``, ``"outer_skull"``, ``"inner_skull"`` (those present), metres, in the
        file's frame (MRI for files MNE-Python writes).

    Raises
    ------
    GeometryError
        Not a FIF file, no BEM surface in it, an unknown surface id, or counts that do not
        match the data.
    """
    path = Path(path)
    out: dict[str, Mesh] = {}
    frame = Frame.MRI
    cur: dict[int, bytes] | None = None
    for kind, data in _stream_tags(path, _BEM_WANTED):
        if kind == _BLOCK_START and struct.unpack(">i", data[:4])[0] == _BEM_SURF_BLOCK:
            cur = {}
        elif kind == _BLOCK_END and cur is not None and struct.unpack(">i", data[:4])[0] == _BEM_SURF_BLOCK:
            name, mesh = _bem_surface(cur, frame, path)
            out[name] = mesh
            cur = None
        elif kind == _BEM_FRAME and len(data) >= 4:
            frame = _frame(struct.unpack(">i", data[:4])[0], path)
        elif cur is not None:
            cur[kind] = data
    if not out:
        raise GeometryError(f"{path}: no BEM surface in this FIF file; give the -bem.fif that mne.write_bem_surfaces (or make_bem_solution) saved")
    return {name: Mesh(m.vertices_m, m.triangles, frame, "m", name) for name, m in out.items()}


def _bem_surface(tags: dict[int, bytes], frame: Frame, path: Path) -> tuple[str, Mesh]:
    missing = [k for k in (_BEM_NNODE, _BEM_NTRI, _BEM_NODES, _BEM_TRIANGLES) if k not in tags]
    if missing:
        raise GeometryError(f"{path}: a BEM surface without tag(s) {missing}; the file is damaged")
    sid = struct.unpack(">i", tags[_BEM_SURF_ID][:4])[0] if _BEM_SURF_ID in tags else 0
    if sid not in BEM_SURFACE_IDS:
        raise GeometryError(f"{path}: BEM surface id {sid} is not head (4), outer skull (3) or inner skull (1)")
    n, nt = struct.unpack(">i", tags[_BEM_NNODE][:4])[0], struct.unpack(">i", tags[_BEM_NTRI][:4])[0]
    if n <= 0 or nt <= 0 or len(tags[_BEM_NODES]) < 12 * n or len(tags[_BEM_TRIANGLES]) < 12 * nt:
        raise GeometryError(f"{path}: BEM surface {BEM_SURFACE_IDS[sid]} says {n} vertices and {nt} triangles but holds fewer")
    nodes = np.frombuffer(tags[_BEM_NODES][: 12 * n], ">f4").reshape(n, 3).astype(np.float64)
    tris = np.frombuffer(tags[_BEM_TRIANGLES][: 12 * nt], ">i4").reshape(nt, 3).astype(np.int64) - 1
    if tris.min() < 0 or tris.max() >= n:
        raise GeometryError(f"{path}: BEM surface {BEM_SURFACE_IDS[sid]} has triangle indices outside 1..{n}; the file is damaged")
    return BEM_SURFACE_IDS[sid], Mesh(nodes, tris, frame, "m", BEM_SURFACE_IDS[sid])


__all__ = ["BEM_SURFACE_IDS", "read_bem_surfaces_fif", "read_fiducials_fif", "read_trans_fif"]
