"""Coordinate frames and the rigid (or similarity) transforms between them.

A position means nothing without its frame. rtsource names each frame it knows, and every
point set, mesh and transform carries one. Combining two frames without a transform is an
error that names both, because "the electrodes were in the wrong frame" is the silent
mistake that puts sources centimetres off.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from ..arrays import frozen as _readonly
from ..errors import FrameError


class Frame(str, enum.Enum):
    """The coordinate frames rtsource knows.

    TEMPLATE
        The embedded template's frame: FreeSurfer fsaverage surface RAS, which is close to
        MNI305 (x right, y anterior, z superior; origin near the anterior commissure).
    HEAD
        Neuromag/MNE head frame from fiducials: x through the RPA, y through the nasion,
        z up, origin on the LPA-RPA line.
    MRI
        A subject's MRI surface RAS (FreeSurfer tkr) frame.
    CTF
        CTF head frame (ALS: x to the nasion, y to the LPA, z up).
    DEVICE
        A MEG device's own frame.
    UNKNOWN
        Positions as read from a file before anyone said which frame they are in.
    """

    TEMPLATE = "template"
    HEAD = "head"
    MRI = "mri"
    CTF = "ctf"
    DEVICE = "device"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


def as_frame(value: Frame | str) -> Frame:
    """Return ``value`` as a :class:`Frame`, with an error that lists the known names."""
    if isinstance(value, Frame):
        return value
    try:
        return Frame(str(value).lower())
    except ValueError:
        known = ", ".join(f.value for f in Frame)
        raise FrameError(f"coordinate frame {value!r} is not known; use one of {known}") from None


def check_same_frame(a: Frame, b: Frame, what_a: str, what_b: str) -> None:
    """Raise :class:`FrameError` naming both sides if ``a`` and ``b`` differ."""
    if a != b:
        raise FrameError(
            f"{what_a} is in the {a.value!r} frame but {what_b} is in the {b.value!r} frame; "
            f"transform one into the other first (rtsource.geometry.Transform)"
        )


@dataclass(frozen=True)
class Transform:
    """A 4x4 affine transform from one frame to another, translation in metres.

    Parameters
    ----------
    from_frame, to_frame : Frame
        The frame of the input and output coordinates.
    matrix : ndarray, shape (4, 4)
        Homogeneous matrix acting on column vectors in metres. The upper-left 3x3 block is a
        rotation, optionally times a uniform scale (template scaling in coregistration).
    """

    from_frame: Frame
    to_frame: Frame
    matrix: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "from_frame", as_frame(self.from_frame))
        object.__setattr__(self, "to_frame", as_frame(self.to_frame))
        m = np.asarray(self.matrix, dtype=float)
        if m.shape != (4, 4) or not np.all(np.isfinite(m)):
            raise FrameError(f"transform matrix must be a finite 4x4 array, got shape {m.shape}")
        if not np.allclose(m[3], [0, 0, 0, 1]):
            raise FrameError(f"transform matrix last row must be [0, 0, 0, 1], got {m[3]}")
        object.__setattr__(self, "matrix", _readonly(m))

    @classmethod
    def identity(cls, from_frame: Frame | str, to_frame: Frame | str) -> "Transform":
        """A transform that relabels coordinates without moving them."""
        return cls(as_frame(from_frame), as_frame(to_frame), np.eye(4))

    @classmethod
    def from_rotation_translation(
        cls,
        from_frame: Frame | str,
        to_frame: Frame | str,
        rotation: np.ndarray,
        translation_m: np.ndarray,
        scale: float = 1.0,
    ) -> "Transform":
        """Build ``x -> scale * R x + t`` (``t`` in metres)."""
        m = np.eye(4)
        m[:3, :3] = scale * np.asarray(rotation, dtype=float)
        m[:3, 3] = np.asarray(translation_m, dtype=float)
        return cls(as_frame(from_frame), as_frame(to_frame), m)

    def apply_m(self, positions_m: np.ndarray) -> np.ndarray:
        """Transform raw positions in metres, shape (n, 3) -> (n, 3)."""
        p = np.asarray(positions_m, dtype=float)
        return p @ self.matrix[:3, :3].T + self.matrix[:3, 3]

    def apply_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Rotate directions (normals, orientations) without translating or scaling them."""
        r = self.matrix[:3, :3]
        scale = np.cbrt(abs(np.linalg.det(r)))
        return np.asarray(vectors, dtype=float) @ (r / scale).T

    def inverse(self) -> "Transform":
        """The transform from ``to_frame`` back to ``from_frame``."""
        return Transform(self.to_frame, self.from_frame, np.linalg.inv(self.matrix))

    def then(self, other: "Transform") -> "Transform":
        """Compose: apply ``self`` first, then ``other`` (frames must chain)."""
        if other.from_frame != self.to_frame:
            raise FrameError(
                f"cannot chain a {self.from_frame.value!r}->{self.to_frame.value!r} transform "
                f"with a {other.from_frame.value!r}->{other.to_frame.value!r} one: "
                f"{self.to_frame.value!r} != {other.from_frame.value!r}"
            )
        return Transform(self.from_frame, other.to_frame, other.matrix @ self.matrix)
