"""Per-sensor-type whitening (reference section 5, step 1): EEG in V next to MEG in T."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from rtsource.errors import InverseError
from rtsource.inverse.covariance import NoiseCovariance
from rtsource.inverse.minimum_norm import make_inverse_operator
from rtsource.inverse.operator import apply_inverse
from rtsource.inverse.reference import reference_matrix
from rtsource.inverse.whitening import make_whitener

from tests.inverse.conftest import make_problem

N_EEG, N_MAG, N_GRAD = 24, 10, 12


def mixed_problem(seed=0):
    """EEG (V, noise ~1 uV) + magnetometers (T, ~1e-13) + gradiometers (T/m, ~1e-12):
    variances 1e12 .. 1e14 apart. Correlated noise inside each type, some across types."""
    rng = np.random.default_rng(seed)
    n = N_EEG + N_MAG + N_GRAD
    p = make_problem(n_chan=n, n_src=40, seed=seed)
    types = ("eeg",) * N_EEG + ("mag",) * N_MAG + ("grad",) * N_GRAD
    scale = np.r_[np.ones(N_EEG), np.full(N_MAG, 1e-7), np.full(N_GRAD, 1e-6)]
    a = rng.normal(size=(n, n)) / np.sqrt(n)
    corr = 0.3 * np.eye(n) + a @ a.T  # correlated everywhere, also across types
    cov = (1e-6) ** 2 * corr * np.outer(scale, scale)
    gain = p.gain * scale[:, None]
    return p, types, cov, gain


def block_diag(cov, types):
    t = np.array(types)
    meg = (t == "mag") | (t == "grad")
    out = cov.copy()
    out[np.ix_(meg, ~meg)] = 0.0
    out[np.ix_(~meg, meg)] = 0.0
    return out


def test_whitened_noise_is_identity_on_kept_rank():
    p, types, cov, _ = mixed_problem()
    names = p.ch_names
    m = reference_matrix(names, "average", types)
    wh = make_whitener(NoiseCovariance(cov, names, 0, "empirical", 0.0), reference=m,
                       ch_types=types)
    assert wh.block_ranks == {"eeg": N_EEG - 1, "meg": N_MAG + N_GRAD}
    assert wh.rank == N_EEG - 1 + N_MAG + N_GRAD
    # As MNE-Python, covariances between EEG and MEG are ignored: the whitened
    # block-diagonal covariance is exactly the identity.
    white = wh.matrix @ block_diag(cov, types) @ wh.matrix.T
    np.testing.assert_allclose(white, np.eye(wh.rank), atol=1e-10)
    # EEG rows see only EEG channels and ignore their common mode; MEG rows see only MEG
    eeg_rows = slice(0, N_EEG - 1)
    assert np.all(wh.matrix[eeg_rows, N_EEG:] == 0) and np.all(wh.matrix[N_EEG - 1:, :N_EEG] == 0)
    ones_eeg = np.r_[np.ones(N_EEG), np.zeros(N_MAG + N_GRAD)]
    assert np.abs(wh.matrix @ ones_eeg).max() < 1e-9 * np.abs(wh.matrix[eeg_rows]).max()


def test_one_whitener_for_all_types_loses_the_meg(caplog):
    """Without ch_types the MEG eigenvalues (1e-26) fall under the numerical rank cut of
    the EEG ones (1e-12): a warning says so and the whitened noise is not the identity."""
    p, types, cov, _ = mixed_problem()
    names = p.ch_names
    with caplog.at_level(logging.WARNING, logger="rtsource.inverse.covariance"):
        wh = make_whitener(NoiseCovariance(block_diag(cov, types), names, 0, "empirical", 0.0),
                           reference=np.eye(len(names)))
    assert "looks like mixed sensor types" in caplog.text
    assert wh.rank < len(names)


def test_blocks_match_separate_eigendecompositions():
    p, types, cov, _ = mixed_problem(1)
    names = p.ch_names
    m = reference_matrix(names, "average", types)
    wh = make_whitener(NoiseCovariance(cov, names, 0, "empirical", 0.0), reference=m,
                       ch_types=types)
    # twin: each block on its own, W_b = diag(1/sqrt(e)) E^T on the non-zero eigenpairs
    eeg, meg = np.arange(N_EEG), np.arange(N_EEG, len(names))
    parts = []
    for idx in (eeg, meg):
        mb = m[np.ix_(idx, idx)]
        e, v = np.linalg.eigh(mb @ cov[np.ix_(idx, idx)] @ mb.T)
        keep = e > e.max() * 1e-12
        wb = np.zeros((keep.sum(), len(names)))
        wb[:, idx] = (v[:, keep] / np.sqrt(e[keep])).T @ mb
        parts.append(wb)
    w_twin = np.vstack(parts)
    # eigenvectors are defined up to sign (and rotation within equal eigenvalues): compare
    # the whitening projectors W^T W
    np.testing.assert_allclose(wh.matrix.T @ wh.matrix, w_twin.T @ w_twin,
                               rtol=1e-8, atol=1e-8 * np.abs(w_twin.T @ w_twin).max())


def test_reference_matrix_acts_on_eeg_only():
    names = ["Fz", "Cz", "Pz", "MEG1", "MEG2"]
    types = ["eeg", "eeg", "eeg", "mag", "grad"]
    m = reference_matrix(names, "average", types)
    x = np.array([1.0, 2.0, 6.0, 5e-13, 7e-12])
    np.testing.assert_allclose(m @ x, [-2.0, -1.0, 3.0, 5e-13, 7e-12])
    m = reference_matrix(names, "Cz", types)
    np.testing.assert_allclose(m @ x, [-1.0, 0.0, 4.0, 5e-13, 7e-12])
    with pytest.raises(InverseError, match="reference 'MEG1' is a mag channel"):
        reference_matrix(names, "MEG1", types)
    np.testing.assert_array_equal(reference_matrix(["A", "B"], "average", ["mag", "grad"]), np.eye(2))
    with pytest.raises(InverseError, match="ch_types has 2 entries for 5 channels"):
        reference_matrix(names, "average", ["eeg", "eeg"])
    with pytest.raises(InverseError, match="ch_types contains 'ecg'"):
        reference_matrix(names, "average", ["eeg", "eeg", "ecg", "mag", "grad"])


def test_bad_arguments():
    p, types, cov, _ = mixed_problem()
    names = p.ch_names
    nc = NoiseCovariance(cov, names, 0, "empirical", 0.0)
    full_avg = np.eye(len(names)) - 1.0 / len(names)  # mixes EEG and MEG
    with pytest.raises(InverseError, match="reference mixes sensor types"):
        make_whitener(nc, reference=full_avg, ch_types=types)
    m = reference_matrix(names, "average", types)
    with pytest.raises(InverseError, match="rank is 30 but the channels form 2 whitening blocks"):
        make_whitener(nc, reference=m, ch_types=types, rank=30)
    with pytest.raises(InverseError, match="rank has key.*'mag'"):
        make_whitener(nc, reference=m, ch_types=types, rank={"mag": 5})
    with pytest.raises(InverseError, match=r"rank\['eeg'\] is 24 but the EEG block"):
        make_whitener(nc, reference=m, ch_types=types, rank={"eeg": 24})
    wh = make_whitener(nc, reference=m, ch_types=types, rank={"eeg": 20})
    assert wh.block_ranks == {"eeg": 20, "meg": N_MAG + N_GRAD}


@pytest.mark.parametrize("method", ["dSPM", "eLORETA"])
def test_mixed_operator(method):
    """A dSPM/eLORETA operator on EEG + MEG: the kernel sees data in V and T alike, dSPM
    gives unit noise variance (for the block-diagonal noise model), and one type alone
    gives the same answer as ch_types=None."""
    p, types, cov, gain = mixed_problem(2)
    names = p.ch_names
    cov_bd = block_diag(cov, types)
    m = reference_matrix(names, "average", types)
    op = make_inverse_operator(gain, p.normals, NoiseCovariance(cov_bd, names, 0, "empirical", 0.0),
                               reference=m, method=method, ch_types=types)
    assert op.ch_types == tuple(types) and op.details["block_ranks"]["meg"] == N_MAG + N_GRAD
    if method == "dSPM":
        var = np.einsum("rc,cd,rd->r", op.kernel, cov_bd, op.kernel).reshape(-1, 3).sum(axis=1)
        np.testing.assert_allclose(op.noise_norm, np.sqrt(var), rtol=1e-9)
    else:
        assert op.details["converged"]
    # a dipole is still found where it is, from both sensor types together
    k = 11
    x = gain[:, 3 * k: 3 * k + 3] @ p.normals[k] * 1e-8
    assert np.argmax(apply_inverse(op, x[None])[0]) == k
    # EEG only: ch_types all 'eeg' == no ch_types
    e = slice(0, N_EEG)
    eeg_cov = NoiseCovariance(cov[e, e], names[e], 0, "empirical", 0.0)
    a = make_inverse_operator(gain[e], p.normals, eeg_cov, reference=reference_matrix(names[e], "average"),
                              method=method)
    b = make_inverse_operator(gain[e], p.normals, eeg_cov, reference=reference_matrix(names[e], "average"),
                              method=method, ch_types=("eeg",) * N_EEG)
    np.testing.assert_allclose(a.kernel, b.kernel, rtol=1e-10, atol=1e-12 * np.abs(a.kernel).max())
