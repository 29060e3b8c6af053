"""LCMV beamformers (reference section 6) against closed forms, an independent NumPy twin
and MNE-Python."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from rtsource.errors import InverseError
from rtsource.inverse.beamformer import make_lcmv
from rtsource.inverse.covariance import (
    DataCovariance,
    NoiseCovariance,
    estimate_data_covariance,
)
from rtsource.inverse.operator import apply_inverse
from rtsource.inverse.reference import average_reference_matrix

VARIANTS = [
    (wn, ori)
    for wn in (None, "unit-noise-gain", "unit-noise-gain-invariant", "nai")
    for ori in ("fixed", "free", "max-power")
]


def as_cov(p):
    return NoiseCovariance(p.cov, p.ch_names, 0, "empirical", 0.0)


def data_covariance(p, n_samples=4000, seed=0, sources=(3, 17), amp=3e-8):
    """Noise plus two active dipoles (random orientations), as a DataCovariance."""
    rng = np.random.default_rng(seed)
    n = len(p.ch_names)
    x = rng.normal(size=(n_samples, n)) @ np.linalg.cholesky(p.cov).T
    t = np.arange(n_samples)
    for i, k in enumerate(sources):
        q = rng.normal(size=3)
        x += np.outer(np.sin(0.05 * (i + 1) * t + i), p.gain[:, 3 * k: 3 * k + 3] @ q) * amp
    return estimate_data_covariance(x, p.ch_names, method="empirical"), x


def frames(op):
    return op.source_rotation


# --------------------------------------------------------------------------------------
# Independent twin: explicit matrices, per-source loops, np.linalg.inv / eig
# --------------------------------------------------------------------------------------


def lcmv_twin(p, dcov, m, reg, weight_norm, orientation, rot):
    """Section 6 written out literally (whitened space of the full-rank subspace)."""
    n = len(p.ch_names)
    e, v = np.linalg.eigh(m @ p.cov @ m.T)
    keep = e > e.max() * 1e-10
    w = (v[:, keep] / np.sqrt(e[keep])).T @ m  # W M, (r, n)
    r = w.shape[0]
    c = w @ dcov @ w.T
    ce = np.linalg.eigvalsh(c)[::-1]
    mu = reg * np.trace(c) / n  # mean eigenvalue of the n x n whitened covariance
    cinv = np.linalg.inv(c + mu * np.eye(r))
    n_src = p.normals.shape[0]
    rows, oris = [], []
    for k in range(n_src):
        gk = w @ p.gain[:, 3 * k: 3 * k + 3] @ rot[k].T  # local frame (t1, t2, n)
        if orientation == "fixed":
            gk = gk[:, 2:3]
        elif orientation == "max-power":
            a = gk.T @ cinv @ gk
            if weight_norm is None:
                mat = np.linalg.inv(a)
            else:
                b = gk.T @ cinv @ cinv @ gk
                mat = np.linalg.inv(b) @ a  # Sekihara & Nagarajan 2008, eq. 4.47
            vals, vecs = np.linalg.eig(mat)
            eta = np.real(vecs[:, np.argmax(np.abs(vals))])
            eta /= np.linalg.norm(eta)
            eta *= np.sign(eta[2])
            oris.append(rot[k].T @ eta)
            gk = gk @ eta[:, None]
        if weight_norm == "unit-noise-gain-invariant":
            numer = gk.T @ cinv
            ev, evec = np.linalg.eigh(numer @ numer.T)
            wk = (evec / np.sqrt(ev)) @ evec.T @ numer
        else:
            wk = np.linalg.inv(gk.T @ cinv @ gk) @ gk.T @ cinv  # Van Veen et al. 1997
            if weight_norm in ("unit-noise-gain", "nai"):
                wk = wk / np.linalg.norm(wk, axis=1, keepdims=True)
            if weight_norm == "nai":
                wk = wk / np.sqrt(max(ce[r - 1], mu))
        rows.append(wk @ w)
    return np.vstack(rows), (np.array(oris) if oris else None), mu


@pytest.mark.parametrize("weight_norm, orientation", VARIANTS)
def test_matches_twin(small_problem, weight_norm, orientation):
    p = small_problem
    n = len(p.ch_names)
    m = average_reference_matrix(n)
    dcov, _ = data_covariance(p)
    op = make_lcmv(
        p.gain, p.normals, dcov, as_cov(p), reference=m, reg=0.05,
        weight_norm=weight_norm, orientation=orientation,
    )
    k_twin, ori_twin, mu = lcmv_twin(p, dcov.data, m, 0.05, weight_norm, orientation, frames(op))
    err = np.linalg.norm(op.kernel - k_twin) / np.linalg.norm(k_twin)
    assert err < 1e-8, err
    assert op.method == "LCMV" and op.rank == n - 1 and op.details["data_rank"] == n - 1
    assert op.n_orient == (3 if orientation == "free" else 1)
    np.testing.assert_array_equal(op.noise_norm, 1.0)
    assert op.details["loading"] == pytest.approx(mu, rel=1e-12)
    assert op.output_unit == ("A*m" if weight_norm is None else "")
    if ori_twin is not None:
        np.testing.assert_allclose(op.orientations, ori_twin, atol=1e-8)
    # the reference is folded in: a common-mode offset does nothing
    assert np.abs(op.kernel @ np.ones(n)).max() < 1e-9 * np.abs(op.kernel).max() * n


# --------------------------------------------------------------------------------------
# Closed forms
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", ["fixed", "free", "max-power"])
def test_unit_gain(problem, orientation):
    """Van Veen et al. 1997: W_k G_k = I for the source's own (raw) lead field."""
    n = len(problem.ch_names)
    dcov, _ = data_covariance(problem)
    op = make_lcmv(
        problem.gain, problem.normals, dcov, as_cov(problem),
        reference=average_reference_matrix(n), weight_norm=None, orientation=orientation,
    )
    g = problem.gain.reshape(n, -1, 3)
    worst = 0.0
    for k in range(op.n_sources):
        if orientation == "free":
            lead = g[:, k, :] @ op.source_rotation[k].T  # local frame columns
            resp = op.kernel[3 * k: 3 * k + 3] @ lead
            worst = max(worst, np.abs(resp - np.eye(3)).max())
        else:
            ori = problem.normals[k] if orientation == "fixed" else op.orientations[k]
            worst = max(worst, abs(abs(op.kernel[k] @ g[:, k, :] @ ori) - 1.0))
    assert worst < 1e-6, worst


