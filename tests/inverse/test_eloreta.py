"""eLORETA (reference section 5, step 7) against an independent NumPy twin, its fixed
point, its localisation property, and MNE-Python."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from rtsource.errors import InverseError
from rtsource.inverse.covariance import NoiseCovariance
from rtsource.inverse.eloreta import eloreta_step
from rtsource.inverse.minimum_norm import make_inverse_operator
from rtsource.inverse.operator import apply_inverse
from rtsource.inverse.reference import average_reference_matrix


def as_cov(p):
    return NoiseCovariance(p.cov, p.ch_names, 0, "empirical", 0.0)


def whitener_twin(c, m):
    """W = diag(1/sqrt(e)) E^T on the non-zero eigenpairs of M C M^T (section 5 step 1)."""
    e, v = np.linalg.eigh(m @ c @ m.T)
    keep = e > e.max() * 1e-10
    return (v[:, keep] / np.sqrt(e[keep])).T @ m


def local_gain(p, op, w):
    """Whitened gain in the operator's local frames, (rank, n_src, 3)."""
    g = p.gain.reshape(len(p.ch_names), -1, 3)
    g_loc = np.stack([g[:, k, :] @ op.source_rotation[k].T for k in range(g.shape[1])], axis=1)
    return np.tensordot(w, g_loc, axes=(1, 0))


def inv_sqrt_psd(a):
    e, v = np.linalg.eigh(a)
    return (v / np.sqrt(e)) @ v.T


def sqrt_psd(a):
    e, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(e, 0, None))) @ v.T


def eloreta_twin(gw, loose, lam, n_iter=300, tol=1e-13):
    """Pascual-Marqui 2007 fixed point written with explicit loops over sources.

    With the orientation prior p = (loose, loose, 1) the gain is scaled by sqrt(p) during
    the iteration and the prior multiplies R element-wise after each update (MNE-Python's
    convention); R is normalised to tr(Gb R Gb^T) = rank each time.
    Returns R as iterated (block list) and the number of iterations.
    """
    rank, n_src, _ = gw.shape
    std = np.sqrt(np.array([loose, loose, 1.0]))
    gb = gw * std
    prior = np.outer(std, std)
    r = [np.diag(std**2) for _ in range(n_src)]

    def grg(r_):
        return sum(gb[:, k, :] @ r_[k] @ gb[:, k, :].T for k in range(n_src))

    def normalise(r_):
        s = np.trace(grg(r_)) / rank
        return [rk / s for rk in r_]

    r = normalise(r)
    for it in range(n_iter):
        n_mat = np.linalg.inv(grg(r) + lam * np.eye(rank))
        new = [inv_sqrt_psd(gb[:, k, :].T @ n_mat @ gb[:, k, :]) * prior for k in range(n_src)]
        new = normalise(new)
        delta = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(new, r))) / np.sqrt(
            sum(np.sum(b**2) for b in r)
        )
        r = new
        if delta < tol:
            break
    return r, it + 1


def kernel_twin(gw, r_blocks, lam, w):
    """K = R G^T (G R G^T + lambda2 I)^-1 W M with R normalised for the unscaled gain
    (push-through form of sqrt(R) V Gamma U^T W M)."""
    rank, n_src, _ = gw.shape
    s = np.trace(sum(gw[:, k, :] @ r_blocks[k] @ gw[:, k, :].T for k in range(n_src))) / rank
    r = [rk / s for rk in r_blocks]
    g = gw.reshape(rank, -1)
    big_r = np.zeros((3 * n_src, 3 * n_src))
    for k in range(n_src):
        big_r[3 * k: 3 * k + 3, 3 * k: 3 * k + 3] = r[k]
    return big_r @ g.T @ np.linalg.inv(g @ big_r @ g.T + lam * np.eye(rank)) @ w


