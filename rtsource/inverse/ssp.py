"""SSP projectors in the re-referencing matrix ``M`` the operators fold into their kernel.

A recording's (and a covariance's) signal-space projectors (Uusitalo & Ilmoniemi 1997,
Med Biol Eng Comput 35:135) remove spatial patterns ``U`` from the data: ``P = I - U U^T``.
MNE-Python applies them inside the inverse (``K P``, whitener on ``P C P^T`` with the rank
reduced by the number of patterns removed); rtsource does the same by building ``M`` from
the projectors and the EEG reference, so the kernel applied to raw data already contains
``P`` (:func:`projector_reference_matrix`).

As MNE-Python's ``make_projector``: each vector is restricted to the operator's channels
(entries of other channels dropped), rescaled to unit norm, and the set is re-orthogonalised
(SVD), keeping directions whose singular value is above 1e-2 of the largest. An average EEG
reference is one more vector (ones on the EEG channels), so an average reference plus
projectors is the projector onto the complement of all of them, exactly MNE's average-
reference projector among the others. The projection is built per whitening block (EEG;
MEG), so the matrix never mixes sensor types; projectors MNE-Python writes are per type,
for which this is identical to MNE's.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import InverseError
from .reference import reference_matrix, reference_to_channel_matrix
from .whitening import whitening_blocks

#: Directions whose singular value is below this fraction of the largest are dropped (MNE's).
RELATIVE_SINGULAR_VALUE_MIN = 1e-2


def _block_vectors(projectors: Iterable[Any], names: Sequence[str]) -> list[np.ndarray]:
    where = {c: i for i, c in enumerate(names)}
    out = []
    for p in projectors:
        cols = [where.get(c, -1) for c in p.ch_names]
        for row in np.atleast_2d(np.asarray(p.vectors, dtype=np.float64)):
            v = np.zeros(len(names))
            for j, i in enumerate(cols):
                if i >= 0:
                    v[i] = row[j]
            norm = np.linalg.norm(v)
            if norm > 0:
                out.append(v / norm)
    return out


def _complement(vectors: list[np.ndarray], n: int) -> tuple[np.ndarray, int]:
    if not vectors:
        return np.eye(n), 0
    u, s, _ = np.linalg.svd(np.column_stack(vectors), full_matrices=False)
    k = int(np.sum(s / s[0] > RELATIVE_SINGULAR_VALUE_MIN))
    u = u[:, :k]
    return np.eye(n) - u @ u.T, k


def projector_reference_matrix(
    ch_names: Sequence[str],
    reference: str,
    ch_types: Sequence[str] | None = None,
    projectors: Iterable[Any] = (),
) -> tuple[np.ndarray, int]:
    """``M`` for the EEG reference and SSP projectors together.

    Parameters
    ----------
    ch_names : sequence of str
        Operator channels in order.
    reference : str
        ``"average"``, ``"none"`` or the name of an EEG reference channel (which is applied
        first, the projectors after it).
    ch_types : sequence of {"eeg", "mag", "grad"}, optional
        Per-channel types (default: every channel EEG).
    projectors : iterable of SspProjector
        Anything with ``ch_names`` (n_names,) and ``vectors`` (n_vectors, n_names).

    Returns
    -------
    matrix : ndarray, shape (n_chan, n_chan)
        ``M`` (a projector unless the reference is a channel).
    n_projected : int
        Directions the SSP projectors remove (after restriction and orthogonalisation; the
        average reference not counted).
    """
    names = [str(c) for c in ch_names]
    projectors = list(projectors)
    if not projectors:
        return reference_matrix(names, reference, ch_types), 0
    types_ = list(ch_types) if ch_types is not None else ["eeg"] * len(names)
    if len(types_) != len(names):
        raise InverseError(f"ch_types has {len(types_)} entries for {len(names)} channels; pass one type per channel")
    m = np.zeros((len(names), len(names)))
    removed = 0
    for block, idx in whitening_blocks(types_, len(names)).items():
        sub = [names[i] for i in idx]
        vecs = _block_vectors(projectors, sub)
        _, k_ssp = _complement(vecs, len(sub))
        removed += k_ssp
        eeg = block in ("eeg", "all") and all(types_[i] == "eeg" for i in idx)
        if eeg and reference == "average":
            vecs = vecs + [np.full(len(sub), 1.0 / np.sqrt(len(sub)))]
        p, _ = _complement(vecs, len(sub))
        if eeg and reference not in ("average", "none"):
            if reference not in sub:
                raise InverseError(f"reference {reference!r} is not one of the EEG channels; use 'average' or an EEG channel name")
            p = p @ reference_to_channel_matrix(sub, reference)
        m[np.ix_(idx, idx)] = p
    return m, removed


def project_covariance(data: np.ndarray, projector: np.ndarray) -> np.ndarray:
    """``P C P^T`` symmetrised: the covariance of projected data (SI units squared)."""
    c = projector @ np.asarray(data, dtype=np.float64) @ projector.T
    return 0.5 * (c + c.T)


def projectors_provenance(projectors: Iterable[Any]) -> list[dict]:
    """The projectors as JSON for a bundle's provenance (descriptions, flags, channels, vectors)."""
    return [
        {"description": p.description, "kind": p.kind, "active": bool(p.active), "ch_names": list(p.ch_names),
         "vectors": np.asarray(p.vectors, dtype=np.float64).tolist()}
        for p in projectors
    ]  # fmt: skip


def projectors_from_provenance(provenance: Any) -> tuple:
    """The :class:`~rtsource.recordings.SspProjector` items a bundle's provenance lists (none: ``()``)."""
    from ..recordings.acquisition import SspProjector

    items = provenance.get("projectors") if hasattr(provenance, "get") else None
    if not items or not isinstance(items, list) or not all(isinstance(p, dict) and "vectors" in p for p in items):
        return ()  # absent, or only descriptions (bundles of the MNE bridge)
    return tuple(
        SspProjector(str(p["description"]), tuple(p["ch_names"]), np.asarray(p["vectors"], dtype=np.float64), bool(p.get("active", False)), str(p.get("kind", "other")))
        for p in items
    )


__all__ = ["RELATIVE_SINGULAR_VALUE_MIN", "project_covariance", "projector_reference_matrix", "projectors_from_provenance", "projectors_provenance"]
