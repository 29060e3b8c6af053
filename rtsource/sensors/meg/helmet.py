"""The generic whole-head MEG array: 102 sites around the embedded template head.

:func:`generic_meg_array` builds 102 sensor sites, each with two orthogonal planar
gradiometers and one magnetometer (306 channels, the layout of an Elekta/MEGIN Vectorview),
on a helmet around the embedded template head; see its docstring for the construction.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ...errors import GeometryError
from ...geometry import Frame, Transform
from .array import MegArray

#: Distance of the generic helmet's sensor sites from the (smoothed) template scalp.
GENERIC_GAP_M = 0.025
#: Number of sensor sites of the generic array (each: 2 planar gradiometers + 1 magnetometer).
GENERIC_N_SITES = 102
# The sites cover a spherical cap of this half-angle about an axis tilted backwards, so the
# helmet reaches lower over the occiput than over the forehead (as real helmets do).
_CAP_HALF_ANGLE_DEG = 112.0
_CAP_TILT_DEG = 15.0
# Umbrella-smoothing passes of the scalp's radial function (the helmet is smooth, heads are not).
_SMOOTH_ITER = 20


def _smooth_on_mesh(values: np.ndarray, triangles: np.ndarray, n_iter: int) -> np.ndarray:
    n = len(values)
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    count = np.bincount(edges[:, 0], minlength=n)
    out = values.copy()
    for _ in range(n_iter):
        out = 0.5 * out + 0.5 * np.bincount(edges[:, 0], weights=out[edges[:, 1]], minlength=n) / count
    return out


@lru_cache(maxsize=1)
def _generic_sites() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sites (template frame), their normals, the helmet centre, all from the template."""
    from ...anatomy.template import load_template
    from ...geometry import Mesh, project_onto_mesh
    from ...geometry.icosphere import icosphere

    template = load_template(4)
    center = np.asarray(template.scalp_center_m, dtype=float)
    scalp = template.surfaces.scalp.vertices_m
    dirs, tris = icosphere(4)
    radial = np.linalg.norm(scalp - center, axis=1)
    if not np.allclose((scalp - center) / radial[:, None], dirs, atol=1e-5):
        raise GeometryError(
            "the template scalp is not the radial icosphere resampling the generic helmet expects; "
            "rebuild the template with tools/build_template.py"
        )
    smooth = _smooth_on_mesh(radial, tris, _SMOOTH_ITER)
    inner = Mesh(center + dirs * smooth[:, None], tris, Frame.TEMPLATE, "m", "smoothed scalp")
    vnorm = inner.vertex_normals()
    # Fibonacci (golden-angle) points, equal-area over a cap: z uniform in [cos(theta), 1]
    # (Gonzalez 2010, Math Geosci 42:49).
    n = GENERIC_N_SITES
    k = np.arange(n)
    z = 1.0 - (k + 0.5) / n * (1.0 - math.cos(math.radians(_CAP_HALF_ANGLE_DEG)))
    phi = k * math.pi * (3.0 - math.sqrt(5.0))
    s = np.sqrt(1.0 - z * z)
    d = np.c_[s * np.cos(phi), s * np.sin(phi), z]
    tilt = math.radians(_CAP_TILT_DEG)  # rotate the cap axis from +z towards -y (backwards)
    rx = np.array([[1, 0, 0], [0, math.cos(tilt), -math.sin(tilt)], [0, math.sin(tilt), math.cos(tilt)]])
    d = d @ rx.T
    unit_sphere = Mesh(dirs, tris, Frame.TEMPLATE, "m", "unit sphere")
    proj = project_onto_mesh(d, unit_sphere)
    corner = tris[proj.triangles]
    r = np.einsum("nk,nk->n", proj.weights, smooth[corner])
    normal = np.einsum("nk,nkj->nj", proj.weights, vnorm[corner])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    sites = center + d * r[:, None] + GENERIC_GAP_M * normal
    return sites, normal, center, d


def generic_helmet_transform() -> Transform:
    """The generic array's default DEVICE -> TEMPLATE transform.

    A pure translation: the device origin is the centre of the sphere fitted to the template's
    upper scalp (``load_template().scalp_center_m``, about (0.7, -18.9, 1.7) mm), device axes
    parallel to the template's (x right, y front, z up).
    """
    _, _, center, _ = _generic_sites()
    return Transform.from_rotation_translation(Frame.DEVICE, Frame.TEMPLATE, np.eye(3), center)


def generic_meg_array(accuracy: str = "normal") -> MegArray:
    """A generic 306-channel whole-head array (Vectorview-like layout) for demos and tests.

    Construction (deterministic, from the embedded template head):

    1. The template scalp's radial function about the centre of its upper-scalp sphere is
       smoothed (20 umbrella passes over its icosphere) into a smooth head-shaped surface.
    2. 102 site directions are spread evenly (golden-angle spiral, equal area) over a
       spherical cap of half-angle 112 degrees whose axis is tilted 15 degrees backwards:
       the helmet reaches down to the forehead above the nasion, to the ears at the sides and
       below the inion at the back.
    3. Each site sits 25 mm (:data:`GENERIC_GAP_M`) outside the smoothed surface along its
       normal; its coil normal is that surface normal. On the real (unsmoothed) template
       scalp this leaves 23-28 mm between every site and the scalp.
    4. At every site: two planar gradiometers, ``G1`` with its gradient along the local
       "longitude" (horizontal, ``z_device x normal``) and ``G2`` along the "latitude"
       (up-down), and one magnetometer ``M``. Channel names are ``MEG{site:03d}G1``,
       ``MEG{site:03d}G2``, ``MEG{site:03d}M`` (sites 001..102), in that order -- not
       Vectorview's names, so a real Vectorview recording can never be matched to these
       positions by accident.

    The array is in the DEVICE frame and carries :func:`generic_helmet_transform` (DEVICE ->
    TEMPLATE) as ``dev_head_t``; ``array.to_head()`` places it around the template head.

    Parameters
    ----------
    accuracy : {"point", "normal", "accurate"}
        Coil integration accuracy.

    Returns
    -------
    MegArray
        306 channels: 204 ``planar_grad`` (T/m) and 102 ``mag`` (T).
    """
    sites_t, normal, center, _ = _generic_sites()
    sites = sites_t - center  # device frame: translation only
    up = np.array([0.0, 0.0, 1.0])
    names, types, pos, rot = [], [], [], []
    for i in range(len(sites)):
        n = normal[i]
        e_lon = np.cross(up, n)
        if np.linalg.norm(e_lon) < 0.1:  # at the vertex "horizontal" is undefined: use x
            e_lon = np.array([1.0, 0.0, 0.0]) - n[0] * n
        e_lon /= np.linalg.norm(e_lon)
        e_lat = np.cross(n, e_lon)
        frames = {
            "G1": np.column_stack([e_lon, np.cross(n, e_lon), n]),
            "G2": np.column_stack([e_lat, np.cross(n, e_lat), n]),
            "M": np.column_stack([e_lon, np.cross(n, e_lon), n]),
        }
        for suffix, kind in (("G1", "planar_grad"), ("G2", "planar_grad"), ("M", "mag")):
            names.append(f"MEG{i + 1:03d}{suffix}")
            types.append(kind)
            pos.append(sites[i])
            rot.append(frames[suffix])
    return MegArray(
        tuple(names),
        tuple(types),
        np.asarray(pos),
        np.asarray(rot),
        Frame.DEVICE,
        accuracy,
        generic_helmet_transform(),
        "generic-306",
    )


__all__ = ["GENERIC_GAP_M", "GENERIC_N_SITES", "generic_helmet_transform", "generic_meg_array"]