@pytest.mark.parametrize("loose", [1.0, 0.2])
def test_matches_twin(small_problem, loose):
    p = small_problem
    n = len(p.ch_names)
    m = average_reference_matrix(n)
    lam = 1 / 9
    op = make_inverse_operator(
        p.gain, p.normals, as_cov(p), reference=m, method="eLORETA", lambda2=lam,
        loose=loose, eloreta_options={"eps": 1e-12, "max_iter": 500},
    )
    assert op.method == "eLORETA" and op.n_orient == 3 and op.depth is None
    assert op.output_unit == "A*m"
    np.testing.assert_array_equal(op.noise_norm, 1.0)  # no noise normalisation
    assert op.details["converged"] and op.details["final_change"] < 1e-12
    w = whitener_twin(p.cov, m)
    gw = local_gain(p, op, w)
    r_twin, n_it = eloreta_twin(gw, loose, lam)
    r_ours = op.source_weights
    err_r = np.linalg.norm(r_ours - np.array(r_twin)) / np.linalg.norm(np.array(r_twin))
    assert err_r < 1e-9, err_r
    k_twin = kernel_twin(gw, r_twin, lam, w)
    err_k = np.linalg.norm(op.kernel - k_twin) / np.linalg.norm(k_twin)
    assert err_k < 1e-9, err_k
    # default options stop at eps = 1e-6: the kernel is within ~1e-5 of the fixed point
    op_default = make_inverse_operator(
        p.gain, p.normals, as_cov(p), reference=m, method="eLORETA", lambda2=lam, loose=loose
    )
    d = op_default.details
    assert d["converged"] and d["eps"] == 1e-6 and d["max_iter"] == 20
    assert d["iterations"] <= 20 and d["final_change"] < 1e-6
    assert np.linalg.norm(op_default.kernel - k_twin) / np.linalg.norm(k_twin) < 1e-4
    print(f"eLORETA loose={loose}: twin {n_it} iterations, ours (eps 1e-6) "
          f"{d['iterations']} iterations, final change {d['final_change']:.2e}")


def test_fixed_matches_twin(small_problem):
    p = small_problem
    n = len(p.ch_names)
    m = average_reference_matrix(n)
    lam = 0.05
    op = make_inverse_operator(
        p.gain, p.normals, as_cov(p), reference=m, method="eLORETA", lambda2=lam,
        fixed=True, eloreta_options={"eps": 1e-13, "max_iter": 1000},
    )
    assert op.n_orient == 1 and op.source_weights.shape == (p.normals.shape[0],)
    w = whitener_twin(p.cov, m)
    g = w @ np.einsum("cki,ki->ck", p.gain.reshape(n, -1, 3), p.normals)  # (rank, n_src)
    rank = g.shape[0]
    r = np.ones(g.shape[1])
    for _ in range(1000):
        r = r / (np.trace((g * r) @ g.T) / rank)
        n_mat = np.linalg.inv((g * r) @ g.T + lam * np.eye(rank))
        new = np.array([1 / np.sqrt(g[:, k] @ n_mat @ g[:, k]) for k in range(g.shape[1])])
        new /= np.trace((g * new) @ g.T) / rank
        done = np.linalg.norm(new - r) / np.linalg.norm(r) < 1e-14
        r = new
        if done:
            break
    np.testing.assert_allclose(op.source_weights, r, rtol=1e-9)
    k_twin = (r[:, None] * g.T) @ np.linalg.inv((g * r) @ g.T + lam * np.eye(rank)) @ w
    assert np.linalg.norm(op.kernel - k_twin) / np.linalg.norm(k_twin) < 1e-9


@pytest.mark.parametrize("loose, fixed", [(1.0, False), (0.2, False), (0.0, True)])
def test_fixed_point_reached(small_problem, loose, fixed):
    """One more update of the returned weights changes them by less than eps."""
    p = small_problem
    n = len(p.ch_names)
    m = average_reference_matrix(n)
    lam = 1 / 9
    op = make_inverse_operator(
        p.gain, p.normals, as_cov(p), reference=m, method="eLORETA", lambda2=lam,
        loose=loose, fixed=fixed,
    )
    assert op.details["converged"]
    w = whitener_twin(p.cov, m)
    if fixed:
        gw = w @ np.einsum("cki,ki->ck", p.gain.reshape(n, -1, 3), p.normals)
        std = np.ones(gw.shape[1])
    else:
        gw = local_gain(p, op, w).reshape(w.shape[0], -1)
        std = np.sqrt(np.tile([loose, loose, 1.0], p.normals.shape[0]))
    r = op.source_weights
    r_next, _ = eloreta_step(gw * std, r, lam, op.rank, std, n_orient=op.n_orient)
    change = np.linalg.norm(r_next - r) / np.linalg.norm(r)
    print(f"loose={loose} fixed={fixed}: {op.details['iterations']} iterations, one more "
          f"changes R by {change:.2e}")
    assert change < 1e-6


