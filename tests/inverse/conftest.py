"""Small analytic forward problems for the inverse tests.

The lead field is the potential of a current dipole in an infinite homogeneous medium,
V = Q.(r - r0) / (4 pi sigma |r - r0|^3) (e.g. Sarvas 1987, eq. 8), sampled at electrodes on
a 9 cm sphere from sources on a 6-7 cm sphere. It is not a head model, but it has the
structure that matters here: smooth, correlated columns and a strong depth dependence.
rtsource.forward is deliberately not used, so these tests do not depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

SIGMA = 0.33  # S/m


def fibonacci_sphere(n: int, z_min: float = -1.0) -> np.ndarray:
    """n roughly uniform unit vectors with z >= z_min."""
    i = np.arange(n) + 0.5
    z = 1.0 - i / n * (1.0 - z_min)
    phi = i * np.pi * (3.0 - np.sqrt(5.0))
    rho = np.sqrt(1.0 - z * z)
    return np.column_stack([rho * np.cos(phi), rho * np.sin(phi), z])


def infinite_medium_gain(electrodes: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """(n_chan, 3 * n_src) potential in V per A*m, dipole-major x, y, z columns."""
    d = electrodes[:, None, :] - sources[None, :, :]  # r - r0
    r3 = np.linalg.norm(d, axis=2) ** 3
    g = d / (4 * np.pi * SIGMA * r3[:, :, None])
    return g.reshape(len(electrodes), -1)


@dataclass
class Problem:
    gain: np.ndarray  # (n_chan, 3 n_src)
    normals: np.ndarray  # (n_src, 3)
    sources: np.ndarray  # (n_src, 3)
    ch_names: tuple
    cov: np.ndarray  # (n_chan, n_chan) a realistic noise covariance, V^2


def make_problem(n_chan: int = 64, n_src: int = 120, seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    electrodes = 0.09 * fibonacci_sphere(n_chan, z_min=-0.35)
    u = fibonacci_sphere(n_src, z_min=-0.2)
    sources = u * rng.uniform(0.06, 0.07, size=(n_src, 1))
    # Roughly radial normals, tilted like cortex in sulci.
    normals = u + 0.5 * rng.normal(size=(n_src, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    gain = infinite_medium_gain(electrodes, sources)
    # Noise: white sensor noise plus spatially correlated background from many deep
    # random dipoles (what a resting brain adds), ~ a few uV per channel.
    bg_pos = fibonacci_sphere(300) * rng.uniform(0.02, 0.065, size=(300, 1))
    g_bg = infinite_medium_gain(electrodes, bg_pos)
    q = 4e-9  # A*m per background dipole component
    cov = (1e-6) ** 2 * np.diag(rng.uniform(0.5, 2.0, n_chan)) + q**2 * g_bg @ g_bg.T
    names = tuple(f"E{i:02d}" for i in range(n_chan))
    return Problem(gain, normals, sources, names, 0.5 * (cov + cov.T))


@pytest.fixture(scope="session")
def problem() -> Problem:
    return make_problem()


@pytest.fixture(scope="session")
def small_problem() -> Problem:
    return make_problem(n_chan=24, n_src=30, seed=1)
