"""FreeSurfer surface and annotation files, read (and written) natively.

Formats (FreeSurfer's ``utils/mrisurf`` and ``utils/annotation``; all numbers big-endian):

Triangle surface (``lh.white``, ``lh.pial``, ``lh.sphere``, ``bem/*.surf``)
    3 bytes magic ``FF FF FE``; a text line ``created by ...`` ending in ``\\n\\n``; int32
    vertex and face counts; float32 ``x y z`` per vertex (mm, surface RAS); int32 vertex
    indices per face. Optional tagged metadata may follow (ignored). The old quad format
    (magic ``FF FF FF``) is refused with a message.
Annotation (``label/lh.aparc.annot``)
    int32 vertex count n; n pairs (int32 vertex, int32 value), value = R + G*256 + B*65536
    of the region's colour; int32 tag 1 then a colour table, version 2: int32 ``-2``, int32
    max structure count, int32 length + original table file name, int32 entry count, and per
    entry int32 structure id, int32 length + name, int32 R, G, B, transparency.

Everything read is checked against the file size before arrays are allocated: a damaged or
hostile file is refused with a message that names it, never half-read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import GeometryError
from ..geometry import Frame, Mesh

_TRIANGLE_MAGIC = b"\xff\xff\xfe"
_QUAD_MAGIC = b"\xff\xff\xff"
_MAX_VERTICES = 10_000_000
_MAX_NAME = 1024
_MAX_ENTRIES = 100_000


class _Reader:
    """Big-endian reads over bytes with bounds checks that name the file."""

    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        self.pos = 0

    def fail(self, what: str) -> GeometryError:
        return GeometryError(f"{self.path}: {what} (at byte {self.pos} of {len(self.data)}); the file is damaged or not this format")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"needs {n} more bytes")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def array(self, dtype: str, count: int) -> np.ndarray:
        size = np.dtype(dtype).itemsize
        return np.frombuffer(self.take(size * count), dtype=dtype).copy()

    def string(self) -> str:
        n = self.int32()
        if not 0 <= n <= _MAX_NAME:
            raise self.fail(f"a name length of {n} bytes")
        return self.take(n).split(b"\x00", 1)[0].decode("utf-8", errors="replace")


def read_surface(path: str | Path, *, frame: Frame | str = Frame.MRI, name: str | None = None) -> Mesh:
    """Read a FreeSurfer triangle surface as a :class:`Mesh` in metres.

    Parameters
    ----------
    path : path
        ``surf/lh.white``, ``bem/inner_skull.surf``, ...
    frame : Frame
        The frame of the coordinates (FreeSurfer surface RAS of the subject: ``mri``).
    name : str, optional
        The mesh's name (default: the file name).

    Raises
    ------
    GeometryError
        Not a triangle surface, or truncated (the message names the file).
    """
    path = Path(path)
    r = _Reader(path)
    magic = r.take(3)
    if magic == _QUAD_MAGIC:
        raise GeometryError(f"{path}: an old quad-format FreeSurfer surface; convert it with mris_convert to a triangle surface")
    if magic != _TRIANGLE_MAGIC:
        raise GeometryError(f"{path}: not a FreeSurfer triangle surface (magic {magic.hex()}, expected fffffe)")
    end = r.data.find(b"\n\n", r.pos, r.pos + 4096)
    if end < 0:
        raise r.fail("no end of the 'created by' line")
    r.pos = end + 2
    n_vert, n_face = r.int32(), r.int32()
    if not (0 < n_vert <= _MAX_VERTICES and 0 < n_face <= 2 * _MAX_VERTICES):
        raise r.fail(f"{n_vert} vertices and {n_face} faces")
    coords = r.array(">f4", 3 * n_vert).reshape(n_vert, 3).astype(np.float64)
    faces = r.array(">i4", 3 * n_face).reshape(n_face, 3).astype(np.int64)
    if faces.min() < 0 or faces.max() >= n_vert:
        raise GeometryError(f"{path}: face indices span [{faces.min()}, {faces.max()}] but there are {n_vert} vertices; the file is damaged")
    if not np.all(np.isfinite(coords)):
        raise GeometryError(f"{path}: vertex coordinates that are not finite; the file is damaged")
    return Mesh(coords * 1e-3, faces, frame, "m", name or path.name)


def write_surface(path: str | Path, mesh: Mesh, *, created_by: str = "rtsource") -> Path:
    """Write a :class:`Mesh` as a FreeSurfer triangle surface (mm, the mesh's frame)."""
    path = Path(path)
    verts = np.asarray(mesh.vertices_m * 1e3, dtype=">f4")
    faces = np.asarray(mesh.triangles, dtype=">i4")
    header = _TRIANGLE_MAGIC + f"created by {created_by}\n\n".encode() + struct.pack(">ii", len(verts), len(faces))
    path.write_bytes(header + verts.tobytes() + faces.tobytes())
    return path


@dataclass(frozen=True, eq=False)
class Annotation:
    """A FreeSurfer annotation: one region (or none) per vertex of one hemisphere.

    Attributes
    ----------
    labels : ndarray of int64, shape (n_vertices,)
        Index into ``names`` per vertex; -1 where the vertex's colour is not in the table.
    names : tuple of str
        Region names of the colour table, in table order ("unknown" included if present).
    colors : ndarray of int64, shape (n_names, 4)
        R, G, B, transparency per region (0-255).
    """

    labels: np.ndarray
    names: tuple[str, ...]
    colors: np.ndarray

    def __post_init__(self) -> None:
        for attr in ("labels", "colors"):
            arr = np.array(getattr(self, attr), dtype=np.int64)
            arr.flags.writeable = False
            object.__setattr__(self, attr, arr)


def read_annot(path: str | Path) -> Annotation:
    """Read a FreeSurfer ``.annot`` file (colour table version 2, as FreeSurfer writes).

    Raises
    ------
    GeometryError
        Truncated, an old colour-table format, or a table without entries.
    """
    path = Path(path)
    r = _Reader(path)
    n = r.int32()
    if not 0 < n <= _MAX_VERTICES:
        raise r.fail(f"a vertex count of {n}")
    pairs = r.array(">i4", 2 * n).reshape(n, 2).astype(np.int64)
    if pairs[:, 0].min() < 0 or pairs[:, 0].max() >= n:
        raise GeometryError(f"{path}: vertex numbers outside 0..{n - 1}; the file is damaged")
    values = np.full(n, -1, np.int64)
    values[pairs[:, 0]] = pairs[:, 1]
    if r.pos == len(r.data) or r.int32() != 1:
        raise GeometryError(f"{path}: no colour table; rtsource reads annotations that carry one (as FreeSurfer writes them)")
    version = r.int32()
    if version != -2:
        raise GeometryError(f"{path}: colour table format {version}; only version 2 (FreeSurfer's current) is read. Rewrite it with mris_ca_label or nibabel")
    r.int32()  # max structure id + 1
    r.string()  # the colour table file it came from
    n_entries = r.int32()
    if not 0 < n_entries <= _MAX_ENTRIES:
        raise r.fail(f"{n_entries} colour table entries")
    names, colors, ids = [], [], []
    for _ in range(n_entries):
        ids.append(r.int32())
        names.append(r.string())
        colors.append([r.int32() for _ in range(4)])
    colors_arr = np.array(colors, np.int64)
    keys = colors_arr[:, 0] + colors_arr[:, 1] * 256 + colors_arr[:, 2] * 65536
    order = {int(k): i for i, k in reversed(list(enumerate(keys)))}
    labels = np.array([order.get(int(v), -1) for v in values], np.int64)
    return Annotation(labels, tuple(names), colors_arr)


def write_annot(path: str | Path, annotation: Annotation) -> Path:
    """Write an :class:`Annotation` (colour table version 2); vertices with -1 get value 0."""
    path = Path(path)
    colors = np.asarray(annotation.colors, np.int64)
    keys = colors[:, 0] + colors[:, 1] * 256 + colors[:, 2] * 65536
    values = np.where(annotation.labels >= 0, keys[np.maximum(annotation.labels, 0)], 0)
    n = len(values)
    parts = [struct.pack(">i", n), np.c_[np.arange(n), values].astype(">i4").tobytes(), struct.pack(">iii", 1, -2, len(annotation.names))]
    table = b"rtsource"
    parts.append(struct.pack(">i", len(table)) + table + struct.pack(">i", len(annotation.names)))
    for i, (name, c) in enumerate(zip(annotation.names, colors)):
        raw = name.encode() + b"\x00"
        parts.append(struct.pack(">ii", i, len(raw)) + raw + struct.pack(">iiii", *(int(x) for x in c)))
    path.write_bytes(b"".join(parts))
    return path


__all__ = ["Annotation", "read_annot", "read_surface", "write_annot", "write_surface"]
