"""SSP projectors in the re-referencing matrix (rtsource.inverse.ssp), checked by construction."""

from __future__ import annotations

import numpy as np
import pytest

from rtsource.inverse.reference import reference_matrix
from rtsource.inverse.ssp import project_covariance, projector_reference_matrix, projectors_from_provenance, projectors_provenance
from rtsource.recordings import SspProjector

NAMES = [f"E{i}" for i in range(6)] + ["M0", "M1", "M2", "M3"]
TYPES = ["eeg"] * 6 + ["mag", "grad", "grad", "mag"]


def test_without_projectors_it_is_the_reference_matrix():
    m, k = projector_reference_matrix(NAMES, "average", TYPES, ())
    assert k == 0 and np.array_equal(m, reference_matrix(NAMES, "average", TYPES))


def test_average_reference_and_projectors_are_one_projector_per_block():
    rng = np.random.default_rng(0)
    u_meg = rng.normal(size=4)
    u_eeg = rng.normal(size=6)
    projs = (
        SspProjector("PCA-v1", ("M3", "M1", "M0", "M2", "OTHER"), np.r_[u_meg[[3, 1, 0, 2]], 5.0], kind="empty_room"),
        SspProjector("EOG", tuple(NAMES[:6]), u_eeg, kind="eog"),
        SspProjector("dup", tuple(NAMES[:6]), 2 * u_eeg),  # the same direction again: dropped
    )
    m, k = projector_reference_matrix(NAMES, "average", TYPES, projs)
    assert k == 2
    assert np.allclose(m, m.T) and np.allclose(m @ m, m)  # an orthogonal projector
    assert np.allclose(m[:6, 6:], 0) and np.allclose(m[6:, :6], 0)  # never mixes EEG and MEG
    assert np.allclose(m[6:, 6:] @ u_meg, 0)  # the MEG pattern (restricted to the channels) is removed
    assert np.allclose(m[:6, :6] @ u_eeg, 0) and np.allclose(m[:6, :6] @ np.ones(6), 0)
    assert np.linalg.matrix_rank(m) == len(NAMES) - 3
    c = project_covariance(np.eye(len(NAMES)), m)
    assert np.allclose(c, m)


def test_named_reference_then_projectors():
    u = np.r_[1.0, -1.0, 0, 0, 0, 0]
    m, _ = projector_reference_matrix(NAMES[:6], "E0", None, (SspProjector("p", tuple(NAMES[:6]), u),))
    x = np.random.default_rng(1).normal(size=6)
    y = m @ x
    uu = u / np.linalg.norm(u)
    assert np.allclose(y, (x - x[0]) - uu * (uu @ (x - x[0])))  # referenced to E0, then projected
    assert y @ u == pytest.approx(0.0, abs=1e-12)


def test_provenance_round_trip():
    p = SspProjector("PCA-v1", ("M0", "M1"), np.array([[0.6, 0.8]]), active=True, kind="empty_room")
    (q,) = projectors_from_provenance({"projectors": projectors_provenance([p])})
    assert (q.description, q.ch_names, q.active, q.kind) == (p.description, p.ch_names, True, "empty_room")
    assert np.array_equal(q.vectors, p.vectors)
    assert projectors_from_provenance({"projectors": ["PCA-v1"]}) == ()  # the MNE bridge lists descriptions only