def test_zero_localisation_error_noise_free(problem):
    # Pascual-Marqui 2007: eLORETA localises any single point source exactly (fixed
    # orientation here: a dipole along the normal peaks at its own vertex).
    n = len(problem.ch_names)
    op = make_inverse_operator(
        problem.gain, problem.normals, as_cov(problem), reference=average_reference_matrix(n),
        method="eLORETA", fixed=True,
    )
    hits = 0
    for k in range(op.n_sources):
        x = problem.gain[:, 3 * k: 3 * k + 3] @ problem.normals[k] * 1e-8 + 1e-4  # + DC
        hits += np.argmax(np.abs(apply_inverse(op, x[None])[0])) == k
    assert hits == op.n_sources


def test_not_converged_is_reported(small_problem, caplog):
    p = small_problem
    n = len(p.ch_names)
    with caplog.at_level(logging.WARNING, logger="rtsource.inverse.eloreta"):
        op = make_inverse_operator(
            p.gain, p.normals, as_cov(p), reference=average_reference_matrix(n),
            method="eLORETA", eloreta_options={"max_iter": 2},
        )
    d = op.details
    assert d["iterations"] == 2 and d["converged"] is False and d["final_change"] >= 1e-6
    assert "did not converge in 2 iterations" in caplog.text


def test_warm_start(small_problem):
    p = small_problem
    n = len(p.ch_names)
    m = average_reference_matrix(n)
    cold = make_inverse_operator(p.gain, p.normals, as_cov(p), reference=m, method="eLORETA")
    warm = make_inverse_operator(
        p.gain, p.normals, as_cov(p), reference=m, method="eLORETA",
        eloreta_options={"init": cold.source_weights},
    )
    assert warm.details["iterations"] < cold.details["iterations"]
    assert np.linalg.norm(warm.kernel - cold.kernel) / np.linalg.norm(cold.kernel) < 1e-5


def test_force_equal_option(small_problem):
    p = small_problem
    n = len(p.ch_names)
    op = make_inverse_operator(
        p.gain, p.normals, as_cov(p), reference=average_reference_matrix(n),
        method="eLORETA", loose=1.0, eloreta_options={"force_equal": True},
    )
    assert op.details["force_equal"] and op.details["converged"]
    assert op.source_weights.shape == (3 * p.normals.shape[0],)
    # one weight per source, shared by its three orientations
    w3 = op.source_weights.reshape(-1, 3)
    np.testing.assert_allclose(w3, w3[:, :1].repeat(3, axis=1), rtol=1e-12)


def test_bad_options(small_problem):
    p = small_problem
    n = len(p.ch_names)

    def build(method="eLORETA", **opts):
        return make_inverse_operator(
            p.gain, p.normals, as_cov(p), reference=np.eye(n), method=method,
            eloreta_options=opts,
        )

    with pytest.raises(InverseError, match=r"eloreta_options\['eps'\] is -1"):
        build(eps=-1)
    with pytest.raises(InverseError, match=r"eloreta_options\['max_iter'\] is 0"):
        build(max_iter=0)
    with pytest.raises(InverseError, match="unknown key.*'tol'"):
        build(tol=1e-3)
    with pytest.raises(InverseError, match=r"eloreta_options\['init'\] has shape \(2,\)"):
        build(init=np.ones(2))
    with pytest.raises(InverseError, match="eloreta_options were given but method is 'dSPM'"):
        build(method="dSPM", eps=1e-3)


