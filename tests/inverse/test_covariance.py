"""Noise covariance: Ledoit-Wolf shrinkage, re-referencing, ad hoc, files."""

from __future__ import annotations

import logging
import zipfile

import numpy as np
import pytest

from rtsource.errors import InverseError
from rtsource.inverse.covariance import (
    NoiseCovariance,
    ad_hoc_noise_covariance,
    estimate_noise_covariance,
    ledoit_wolf_shrinkage,
    load_noise_covariance,
    save_noise_covariance,
)
from rtsource.inverse.reference import average_reference_matrix, reference_to_channel_matrix


def lw_twin(x):
    """Ledoit & Wolf 2004 (J Multivar Anal 88:365), Lemma 3.2, written out literally with
    their norm ||A||^2 = tr(A A^T)/p and a loop over the samples."""
    n, p = x.shape
    s = x.T @ x / n
    norm2 = lambda a: np.trace(a @ a.T) / p  # noqa: E731
    m = np.trace(s) / p
    d2 = norm2(s - m * np.eye(p))
    bbar2 = sum(norm2(np.outer(xk, xk) - s) for xk in x) / n**2
    b2 = min(bbar2, d2)
    return b2 / d2 * m * np.eye(p) + (d2 - b2) / d2 * s, b2 / d2


def correlated_noise(rng, n_samples, n_chan, scale=3e-6):
    a = rng.normal(size=(n_chan, n_chan)) / np.sqrt(n_chan)
    cov = scale**2 * (0.3 * np.eye(n_chan) + a @ a.T)
    return rng.normal(size=(n_samples, n_chan)) @ np.linalg.cholesky(cov).T, cov


def names(n):
    return tuple(f"C{i}" for i in range(n))


