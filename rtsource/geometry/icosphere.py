"""Icosahedral spheres: the triangulations rtsource resamples head surfaces onto.

Order k has 10 * 4**k + 2 vertices (0: 12, 1: 42, 2: 162, 3: 642, 4: 2562, 5: 10242).
Subdivision appends the new edge midpoints after the old vertices, so the first
``10 * 4**j + 2`` vertices of order k are exactly the vertices of order j < k. This is what
lets a surface stored at order 4 be decimated to order 3 by taking its first 642 vertices.
FreeSurfer's fsaverage spheres follow the same ordering.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def n_vertices(order: int) -> int:
    """Number of vertices of an order-``order`` icosphere."""
    return 10 * 4**order + 2


@lru_cache(maxsize=8)
def _icosphere(order: int) -> tuple[np.ndarray, np.ndarray]:
    phi = (1.0 + 5**0.5) / 2.0
    verts = [
        (-1, phi, 0), (1, phi, 0), (-1, -phi, 0), (1, -phi, 0),
        (0, -1, phi), (0, 1, phi), (0, -1, -phi), (0, 1, -phi),
        (phi, 0, -1), (phi, 0, 1), (-phi, 0, -1), (-phi, 0, 1),
    ]  # fmt: skip
    tris = [
        (0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11),
        (1, 5, 9), (5, 11, 4), (11, 10, 2), (10, 7, 6), (7, 1, 8),
        (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9),
        (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1),
    ]  # fmt: skip
    v = [np.asarray(p, float) / np.linalg.norm(p) for p in verts]
    t = np.asarray(tris, dtype=np.int64)
    for _ in range(order):
        midpoint: dict[tuple[int, int], int] = {}

        def mid(a: int, b: int) -> int:
            key = (a, b) if a < b else (b, a)
            if key not in midpoint:
                m = v[a] + v[b]
                v.append(m / np.linalg.norm(m))
                midpoint[key] = len(v) - 1
            return midpoint[key]

        new = []
        for a, b, c in t:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        t = np.asarray(new, dtype=np.int64)
    vert = np.asarray(v)
    vert.flags.writeable = False
    t.flags.writeable = False
    return vert, t


def icosphere(order: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere of the given order.

    Returns
    -------
    vertices : ndarray, shape (10 * 4**order + 2, 3)
        Unit vectors (read-only).
    triangles : ndarray of int, shape (20 * 4**order, 3)
        Counter-clockwise seen from outside (outward normals), read-only.
    """
    if not 0 <= int(order) <= 7:
        raise ValueError(f"icosphere order must be in 0..7, got {order}")
    return _icosphere(int(order))