@pytest.mark.peers
def test_against_mne_python():
    """Same forward, covariance and data through MNE-Python's eLORETA and ours.

    Conventions: MNE-Python ignores depth weighting for eLORETA (so do we: depth is
    recorded as None), applies the loose prior as described in rtsource.inverse.eloreta,
    and pools free/loose orientations as sqrt(sum of squares). The fixed-orientation
    case agrees to ~1e-7 only because MNE-Python stores a fixed gain in float32.
    """
    mne = pytest.importorskip("mne")
    prob = mne_eeg_problem(mne)
    worst = {}
    for loose, fixed, force_equal in [(0.2, False, False), (1.0, False, False),
                                      (0.0, True, False), (1.0, False, True)]:
        inv = mne.minimum_norm.make_inverse_operator(
            prob.raw.info, prob.fwd, prob.cov_mne, loose="auto" if fixed else loose,
            depth=0.8, fixed=fixed,
        )
        stc = mne.minimum_norm.apply_inverse_raw(
            prob.raw, inv, 1 / 9, "eLORETA", method_params={"force_equal": force_equal}
        )
        op = make_inverse_operator(
            prob.gain, prob.normals, prob.cov, reference=prob.m, method="eLORETA",
            loose=loose, fixed=fixed, eloreta_options={"force_equal": force_equal},
        )
        ours = apply_inverse(op, prob.x).T
        err = np.abs(ours - stc.data).max() / np.abs(stc.data).max()
        worst[(loose, fixed, force_equal)] = err
        assert err <= 1e-4, (loose, fixed, force_equal, err)
    print("eLORETA, max relative difference to MNE-Python:",
          {k: f"{v:.1e}" for k, v in worst.items()})


class _MneProblem:
    pass


def mne_eeg_problem(mne):
    """A 32-channel EEG sphere forward on 40 discrete sources made by MNE-Python, a
    covariance, data with an oscillating source, and the average reference both ways
    (a projector in the Info for MNE, the matrix for us). As the minimum-norm peer test."""
    import warnings

    mne.set_log_level("ERROR")
    names = [
        "Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8", "P7",
        "P3", "Pz", "P4", "P8", "O1", "Oz", "O2", "FC1", "FC2", "CP1", "CP2", "FC5",
        "FC6", "CP5", "CP6", "AF3", "AF4", "PO3", "PO4",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        montage = mne.channels.make_standard_montage("standard_1005")
    info = mne.create_info(names, 250.0, "eeg")
    info.set_montage(montage)
    sphere = mne.make_sphere_model(r0=(0.0, 0.0, 0.04), head_radius=0.09)
    rng = np.random.default_rng(0)
    n_src = 40
    u = rng.normal(size=(n_src, 3))
    u[:, 2] = np.abs(u[:, 2])
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    rr = u * rng.uniform(0.03, 0.06, size=(n_src, 1)) + np.array([0.0, 0.0, 0.04])
    nn = u + 0.5 * rng.normal(size=(n_src, 3))
    nn /= np.linalg.norm(nn, axis=1, keepdims=True)
    src = mne.setup_volume_source_space(pos=dict(rr=rr, nn=nn), sphere=sphere)
    fwd = mne.make_forward_solution(
        info, mne.transforms.Transform("mri", "head"), src, sphere, meg=False, eeg=True
    )
    nc = len(names)
    a = rng.normal(size=(nc, nc)) / np.sqrt(nc)
    c = (2e-6) ** 2 * (0.3 * np.eye(nc) + a @ a.T)
    out = _MneProblem()
    out.fwd = fwd
    out.gain = fwd["sol"]["data"]
    out.normals = fwd["src"][0]["nn"][fwd["src"][0]["vertno"]]
    out.names = names
    out.cov_mne = mne.Covariance(c, names, bads=[], projs=[], nfree=1000)
    out.cov = NoiseCovariance(c, tuple(names), 1000, "empirical", 0.0)
    x = rng.normal(size=(300, nc)) @ np.linalg.cholesky(c).T
    wave = np.sin(np.arange(300) / 5.0)[:, None]
    x += (out.gain[:, :3] @ np.array([1.0, 2.0, 3.0]) * 1e-8)[None] * wave
    out.x = x
    out.raw = mne.io.RawArray(x.T.copy(), info)
    out.raw.set_eeg_reference(projection=True)
    out.m = average_reference_matrix(nc)
    return out