@pytest.mark.parametrize("orientation", ["fixed", "free", "max-power"])
def test_unit_noise_gain_rows_have_unit_norm(problem, orientation):
    """Sekihara & Nagarajan 2008: each weight vector has unit norm in the whitened space,
    i.e. w C_noise w^T = 1 for the raw weights (output variance 1 on noise)."""
    n = len(problem.ch_names)
    dcov, _ = data_covariance(problem)
    op = make_lcmv(
        problem.gain, problem.normals, dcov, as_cov(problem),
        reference=average_reference_matrix(n), weight_norm="unit-noise-gain",
        orientation=orientation,
    )
    var = np.einsum("rc,cd,rd->r", op.kernel, problem.cov, op.kernel)
    np.testing.assert_allclose(var, 1.0, rtol=1e-9)


def test_rotation_invariant_form(problem):
    """(G^T C^-2 G)^(-1/2) G^T C^-1: per source W_k C_noise W_k^T = I (orthonormal rows in
    the whitened space) and the pooled output does not depend on the tangential frame."""
    n = len(problem.ch_names)
    dcov, x = data_covariance(problem)
    m = average_reference_matrix(n)
    op = make_lcmv(
        problem.gain, problem.normals, dcov, as_cov(problem), reference=m,
        weight_norm="unit-noise-gain-invariant", orientation="free",
    )
    k3 = op.kernel.reshape(-1, 3, n)
    blocks = np.einsum("kic,cd,kjd->kij", k3, problem.cov, k3)
    np.testing.assert_allclose(blocks, np.broadcast_to(np.eye(3), blocks.shape), atol=1e-9)
    # rotate every source's tangential frame: pooled output unchanged
    theta = np.random.default_rng(1).uniform(0, 2 * np.pi, op.n_sources)
    rot = np.zeros((op.n_sources, 3, 3))
    rot[:, 0, 0] = rot[:, 1, 1] = np.cos(theta)
    rot[:, 0, 1], rot[:, 1, 0] = -np.sin(theta), np.sin(theta)
    rot[:, 2, 2] = 1.0
    k_rot = np.einsum("kij,kjc->kic", rot, k3)
    y1 = apply_inverse(op, x[:50])
    y2 = np.sqrt(np.sum(np.einsum("kic,tc->tki", k_rot, x[:50]) ** 2, axis=2))
    np.testing.assert_allclose(y1, y2, rtol=1e-10)


