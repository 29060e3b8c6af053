"""Least-squares sphere fits (rtsource.geometry.sphere_fit)."""

from __future__ import annotations

import numpy as np
import pytest

from rtsource.errors import GeometryError
from rtsource.geometry.sphere_fit import fit_sphere


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def test_fit_sphere_recovers_known_sphere(rng):
    center = np.array([0.003, -0.012, 0.045])
    radius = 0.0925
    dirs = unit_vectors(rng, 300)
    dirs = dirs[dirs[:, 2] > -0.3]  # a head cap, not the whole sphere
    pts = center + radius * dirs + rng.normal(scale=0.5e-3, size=dirs.shape)
    c, r = fit_sphere(pts)
    assert c.shape == (3,)
    assert np.linalg.norm(c - center) < 1e-3
    assert abs(r - radius) < 0.5e-3
    c_exact, r_exact = fit_sphere(center + radius * dirs)
    np.testing.assert_allclose(c_exact, center, atol=1e-10)
    assert r_exact == pytest.approx(radius, abs=1e-10)


def test_fit_sphere_bad_points(rng):
    with pytest.raises(GeometryError, match="n >= 4"):
        fit_sphere(np.zeros((3, 3)))
    flat = np.column_stack([rng.normal(size=(20, 2)), np.zeros(20)])
    with pytest.raises(GeometryError, match="coplanar"):
        fit_sphere(flat)
    pts = unit_vectors(rng, 10)
    pts[7, 1] = np.nan
    with pytest.raises(GeometryError, match=r"points_m\[7\]"):
        fit_sphere(pts)
