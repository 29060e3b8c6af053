"""FIF, and every other file MNE-Python reads as Raw (BrainVision, EEGLAB, ...): values in SI units."""

from __future__ import annotations

from pathlib import Path

from ..errors import StreamError
from .dependencies import need
from .recording import Recording

#: MNE channel type -> (stream type, SI unit) of the values MNE returns.
_MNE_KINDS = {"eeg": ("EEG", "V"), "eog": ("EOG", "V"), "ecg": ("ECG", "V"), "emg": ("EMG", "V"), "seeg": ("SEEG", "V"), "ecog": ("ECOG", "V"), "dbs": ("DBS", "V"), "bio": ("BIO", "V"), "mag": ("MEG", "T"), "grad": ("MEG", "T/m"), "ref_meg": ("MEG", "T"), "stim": ("STIM", ""), "misc": ("MISC", "")}


def read_mne(path: str | Path, *, kind: str = "") -> Recording:
    """Any file MNE-Python reads as Raw (FIF, BrainVision, EEGLAB, ...): values in SI units."""
    mne = need("mne", "mne", f"{Path(path).suffix or 'this'} files")
    path = Path(path)
    try:
        if kind == "brainvision":
            raw = mne.io.read_raw_brainvision(str(path), preload=True, verbose="error")
        elif path.name.lower().endswith((".fif", ".fif.gz")):
            raw = mne.io.read_raw_fif(str(path), preload=True, verbose="error")
        else:
            raw = mne.io.read_raw(str(path), preload=True, verbose="error")
    except Exception as exc:  # MNE's readers raise many kinds on a damaged file (even AttributeError)
        if str(exc) == "" or isinstance(exc, (AttributeError, IndexError, KeyError, TypeError)):
            exc = f"the file is damaged, truncated or not a recording ({type(exc).__name__}: {exc})"
        raise StreamError(f"MNE-Python cannot read {str(path)!r}: {exc}") from None
    kinds = raw.get_channel_types()
    types, units = [], []
    for k in kinds:
        t, u = _MNE_KINDS.get(k, (k.upper(), ""))
        types.append(t)
        units.append(u)
    stream_type = "MEG" if any(k in ("mag", "grad") for k in kinds) else "EEG"
    # CTF (compensation matrices in the file): the grade of the data as read; -1: not applicable
    grade = int(raw.compensation_grade or 0) if raw.info.get("comps") else -1
    return Recording(
        raw.get_data().T, float(raw.info["sfreq"]), raw.ch_names, types, units, name=path.name.split(".")[0], type=stream_type, path=str(path),
        format="brainvision" if kind else "mne", compensation_grade=grade,
    )  # fmt: skip