def test_nai_is_unit_noise_gain_over_noise_level(problem):
    n = len(problem.ch_names)
    dcov, _ = data_covariance(problem)
    m = average_reference_matrix(n)
    kw = dict(reference=m, orientation="max-power")
    ung = make_lcmv(problem.gain, problem.normals, dcov, as_cov(problem),
                    weight_norm="unit-noise-gain", **kw)
    nai = make_lcmv(problem.gain, problem.normals, dcov, as_cov(problem), weight_norm="nai", **kw)
    e = nai.singular_values  # eigenvalues of the whitened data covariance, descending
    level = max(e[nai.details["data_rank"] - 1], nai.details["loading"])
    assert nai.details["noise_level"] == pytest.approx(level, rel=1e-12)
    ref = ung.kernel / np.sqrt(level)
    np.testing.assert_allclose(nai.kernel, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())
    np.testing.assert_allclose(nai.orientations, ung.orientations, atol=1e-12)


def test_max_power_orientation(problem):
    """The chosen orientation maximises the normalised power ratio (Sekihara & Nagarajan
    2008 eq. 4.47) and points to the normal's side."""
    n = len(problem.ch_names)
    dcov, _ = data_covariance(problem)
    m = average_reference_matrix(n)
    op = make_lcmv(problem.gain, problem.normals, dcov, as_cov(problem), reference=m,
                   weight_norm="unit-noise-gain", orientation="max-power")
    ori = op.orientations
    np.testing.assert_allclose(np.linalg.norm(ori, axis=1), 1.0, rtol=1e-12)
    assert np.all(np.sum(ori * problem.normals, axis=1) >= 0)
    # ratio (eta^T A eta) / (eta^T B eta) in the whitened space, vs random orientations
    e, v = np.linalg.eigh(m @ problem.cov @ m)
    keep = e > e.max() * 1e-10
    w = (v[:, keep] / np.sqrt(e[keep])).T @ m
    c = w @ dcov.data @ w.T
    cinv = np.linalg.inv(c + op.details["loading"] * np.eye(c.shape[0]))
    rng = np.random.default_rng(0)
    for k in range(0, op.n_sources, 10):
        gk = w @ problem.gain[:, 3 * k: 3 * k + 3]
        a, b = gk.T @ cinv @ gk, gk.T @ cinv @ cinv @ gk
        q = rng.normal(size=(200, 3))
        ratios = np.einsum("qi,ij,qj->q", q, a, q) / np.einsum("qi,ij,qj->q", q, b, q)
        best = (ori[k] @ a @ ori[k]) / (ori[k] @ b @ ori[k])
        assert np.all(best >= ratios * (1 - 1e-10))


def test_regularisation_and_rank():
    """Rank-deficient data covariance (fewer samples than channels): the inverse uses
    its top k eigenpairs; a full-rank one with the loading of reg * mean eigenvalue."""
    from tests.inverse.conftest import make_problem

    p = make_problem(n_chan=24, n_src=30, seed=4)
    n = len(p.ch_names)
    m = average_reference_matrix(n)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, n)) * 1e-6  # 12 samples -> rank 11 after the mean
    dcov = estimate_data_covariance_unchecked(x, p.ch_names)
    op = make_lcmv(p.gain, p.normals, dcov, as_cov(p), reference=m, reg=0.1,
                   weight_norm="unit-noise-gain", orientation="fixed")
    assert op.details["data_rank"] == 11
    # twin: pseudo-inverse of (C + mu I) on the top 11 eigenpairs
    e, v = np.linalg.eigh(m @ p.cov @ m)
    keep = e > e.max() * 1e-10
    w = (v[:, keep] / np.sqrt(e[keep])).T @ m
    c = w @ dcov.data @ w.T
    ce, cv = np.linalg.eigh(c)
    ce, cv = ce[::-1][:11], cv[:, ::-1][:, :11]
    mu = 0.1 * np.trace(c) / n
    cinv = (cv / (ce + mu)) @ cv.T
    g = w @ np.einsum("cki,ki->ck", p.gain.reshape(n, -1, 3), p.normals)
    wk = (cinv @ g).T
    wk /= np.linalg.norm(wk, axis=1, keepdims=True)
    np.testing.assert_allclose(op.kernel, wk @ w, rtol=1e-8, atol=1e-12 * np.abs(op.kernel).max())


