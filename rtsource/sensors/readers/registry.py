"""The one registry of position-file formats, and the entry points that dispatch through it.

Each :class:`PositionFormat` names a reader and the file names it is chosen for; adding a
format is one module with a ``read_*`` function and one line in :data:`FORMATS`.
:func:`read_digitization` picks the reader from ``format=`` or the file name;
:func:`read_montage` returns just the electrodes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping

from ...errors import GeometryError
from ...geometry import Frame
from ..montage import Montage
from .bids import read_bids_electrodes
from .brainvision import read_bvef
from .digitization import Digitization
from .elc import read_elc
from .generic_csv import read_positions_csv
from .polhemus import read_polhemus
from .sfp import read_sfp

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PositionFormat:
    """A family of position files and its reader.

    Attributes
    ----------
    name : str
        The ``format=`` value (``"bids"``, ``"elc"``, ...), also written into the
        :class:`~.digitization.ReadReport`.
    read : callable
        ``read(path, *, unit=None, frame=None) -> Digitization``.
    extensions : tuple of str
        File extensions (lower case, with the dot) this reader is chosen for.
    name_ending : str or None
        A file-name ending that chooses this reader before any extension is looked at
        (BIDS: ``_electrodes.tsv``, which would otherwise be a plain ``.tsv`` table).
    """

    name: str
    read: Callable[..., Digitization]
    extensions: tuple[str, ...] = ()
    name_ending: str | None = None


#: Every supported format, in the order file names are tested.
FORMATS: tuple[PositionFormat, ...] = (
    PositionFormat("bids", read_bids_electrodes, name_ending="_electrodes.tsv"),
    PositionFormat("elc", read_elc, (".elc",)),
    PositionFormat("sfp", read_sfp, (".sfp",)),
    PositionFormat("bvef", read_bvef, (".bvef", ".bvct")),
    PositionFormat("polhemus", read_polhemus, (".pos", ".hsp", ".elp")),
    PositionFormat("csv", read_positions_csv, (".csv", ".tsv", ".txt")),
)

#: Reader per format name (read-only view of :data:`FORMATS`).
READERS: Mapping[str, Callable[..., Digitization]] = MappingProxyType({f.name: f.read for f in FORMATS})

_BY_EXTENSION = {ext: f.name for f in FORMATS for ext in f.extensions}


def detect_format(path: str | Path) -> str:
    """The reader name for a file, from its name (``*_electrodes.tsv`` is BIDS)."""
    p = Path(path)
    for f in FORMATS:
        if f.name_ending is not None and p.name.casefold().endswith(f.name_ending):
            return f.name
    fmt = _BY_EXTENSION.get(p.suffix.casefold())
    if fmt is None:
        endings = [f"*{f.name_ending}" for f in FORMATS if f.name_ending is not None]
        raise GeometryError(
            f"cannot tell the format of {str(p)!r} from its extension {p.suffix!r}; use one of "
            f"{', '.join(endings + sorted(_BY_EXTENSION))}, or pass format= one of {sorted(READERS)}"
        )
    return fmt


def read_digitization(
    path: str | Path, *, format: str | None = None, unit: str | None = None, frame: Frame | str | None = None
) -> Digitization:
    """Read any supported position file (format from the extension unless given).

    Parameters
    ----------
    path : path
        The file.
    format : str, optional
        One of ``"bids"``, ``"elc"``, ``"sfp"``, ``"bvef"``, ``"polhemus"``, ``"csv"``.
    unit : str, optional
        Length unit of the numbers in the file, overriding what it says (still checked
        against the extent).
    frame : Frame or str, optional
        Frame of the positions, overriding what the file says.
    """
    fmt = format or detect_format(path)
    if fmt not in READERS:
        raise GeometryError(f"format {fmt!r} is not known; use one of {sorted(READERS)}")
    dig = READERS[fmt](path, unit=unit, frame=frame)
    logger.info("%s", dig.report.describe())
    return dig


def read_montage(path: str | Path, **kwargs) -> Montage:
    """The electrodes of a position file as a :class:`Montage` (see :func:`read_digitization`)."""
    return read_digitization(path, **kwargs).montage()


__all__ = ["FORMATS", "READERS", "PositionFormat", "detect_format", "read_digitization", "read_montage"]
