"""What every position-file reader returns: a :class:`Digitization` and its :class:`ReadReport`.

Electrodes (labelled), fiducials (NAS, LPA, RPA), headshape points and head-localisation (HPI)
coils, each as :class:`~rtsource.geometry.Points` in metres in one frame, plus a report that
says which unit and frame the reader assumed and why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import ChannelError, FrameError, GeometryError
from ...geometry import Frame, Points, Transform
from ...geometry.head_frames import FIDUCIAL_NAMES
from ..montage import Montage


@dataclass(frozen=True)
class ReadReport:
    """What a reader assumed and why.

    Attributes
    ----------
    path : str
        The file read.
    format : str
        ``"bids"``, ``"elc"``, ``"sfp"``, ``"bvef"``, ``"bvct"``, ``"polhemus"``, ``"csv"``.
    unit : str
        The length unit of the numbers in the file.
    unit_source : str
        ``"file"`` (stated in it), ``"format"`` (fixed by the format), ``"argument"`` (the
        caller said so) or ``"guessed from extent"``.
    frame : Frame
        The frame the positions are in.
    frame_source : str
        Why: ``"file: ..."``, ``"format: ..."``, ``"argument"`` or ``"not stated"``.
    notes : tuple of str
        Anything else the reader decided (points left out, Nz used as nasion, ...).
    """

    path: str
    format: str
    unit: str
    unit_source: str
    frame: Frame
    frame_source: str
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        """One paragraph for logs and the CLI."""
        text = (
            f"{self.path} ({self.format}): unit {self.unit!r} ({self.unit_source}), "
            f"frame {self.frame.value!r} ({self.frame_source})"
        )
        return text + "".join(f"; {n}" for n in self.notes)


@dataclass(frozen=True)
class Digitization:
    """Positions read from a digitiser or montage file, all in one frame, metres.

    Attributes
    ----------
    electrodes : Points or None
        Labelled electrode positions.
    fiducials : Points or None
        Anatomical landmarks, labelled with the canonical names ``NAS``, ``LPA``, ``RPA``
        (in that order; any subset the file had).
    headshape : Points or None
        Unlabelled extra points on the scalp (Polhemus headshape).
    hpi : Points or None
        Head-localisation coils (MEG), labelled.
    report : ReadReport or None
        How the file was read.
    name : str
        Where the positions came from (file name).
    """

    electrodes: Points | None = None
    fiducials: Points | None = None
    headshape: Points | None = None
    hpi: Points | None = None
    report: ReadReport | None = None
    name: str = "digitization"

    def __post_init__(self) -> None:
        sets = self._sets()
        if not sets:
            raise GeometryError(f"{self.name}: no positions (no electrodes, fiducials, headshape or HPI coils)")
        frames = {s.frame for _, s in sets}
        if len(frames) > 1:
            listing = ", ".join(f"{k} in {s.frame.value!r}" for k, s in sets)
            raise GeometryError(f"{self.name}: point sets are in different frames ({listing}); transform them first")

    def _sets(self) -> list[tuple[str, Points]]:
        out = []
        for kind in ("electrodes", "fiducials", "headshape", "hpi"):
            pts = getattr(self, kind)
            if pts is not None and len(pts):
                out.append((kind, pts))
        return out

    @property
    def frame(self) -> Frame:
        return self._sets()[0][1].frame

    @property
    def has_fiducials(self) -> bool:
        """True when NAS, LPA and RPA are all present."""
        return self.fiducials is not None and set(self.fiducials.labels) >= set(FIDUCIAL_NAMES)

    def all_positions_m(self) -> np.ndarray:
        """Every position (electrodes, fiducials, headshape, HPI), metres, shape (n, 3)."""
        return np.concatenate([s.positions_m for _, s in self._sets()])

    def transformed(self, transform: Transform) -> "Digitization":
        """All point sets moved by ``transform`` (frames checked)."""
        moved = {k: s.to_unit("m").transformed(transform) for k, s in self._sets()}
        return Digitization(
            moved.get("electrodes"), moved.get("fiducials"), moved.get("headshape"), moved.get("hpi"), self.report, self.name
        )

    def with_frame(self, frame: Frame | str) -> "Digitization":
        """Declare the frame of positions read as UNKNOWN."""
        moved = {k: s.with_frame(frame) for k, s in self._sets()}
        return Digitization(
            moved.get("electrodes"), moved.get("fiducials"), moved.get("headshape"), moved.get("hpi"), self.report, self.name
        )

    def merged(self, other: "Digitization") -> "Digitization":
        """Electrodes/fiducials from ``self`` and headshape/HPI added from ``other`` (same frame).

        Used to combine a montage file with a separate headshape file. Fiducials of ``self``
        win; ``other``'s are used when ``self`` has none.
        """
        if other.frame != self.frame:
            raise FrameError(
                f"cannot merge {other.name!r} (frame {other.frame.value!r}) into {self.name!r} "
                f"(frame {self.frame.value!r}); both files must use the same digitiser frame"
            )

        def cat(a: Points | None, b: Points | None) -> Points | None:
            if a is None or not len(a):
                return b
            if b is None or not len(b):
                return a
            labels = a.labels + b.labels if (a.labels and b.labels) else ()
            return Points(np.concatenate([a.positions_m, b.positions_m]), a.frame, "m", labels)

        return Digitization(
            cat(self.electrodes, other.electrodes) if self.electrodes is None else self.electrodes,
            self.fiducials if self.fiducials is not None else other.fiducials,
            cat(self.headshape, other.headshape),
            cat(self.hpi, other.hpi),
            self.report,
            self.name,
        )

    def as_headshape(self) -> "Digitization":
        """Every electrode and head-shape point as an unlabelled head-shape point (fiducials
        and HPI coils kept): a montage-format file given as a *head-shape* file."""
        pts = [p.positions_m for p in (self.electrodes, self.headshape) if p is not None and len(p)]
        if not pts:
            return self
        hs = Points(np.concatenate(pts), self.frame, "m")
        return Digitization(None, self.fiducials, hs, self.hpi, self.report, self.name)

    def montage(self) -> Montage:
        """The electrodes (and fiducials when all three are present) as a :class:`Montage`."""
        if self.electrodes is None or not len(self.electrodes):
            raise ChannelError(f"{self.name}: the file has no labelled electrodes, so it gives no montage")
        fid = self.fiducials if self.has_fiducials else None
        if fid is not None:
            fid = fid.select(list(FIDUCIAL_NAMES))
        return Montage(self.electrodes, fid, self.name)


__all__ = ["Digitization", "ReadReport"]