def test_no_noise_covariance_whitens_with_identity(small_problem):
    """noise_cov=None: an identity 'noise covariance' in SI units (MNE-Python's ad hoc
    std=1), still re-referenced; unit gain holds."""
    p = small_problem
    n = len(p.ch_names)
    dcov, _ = data_covariance(p)
    op = make_lcmv(p.gain, p.normals, dcov, None, reference=average_reference_matrix(n),
                   weight_norm=None, orientation="fixed")
    resp = np.einsum("kc,ck->k", op.kernel, np.einsum("cki,ki->ck", p.gain.reshape(n, -1, 3),
                                                      p.normals))
    np.testing.assert_allclose(resp, 1.0, rtol=1e-8)


def test_mixed_sensor_types():
    """EEG in V next to magnetometers in T (variances 1e12 apart): per-type whitening
    keeps both, unit gain still holds."""
    from tests.inverse.conftest import make_problem

    p = make_problem(n_chan=40, n_src=30, seed=5)
    types = ("eeg",) * 24 + ("mag",) * 16
    scale = np.r_[np.ones(24), np.full(16, 1e-6)]  # "T" rows: 1e6 smaller amplitudes
    gain = p.gain * scale[:, None]
    cov = p.cov * np.outer(scale, scale)
    cov[:24, 24:] = cov[24:, :24] = 0.0
    names = p.ch_names
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 40)) @ np.linalg.cholesky(cov).T
    x += np.outer(np.sin(np.arange(3000) * 0.1), gain[:, 9:12] @ [1.0, 0.5, -0.3]) * 3e-8
    from rtsource.inverse.reference import reference_matrix

    m = reference_matrix(names, "average", types)
    dcov = estimate_data_covariance(x, names)
    op = make_lcmv(gain, p.normals, dcov, NoiseCovariance(cov, names, 0, "empirical", 0.0),
                   reference=m, ch_types=types, weight_norm=None, orientation="fixed")
    assert op.details["block_ranks"] == {"eeg": 23, "meg": 16} and op.rank == 39
    assert op.ch_types == types
    g_n = np.einsum("cki,ki->ck", gain.reshape(40, -1, 3), p.normals)
    np.testing.assert_allclose(np.einsum("kc,ck->k", op.kernel, g_n), 1.0, rtol=1e-6)


def test_bad_inputs(small_problem, caplog):
    p = small_problem
    n = len(p.ch_names)
    dcov, _ = data_covariance(p)
    cov = as_cov(p)
    eye = np.eye(n)

    def build(**kw):
        args = dict(gain=p.gain, normals=p.normals, data_cov=dcov, noise_cov=cov, reference=eye)
        args.update(kw)
        pos = [args.pop(k) for k in ("gain", "normals", "data_cov", "noise_cov")]
        return make_lcmv(*pos, **args)

    cases = [
        (dict(data_cov=cov), "data_cov is a NoiseCovariance; pass a DataCovariance"),
        (dict(noise_cov=dcov), "noise_cov is a DataCovariance"),
        (dict(weight_norm="unit"), "weight_norm is 'unit'"),
        (dict(orientation="normal"), "orientation is 'normal'; use one of 'fixed'"),
        (dict(reg=-0.1), "reg is -0.1"),
        (dict(depth=-1), "depth is -1"),
        (dict(gain=p.gain[:, :-3]), r"normals has shape \(30, 3\); expected \(29, 3\)"),
        (dict(data_cov=DataCovariance(dcov.data, tuple(reversed(p.ch_names)), 1, "empirical", 0)),
         "data_cov.ch_names do not match"),
        (dict(data_cov=DataCovariance(np.zeros((n, n)), p.ch_names, 1, "empirical", 0)),
         "whitened data covariance is zero"),
    ]
    for kw, msg in cases:
        with pytest.raises(InverseError, match=msg):
            build(**kw)
    with caplog.at_level(logging.WARNING, logger="rtsource.inverse.beamformer"):
        x = np.random.default_rng(0).normal(size=(6, n))
        build(data_cov=estimate_data_covariance_unchecked(x, p.ch_names))
    assert "has rank 5, below the noise whitener's rank" in caplog.text


