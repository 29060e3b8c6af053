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
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from ..errors import GeometryError
from ..geometry import Frame, Points, Transform

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


__all__ = ["read_fiducials_fif", "read_trans_fif"]
