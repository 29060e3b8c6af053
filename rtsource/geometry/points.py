"""Point sets that know their frame and unit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import GeometryError
from .frames import Frame, Transform, as_frame, check_same_frame
from .units import convert_length, length_factor


def readonly_array(values, dtype=float, shape_tail: tuple[int, ...] | None = None, name="array"):
    """Copy ``values`` into a read-only array, checking the trailing shape and finiteness."""
    a = np.array(values, dtype=dtype, copy=True)
    if shape_tail is not None and a.shape[1:] != shape_tail:
        raise GeometryError(f"{name} must have shape (n, {', '.join(map(str, shape_tail))}), got {a.shape}")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[:3].tolist()
        raise GeometryError(f"{name} has non-finite values (first at {bad})")
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class Points:
    """Positions in a named frame and length unit.

    Parameters
    ----------
    positions : ndarray, shape (n, 3)
        Coordinates in ``unit``.
    frame : Frame
        The coordinate frame.
    unit : str
        Length unit of ``positions`` (``"m"``, ``"cm"``, ``"mm"``).
    labels : tuple of str, optional
        One name per point (electrode labels, fiducial names), or empty.
    """

    positions: np.ndarray
    frame: Frame
    unit: str = "m"
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "frame", as_frame(self.frame))
        length_factor(self.unit)  # validates the unit name
        pos = readonly_array(self.positions, shape_tail=(3,), name="positions")
        object.__setattr__(self, "positions", pos)
        labels = tuple(str(x) for x in self.labels)
        if labels and len(labels) != len(pos):
            raise GeometryError(f"{len(labels)} labels for {len(pos)} points")
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def positions_m(self) -> np.ndarray:
        """Positions in metres, shape (n, 3)."""
        return convert_length(self.positions, self.unit, "m")

    def to_unit(self, unit: str) -> "Points":
        """The same points expressed in ``unit``."""
        return Points(convert_length(self.positions, self.unit, unit), self.frame, unit, self.labels)

    def transformed(self, transform: Transform) -> "Points":
        """The points moved into ``transform.to_frame`` (unit kept)."""
        check_same_frame(self.frame, transform.from_frame, "these points", "the transform's input")
        moved_m = transform.apply_m(self.positions_m)
        return Points(convert_length(moved_m, "m", self.unit), transform.to_frame, self.unit, self.labels)

    def with_frame(self, frame: Frame | str) -> "Points":
        """Declare the frame of points read as ``UNKNOWN`` (only allowed from UNKNOWN)."""
        if self.frame != Frame.UNKNOWN:
            raise GeometryError(
                f"points are already in the {self.frame.value!r} frame; use a Transform to move them"
            )
        return Points(self.positions, as_frame(frame), self.unit, self.labels)

    def select(self, labels: list[str] | tuple[str, ...]) -> "Points":
        """The subset with the given labels, in that order (exact names)."""
        index = {name: i for i, name in enumerate(self.labels)}
        missing = [x for x in labels if x not in index]
        if missing:
            raise GeometryError(f"labels {missing} are not among these points ({len(self)} points)")
        idx = [index[x] for x in labels]
        return Points(self.positions[idx], self.frame, self.unit, tuple(labels))

    def position_of(self, label: str) -> np.ndarray:
        """Position of one labelled point, in this set's unit."""
        return self.select([label]).positions[0]