def estimate_data_covariance_unchecked(x, names):
    """A sample covariance from fewer samples than estimate_data_covariance accepts."""
    x = x - x.mean(axis=0)
    return DataCovariance(x.T @ x / (len(x) - 1), tuple(names), len(x), "empirical", 0.0)


def test_depth_scales_unit_gain_only(small_problem):
    """MNE-Python's depth for LCMV (||G_k||_F^-depth on the whitened gain): unit-gain
    weights scale by ||G_k||^depth, normalised weights are unchanged."""
    p = small_problem
    n = len(p.ch_names)
    dcov, _ = data_covariance(p)
    m = average_reference_matrix(n)
    for wn in (None, "unit-noise-gain-invariant"):
        a = make_lcmv(p.gain, p.normals, dcov, as_cov(p), reference=m, weight_norm=wn,
                      orientation="fixed")
        b = make_lcmv(p.gain, p.normals, dcov, as_cov(p), reference=m, weight_norm=wn,
                      orientation="fixed", depth=0.8)
        if wn is None:
            e, v = np.linalg.eigh(m @ p.cov @ m)
            keep = e > e.max() * 1e-10
            w = (v[:, keep] / np.sqrt(e[keep])).T @ m
            d = np.sum((w @ p.gain).reshape(-1, p.normals.shape[0], 3) ** 2, axis=(0, 2))
            np.testing.assert_allclose(b.kernel, a.kernel * (d ** 0.4)[:, None], rtol=1e-9)
            assert b.output_unit == "a.u."
        else:
            np.testing.assert_allclose(b.kernel, a.kernel, rtol=1e-9)


@pytest.mark.peers
def test_against_mne_python():
    """make_lcmv + apply_lcmv_raw in MNE-Python vs ours, every weight normalisation and
    orientation.

    Conventions: MNE gets a surface-oriented forward (pick_ori None = our "free", "normal"
    = our "fixed", "max-power"), the noise covariance and an average-reference projector;
    its regularisation is reg * mean eigenvalue of the n_chan x n_chan whitened data
    covariance, as ours. The per-row "unit-noise-gain" with free orientation depends on
    the tangential axes; ours are MNE-Python's (see local_frames), so it agrees too.
    """
    mne = pytest.importorskip("mne")
    from tests.inverse.test_eloreta import mne_eeg_problem

    prob = mne_eeg_problem(mne)
    dc = np.cov(prob.x.T)
    dcov_mne = mne.Covariance(dc, prob.names, bads=[], projs=prob.raw.info["projs"], nfree=299)
    dcov = DataCovariance(dc, tuple(prob.names), 300, "empirical", 0.0)
    fwd = mne.convert_forward_solution(prob.fwd, surf_ori=True)
    worst = {}
    for wn, ori in VARIANTS:
        pick = {"free": None, "fixed": "normal", "max-power": "max-power"}[ori]
        filt = mne.beamformer.make_lcmv(
            prob.raw.info, fwd, dcov_mne, reg=0.05, noise_cov=prob.cov_mne, pick_ori=pick,
            weight_norm=wn, rank=None,
        )
        stc = mne.beamformer.apply_lcmv_raw(prob.raw, filt)
        op = make_lcmv(prob.gain, prob.normals, dcov, prob.cov, reference=prob.m,
                       weight_norm=wn, orientation=ori)
        ours = apply_inverse(op, prob.x).T
        err = np.abs(ours - stc.data).max() / np.abs(stc.data).max()
        worst[(wn, ori)] = err
        assert err <= 1e-4, (wn, ori, err)
        if ori == "max-power":
            # MNE-Python reports them in its surface frame: compare the normal component
            # and the length of the tangential part (its tangential axes may differ in sign)
            local = np.einsum("kij,kj->ki", op.source_rotation, op.orientations)
            theirs = filt["max_power_ori"]
            np.testing.assert_allclose(local[:, 2], theirs[:, 2], atol=1e-6)
            np.testing.assert_allclose(np.linalg.norm(local[:, :2], axis=1),
                                       np.linalg.norm(theirs[:, :2], axis=1), atol=1e-6)
    print("LCMV, max relative difference to MNE-Python:",
          {k: f"{v:.1e}" for k, v in worst.items()})
