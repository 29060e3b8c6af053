"""What the MNE bridges share: the lazy MNE import, FIFF constants, channel kinds."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...errors import RtsourceError

#: MNE channel type -> (rtsource channel type, SI unit of the data MNE holds).
CHANNEL_KINDS = {"eeg": ("eeg", "V"), "mag": ("mag", "T"), "grad": ("grad", "T/m")}

# FIFF constants (mne.io.constants.FIFF), spelled out so that importing this package does not import MNE
FIFFV_COORD_HEAD, FIFFV_COORD_MRI = 4, 5
FIFFV_MNE_FREE_ORI = 2
FIFFV_MNE_SURF_LEFT_HEMI, FIFFV_MNE_SURF_RIGHT_HEMI = 101, 102


class MissingDependency(RtsourceError, ImportError):
    """MNE-Python is needed for this and is not installed."""


def import_mne():
    """The ``mne`` module, or :class:`MissingDependency` saying how to install it."""
    try:
        import mne
    except ImportError:
        raise MissingDependency("this needs MNE-Python; install it with `pip install rtsource[mne]` (or `pip install mne`)") from None
    return mne


def short_list(items: Sequence, n: int = 6) -> str:
    """The first ``n`` items for an error message, with the count when there are more."""
    items = [str(i) for i in items]
    return ", ".join(items) if len(items) <= n else ", ".join(items[:n]) + f", ... ({len(items)} in all)"


def square_cov(cov) -> np.ndarray:
    """An MNE covariance's matrix, shape (n_channels, n_channels), also when stored diagonal."""
    data = np.asarray(cov.data, dtype=np.float64)
    return np.diag(data) if data.ndim == 1 else data


__all__ = ["CHANNEL_KINDS", "MissingDependency", "import_mne"]
