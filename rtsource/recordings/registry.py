"""The one registry of recording formats, and :func:`read_recording` that dispatches through it.

Each :class:`RecordingFormat` names a reader, the file extensions it is chosen for and the
options of :func:`read_recording` it takes; adding a format is one module with a ``read_*``
function and one line in :data:`FORMATS`. A file no entry claims goes to MNE-Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import StreamError
from .brainvision import read_brainvision
from .edf import read_edf
from .mne_files import read_mne
from .recording import Recording
from .xdf import read_xdf


@dataclass(frozen=True)
class RecordingFormat:
    """A family of recording files and its reader.

    Attributes
    ----------
    name : str
        Short name of the family (``"xdf"``, ``"edf"``, ...).
    read : callable
        ``read(path, **options) -> Recording``.
    extensions : tuple of str
        File extensions (lower case, with the dot) this reader is chosen for; empty for the
        reader of everything else.
    options : tuple of str
        The keyword options of :func:`read_recording` this reader takes (``"stream"``,
        ``"reader"``); the others do not concern it and are not passed.
    """

    name: str
    read: Callable[..., Recording]
    extensions: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


#: Every supported format; the last one (no extensions) reads whatever the others do not.
FORMATS: tuple[RecordingFormat, ...] = (
    RecordingFormat("xdf", read_xdf, (".xdf", ".xdfz"), ("stream",)),
    RecordingFormat("edf", read_edf, (".edf", ".bdf")),
    RecordingFormat("brainvision", read_brainvision, (".vhdr",), ("reader",)),
    RecordingFormat("mne", read_mne),
)

#: Files that belong to a set whose header is the file to pass.
_COMPANIONS = {".eeg": "BrainVision header (.vhdr)", ".vmrk": "BrainVision header (.vhdr)"}

_BY_EXTENSION = {ext: f for f in FORMATS for ext in f.extensions}
_FALLBACK = next(f for f in FORMATS if not f.extensions)


def read_recording(path: str | Path, *, stream: str | int | None = None, reader: str = "auto") -> Recording:
    """Load a recording for replay, choosing the reader by extension.

    Parameters
    ----------
    path : str or Path
        ``.xdf``, ``.edf``, ``.bdf``, ``.vhdr``, ``.fif`` (``.fif.gz``), or anything else
        MNE-Python reads (``mne.io.read_raw``).
    stream : str or int, optional
        XDF only: the stream to play (name, or index in the file). Default: the one numeric,
        regularly sampled stream, or the one of type EEG among several.
    reader : {"auto", "mne", "builtin"}
        BrainVision only: MNE-Python's reader ("auto" uses it when installed) or rtsource's
        own small reader.

    Returns
    -------
    Recording

    Raises
    ------
    StreamError
        Missing or unreadable file, no replayable stream in it, or an ambiguous choice.
    MissingDependency
        The optional package for this format is not installed.
    """
    path = Path(path)
    if not path.exists():
        raise StreamError(f"recording {str(path)!r} does not exist; check the path")
    if not path.is_file():
        raise StreamError(f"recording {str(path)!r} is not a file; pass the recording itself (a BrainVision set: its .vhdr)")
    suffix = "".join(path.suffixes[-2:]).lower() if path.name.lower().endswith(".fif.gz") else path.suffix.lower()
    if suffix in _COMPANIONS:
        raise StreamError(f"recording {str(path)!r}: pass the {_COMPANIONS[suffix]}, which names the data and marker files")
    fmt = _BY_EXTENSION.get(suffix, _FALLBACK)
    given = {"stream": stream, "reader": reader}
    return fmt.read(path, **{key: given[key] for key in fmt.options})