def test_ledoit_wolf_matches_literal_formula():
    rng = np.random.default_rng(0)
    x, _ = correlated_noise(rng, 40, 12)  # few samples: strong shrinkage
    x -= x.mean(axis=0)
    cov, shrink = ledoit_wolf_shrinkage(x)
    ref, ref_shrink = lw_twin(x)
    assert 0.0 < shrink < 1.0
    assert shrink == pytest.approx(ref_shrink, rel=1e-10)
    np.testing.assert_allclose(cov, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


def test_ledoit_wolf_matches_sklearn_if_installed():
    skc = pytest.importorskip("sklearn.covariance")
    rng = np.random.default_rng(1)
    x, _ = correlated_noise(rng, 50, 10)
    x -= x.mean(axis=0)
    cov, shrink = ledoit_wolf_shrinkage(x)
    ref, ref_shrink = skc.ledoit_wolf(x, assume_centered=True)
    assert shrink == pytest.approx(ref_shrink, rel=1e-8)
    np.testing.assert_allclose(cov, ref, rtol=1e-8)


def test_estimate_shrunk_and_empirical():
    rng = np.random.default_rng(2)
    x, true = correlated_noise(rng, 20000, 8)
    x += 1e-3  # a DC offset must not matter
    emp = estimate_noise_covariance(x, names(8), method="empirical")
    np.testing.assert_allclose(emp.data, np.cov(x.T), rtol=1e-12)
    assert emp.method == "empirical" and emp.shrinkage == 0.0 and emp.n_samples == 20000
    shr = estimate_noise_covariance(x, names(8))
    assert shr.method == "shrunk" and 0 <= shr.shrinkage < 0.05  # many samples: little
    ref, ref_shrink = lw_twin(x - x.mean(axis=0))
    np.testing.assert_allclose(shr.data, ref, rtol=1e-9)
    assert np.abs(shr.data - true).max() < 0.1 * np.abs(true).max()
    diag = estimate_noise_covariance(x, names(8), method="diagonal")
    np.testing.assert_allclose(diag.data, np.diag(np.diag(emp.data)), rtol=1e-12)
    assert not shr.data.flags.writeable
    with pytest.raises(ValueError):
        shr.data[0, 0] = 1.0


@pytest.mark.parametrize("method", ["shrunk", "empirical", "diagonal"])
def test_average_reference_keeps_rank(method):
    rng = np.random.default_rng(3)
    n = 16
    x, _ = correlated_noise(rng, 60, n)  # short: LW shrinks a lot
    m = average_reference_matrix(n)
    cov = estimate_noise_covariance(x, names(n), method=method, reference=m)
    e = np.linalg.eigvalsh(cov.data)
    # rank n-1, no variance along the common mode
    assert np.sum(e > 1e-10 * e.max()) == n - 1
    ones = np.ones(n) / np.sqrt(n)
    assert ones @ cov.data @ ones < 1e-12 * e.max()
    np.testing.assert_allclose(m @ cov.data @ m.T, cov.data, atol=1e-12 * e.max())
    if method == "shrunk":
        # equals LW in the (n-1)-dim range of M, mapped back
        u = np.linalg.svd(m)[0][:, : n - 1]
        xc = (x - x.mean(axis=0)) @ m.T @ u
        ref, ref_shrink = lw_twin(xc)
        assert cov.shrinkage == pytest.approx(ref_shrink, rel=1e-10)
        np.testing.assert_allclose(cov.data, u @ ref @ u.T, atol=1e-10 * e.max())


def test_reference_to_channel():
    rng = np.random.default_rng(4)
    x, _ = correlated_noise(rng, 500, 6)
    m = reference_to_channel_matrix(names(6), "C2")
    cov = estimate_noise_covariance(x, names(6), reference=m)
    assert np.abs(cov.data[2]).max() == pytest.approx(0.0, abs=1e-25)
    e = np.linalg.eigvalsh(cov.data)
    assert np.sum(e > 1e-10 * e.max()) == 5


def test_non_finite_rows_dropped_with_warning(caplog):
    rng = np.random.default_rng(5)
    x, _ = correlated_noise(rng, 200, 4)
    x[3, 1] = np.nan
    x[10, 0] = np.inf
    with caplog.at_level(logging.WARNING, logger="rtsource.inverse.covariance"):
        cov = estimate_noise_covariance(x, names(4), method="empirical")
    assert "dropped 2 of 200" in caplog.text
    assert cov.n_samples == 198
    keep = np.ones(200, bool)
    keep[[3, 10]] = False
    np.testing.assert_allclose(cov.data, np.cov(x[keep].T), rtol=1e-12)


def test_too_few_samples():
    x = np.random.default_rng(6).normal(size=(8, 6))
    x[:3] = np.nan
    with pytest.raises(InverseError, match=r"only 5 finite samples \(3 dropped.*record longer"):
        estimate_noise_covariance(x, names(6))


def test_estimate_bad_inputs():
    x = np.zeros((100, 4))
    with pytest.raises(InverseError, match=r"shape \(100, 4\) but 5 channel names"):
        estimate_noise_covariance(x, names(5))
    with pytest.raises(InverseError, match="transpose"):
        estimate_noise_covariance(x.T, names(4))
    with pytest.raises(InverseError, match="'robust' is not known"):
        estimate_noise_covariance(x, names(4), method="robust")
    with pytest.raises(InverseError, match=r"reference has shape \(3, 3\)"):
        estimate_noise_covariance(x, names(4), reference=np.eye(3))
    with pytest.raises(InverseError, match="duplicates"):
        NoiseCovariance(np.eye(2), ("a", "a"), 0, "ad_hoc", 0.0)
    with pytest.raises(InverseError, match="not symmetric"):
        NoiseCovariance(np.array([[1.0, 0.5], [0.0, 1.0]]), ("a", "b"), 0, "ad_hoc", 0.0)


def test_ad_hoc():
    cov = ad_hoc_noise_covariance(["a", "b", "c"])
    np.testing.assert_array_equal(cov.data, (0.2e-6) ** 2 * np.eye(3))
    assert cov.method == "ad_hoc" and cov.n_samples == 0
    with pytest.raises(InverseError, match="std_v is -1"):
        ad_hoc_noise_covariance(["a"], std_v=-1)


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    x, _ = correlated_noise(rng, 300, 5)
    cov = estimate_noise_covariance(x, ["Fp1", "Fz", "Cz", "µ-ch", "O2"])
    path = tmp_path / "cov.npz"
    save_noise_covariance(cov, path)
    with np.load(path, allow_pickle=False) as npz:
        assert npz["ch_names"].dtype.kind == "U"
    back = load_noise_covariance(path)
    assert (back.n_samples, back.method, back.shrinkage) == (
        cov.n_samples,
        cov.method,
        cov.shrinkage,
    )
    np.testing.assert_array_equal(back.data, cov.data)
    assert back.ch_names == cov.ch_names


def test_load_corrupt_files(tmp_path):
    cov = ad_hoc_noise_covariance(["a", "b"])
    good = tmp_path / "good.npz"
    save_noise_covariance(cov, good)
    raw = good.read_bytes()

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InverseError, match="truncated.npz"):
        load_noise_covariance(truncated)

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file at all")
    with pytest.raises(InverseError, match="garbage.npz"):
        load_noise_covariance(garbage)

    with pytest.raises(InverseError, match="does not exist"):
        load_noise_covariance(tmp_path / "nope.npz")

    wrong_keys = tmp_path / "wrong.npz"
    np.savez(wrong_keys, matrix=np.eye(2))
    with pytest.raises(InverseError, match="missing format, version, data"):
        load_noise_covariance(wrong_keys)

    fields = dict(np.load(good, allow_pickle=False))
    for key, value, msg in [
        ("format", np.array("something.else"), "format marker"),
        ("version", np.array(99), "version 99"),
        ("data", np.eye(3), "invalid covariance"),
        ("data", np.array([["x", "y"], ["z", "w"]]), "data has dtype"),
        ("ch_names", np.array([1, 2]), "ch_names has dtype"),
        ("shrinkage", np.array([0.1, 0.2]), "shrinkage has dtype"),
    ]:
        bad = tmp_path / f"bad_{key}.npz"
        np.savez(bad, **{**fields, key: value})
        with pytest.raises(InverseError, match=msg):
            load_noise_covariance(bad)

    # An object array needs pickle: refused, not executed.
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{**fields, "ch_names": np.array(["a", None], dtype=object)})
    with pytest.raises(InverseError, match="pickled.npz"):
        load_noise_covariance(pickled)

    # A zip with a corrupt member
    broken = tmp_path / "broken.npz"
    with zipfile.ZipFile(broken, "w") as zf:
        for k in ("format", "version", "data", "ch_names", "n_samples", "method", "shrinkage"):
            zf.writestr(f"{k}.npy", b"\x93NUMPY garbage")
    with pytest.raises(InverseError, match="broken.npz"):
        load_noise_covariance(broken)
