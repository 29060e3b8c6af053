"""Re-referencing matrices ``M`` (``x -> M x``) as configs and bundles name references.

The operators fold ``M`` into their kernel, so a kernel is applied to raw data; the
covariance and the gain are re-referenced with the same ``M`` (``M C M^T``, ``M G``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InverseError
from ._checks import check_ch_types, short_list


def average_reference_matrix(n_chan: int) -> np.ndarray:
    """The average-reference projector ``I - 1 1^T / n``.

    Parameters
    ----------
    n_chan : int
        Number of channels.

    Returns
    -------
    ndarray, shape (n_chan, n_chan)
        ``M`` such that ``M @ x`` subtracts the channel mean from ``x``.
    """
    n = int(n_chan)
    if n < 2 or n != n_chan:
        raise InverseError(
            f"n_chan is {n_chan!r}; an average reference needs an integer number of "
            "channels >= 2"
        )
    return np.eye(n) - np.full((n, n), 1.0 / n)


def reference_to_channel_matrix(ch_names: Sequence[str], ref_name: str) -> np.ndarray:
    """Re-referencing to one channel: ``x_i -> x_i - x_ref``.

    Parameters
    ----------
    ch_names : sequence of str
        Channel names in data order.
    ref_name : str
        The reference channel; its row of the result is zero.

    Returns
    -------
    ndarray, shape (n_chan, n_chan)
        ``M = I - 1 e_ref^T``.
    """
    names = [str(c) for c in ch_names]
    if names.count(ref_name) != 1:
        what = "is not among" if ref_name not in names else "appears more than once in"
        raise InverseError(
            f"ref_name {ref_name!r} {what} the channels ({short_list(names)}); "
            "pass the name of exactly one channel"
        )
    m = np.eye(len(names))
    m[:, names.index(ref_name)] -= 1.0
    return m


def reference_matrix(
    ch_names: Sequence[str], reference: str, ch_types: Sequence[str] | None = None
) -> np.ndarray:
    """``M`` for a reference named as in configs and bundles: ``"average"`` or a channel name.

    Parameters
    ----------
    ch_names : sequence of str
        Channel names in data order.
    reference : str
        ``"average"``, the name of the reference channel, or ``"none"`` (identity).
    ch_types : sequence of {"eeg", "mag", "grad"}, optional
        With channel types the reference acts on the EEG channels only (average over the
        EEG channels, or minus an EEG reference channel) and MEG channels pass
        unchanged. Without them every channel is treated as EEG.

    Returns
    -------
    ndarray, shape (n_chan, n_chan)
    """
    names = [str(c) for c in ch_names]
    types_ = check_ch_types(ch_types, len(names))
    if reference == "none":  # nothing re-referenced (MEG-only bundles, MNE data without projectors)
        return np.eye(len(names))
    if types_ is None or all(t == "eeg" for t in types_):
        if reference == "average":
            return average_reference_matrix(len(names))
        return reference_to_channel_matrix(names, reference)
    eeg = np.array([t == "eeg" for t in types_])
    m = np.eye(len(names))
    if not eeg.any():
        return m  # MEG only: nothing to re-reference
    idx = np.flatnonzero(eeg)
    eeg_names = [names[i] for i in idx]
    if reference == "average":
        sub = average_reference_matrix(len(idx))
    else:
        if reference in names and reference not in eeg_names:
            raise InverseError(
                f"reference {reference!r} is a {types_[names.index(reference)]} channel; "
                "the reference must be an EEG channel (or 'average')"
            )
        sub = reference_to_channel_matrix(eeg_names, reference)
    m[np.ix_(idx, idx)] = sub
    return m
