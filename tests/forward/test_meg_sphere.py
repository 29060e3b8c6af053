"""Spherical MEG forward model (Sarvas 1987): rtsource.forward.meg_sphere and its kernels.

The kernels compute c with B.n = Q.c; the twin below evaluates the full field vector B of
Sarvas' formula for each unit moment and projects it, in plain NumPy. Closed forms: the field
of a tangential dipole on the z axis at a point on that axis, and the radial component of B,
which volume currents do not change (it equals the primary current's, Sarvas 1987 eq. 13).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rtsource.anatomy.source_space import SourceSpace
from rtsource.anatomy.template import template_source_space
from rtsource.errors import ForwardError
from rtsource.forward import _meg_kernels as kernels
from rtsource.forward.head_model import BemHead, SphereHead
from rtsource.forward.leadfield import make_leadfield
from rtsource.forward.meg_sphere import meg_sphere_field, meg_sphere_leadfield
from rtsource.geometry import Frame
from rtsource.sensors.meg import PLANAR_BASELINE_M, generic_meg_array, make_meg_array

MU0_4PI = 1e-7
ORIGIN = np.array([0.003, -0.021, 0.012])


def sarvas_twin(points, normals, dipoles, origin):
    """B.n (k, 3m) from the full Sarvas field vector, plain NumPy (Sarvas 1987 eq. 25)."""
    r = points - origin
    out = np.zeros((len(points), 3 * len(dipoles)))
    rn = np.linalg.norm(r, axis=1)
    for j, d in enumerate(dipoles):
        r0 = d - origin
        a_vec = r - r0
        a = np.linalg.norm(a_vec, axis=1)
        big_f = a * (rn * a + rn**2 - r @ r0)
        a_dot_r = np.einsum("ij,ij->i", a_vec, r)
        grad_f = (a**2 / rn + a_dot_r / a + 2 * a + 2 * rn)[:, None] * r - (a + 2 * rn + a_dot_r / a)[:, None] * r0
        for k, q in enumerate(np.eye(3)):
            qxr0 = np.cross(q, r0)
            b = MU0_4PI / big_f[:, None] ** 2 * (big_f[:, None] * qxr0 - (r @ qxr0)[:, None] * grad_f)
            out[:, 3 * j + k] = np.einsum("ij,ij->i", b, normals)
    return out


def random_setup(rng, n_points=40, n_dipoles=25):
    u = rng.normal(size=(n_points, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    points = ORIGIN + u * rng.uniform(0.1, 0.13, (n_points, 1))
    normals = rng.normal(size=(n_points, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    v = rng.normal(size=(n_dipoles, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    dipoles = ORIGIN + v * rng.uniform(0.005, 0.085, (n_dipoles, 1))
    return points, normals, dipoles


@pytest.fixture(scope="module")
def generic_head():
    return generic_meg_array().to_head()


# ---------------------------------------------------------------- kernels vs twin


def test_field_matches_numpy_twin():
    points, normals, dipoles = random_setup(np.random.default_rng(0))
    ours = meg_sphere_field(points, normals, dipoles, ORIGIN)
    twin = sarvas_twin(points, normals, dipoles, ORIGIN)
    assert ours.shape == (40, 75)
    assert np.abs(ours - twin).max() <= 1e-10 * np.abs(twin).max()


def test_leadfield_kernel_matches_twin_and_weights(generic_head):
    rng = np.random.default_rng(1)
    dipoles = random_setup(rng, n_dipoles=30)[2]
    field = sarvas_twin(generic_head.points_m, generic_head.point_normals, dipoles, ORIGIN)
    expected = np.zeros((generic_head.n_channels, field.shape[1]))
    np.add.at(expected, generic_head.point_channel, generic_head.weights[:, None] * field)
    # the kernel itself
    out = np.full_like(expected, np.nan)
    kernels.sarvas_leadfield(
        generic_head.points_m - ORIGIN, np.ascontiguousarray(generic_head.point_normals), np.ascontiguousarray(generic_head.weights),
        np.ascontiguousarray(generic_head.point_channel), dipoles - ORIGIN, out,
    )
    scale = np.abs(expected).max(axis=1, keepdims=True)
    assert np.all(np.abs(out - expected) <= 1e-10 * scale)
    # the public function, and the field route through channel_signals
    lf = meg_sphere_leadfield(generic_head, dipoles, ORIGIN)
    assert np.all(np.abs(lf - expected) <= 1e-10 * scale)
    via = generic_head.channel_signals(meg_sphere_field(generic_head.points_m, generic_head.point_normals, dipoles, ORIGIN))
    assert np.all(np.abs(lf - via) <= 1e-12 * scale)


# ---------------------------------------------------------------- physics


def test_radial_dipoles_give_zero(generic_head):
    rng = np.random.default_rng(2)
    dipoles = random_setup(rng, n_dipoles=50)[2]
    lf = meg_sphere_leadfield(generic_head, dipoles, ORIGIN).reshape(generic_head.n_channels, -1, 3)
    radial = (dipoles - ORIGIN) / np.linalg.norm(dipoles - ORIGIN, axis=1, keepdims=True)
    b_radial = np.einsum("cjk,jk->cj", lf, radial)
    # tangential moments for scale
    tang = np.cross(radial, [0.3, -0.5, 0.8])
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    b_tang = np.einsum("cjk,jk->cj", lf, tang)
    assert np.abs(b_radial).max() <= 1e-12 * np.abs(b_tang).max()


def test_dipole_at_origin_gives_exact_zero():
    points, normals, _ = random_setup(np.random.default_rng(3))
    out = meg_sphere_field(points, normals, ORIGIN[None, :], ORIGIN)
    assert np.all(out == 0.0)


def test_closed_form_on_the_z_axis():
    """Q = q x at (0, 0, z0), field point (0, 0, R): B = -mu0 q z0 / (8 pi R (R - z0)^2) y."""
    q = 1e-8
    for z0, radius in ((0.02, 0.11), (0.06, 0.1), (-0.03, 0.12)):
        dip = ORIGIN + [0, 0, z0]
        pts = ORIGIN + np.array([[0, 0, radius]] * 3)
        normals = np.eye(3)  # B_x, B_y, B_z
        b = meg_sphere_field(pts, normals, dip[None], ORIGIN)[:, 0] * q
        expected_y = -MU0_4PI * q * z0 / (2 * radius * (radius - z0) ** 2)
        assert math.isclose(b[1], expected_y, rel_tol=1e-12)
        assert abs(b[0]) < 1e-12 * abs(expected_y) and abs(b[2]) < 1e-12 * abs(expected_y)
        # far away the field is the magnetic dipole's m = r0 x Q / 2: on its equator -mu0 m/(4 pi r^3)
    far = meg_sphere_field(ORIGIN + np.array([[0, 0, 100.0]]), np.array([[0, 1.0, 0]]), (ORIGIN + [0, 0, 0.05])[None], ORIGIN)
    assert math.isclose(far[0, 0], -MU0_4PI * 0.05 / 2 / 100.0**3, rel_tol=1e-3)


def test_radial_component_equals_primary_field():
    rng = np.random.default_rng(4)
    points, _, dipoles = random_setup(rng)
    radial = (points - ORIGIN) / np.linalg.norm(points - ORIGIN, axis=1, keepdims=True)
    b = meg_sphere_field(points, radial, dipoles, ORIGIN)
    for j, d in enumerate(dipoles):
        a = points - d
        dist = np.linalg.norm(a, axis=1)
        for k, q in enumerate(np.eye(3)):
            # Biot-Savart of the primary current alone: mu0/(4 pi) Q x (r - r0) / |r - r0|^3
            primary = MU0_4PI * np.einsum("ij,ij->i", np.cross(np.broadcast_to(q, a.shape), a), radial) / dist**3
            assert np.allclose(b[:, 3 * j + k], primary, rtol=1e-10, atol=1e-10 * np.abs(primary).max())


def test_gradiometers_are_finite_differences_of_point_magnetometers(generic_head):
    """A gradiometer is (B.n(+) - B.n(-)) / baseline at its integration points, through the public API."""
    grads = generic_head.pick_types("planar_grad")
    plus = grads.points_m[grads.weights > 0]
    minus = grads.points_m[grads.weights < 0]
    normals = grads.point_normals[grads.weights > 0]
    names = [f"P{i}" for i in range(len(plus))] + [f"N{i}" for i in range(len(minus))]
    mags = make_meg_array(names, "mag", np.vstack([plus, minus]), np.vstack([normals, normals]), frame=grads.frame, accuracy="point")
    dipoles = random_setup(np.random.default_rng(5), n_dipoles=20)[2]
    g = meg_sphere_leadfield(grads, dipoles, ORIGIN)
    m = meg_sphere_leadfield(mags, dipoles, ORIGIN)
    fd = (m[: len(plus)] - m[len(plus) :]) / PLANAR_BASELINE_M
    assert np.allclose(g, fd, rtol=1e-12, atol=1e-12 * np.abs(g).max())
    # an axial gradiometer is the difference of two magnetometers 50 mm apart
    ax = make_meg_array(["A"], "axial_grad", [[0.0, 0.0, 0.11]], [[0.0, 0.0, 1.0]], frame="template", accuracy="point")
    two = make_meg_array(["lo", "hi"], "mag", [[0.0, 0.0, 0.11], [0.0, 0.0, 0.16]], [[0, 0, 1.0]] * 2, frame="template", accuracy="point")
    assert np.allclose(meg_sphere_leadfield(ax, dipoles, ORIGIN)[0], np.diff(meg_sphere_leadfield(two, dipoles, ORIGIN), axis=0)[0] * -1)


def test_accuracy_levels_converge(generic_head):
    """Finer coil integration changes little; the point rule differs most (near sources)."""
    dipoles = template_source_space("ico4").positions_m[::100]  # >= 4 cm from the sensors
    ref = meg_sphere_leadfield(generic_head.with_accuracy("accurate"), dipoles, ORIGIN)
    normal = meg_sphere_leadfield(generic_head, dipoles, ORIGIN)
    point = meg_sphere_leadfield(generic_head.with_accuracy("point"), dipoles, ORIGIN)
    mags = np.array([t == "mag" for t in generic_head.ch_types])
    err = lambda x: np.abs(x[mags] - ref[mags]).max() / np.abs(ref[mags]).max()  # noqa: E731
    assert err(normal) < 0.01 and err(normal) < err(point)


def test_field_input_errors():
    points, normals, dipoles = random_setup(np.random.default_rng(7))
    with pytest.raises(ForwardError, match=r"normals\[2\].*length 2"):
        bad = normals.copy()
        bad[2] *= 2
        meg_sphere_field(points, bad, dipoles, ORIGIN)
    with pytest.raises(ForwardError, match="integration point .* mm from the sphere origin but dipole"):
        meg_sphere_field(ORIGIN + [[0, 0, 0.05]], [[0, 0, 1.0]], ORIGIN + [[0, 0.07, 0]], ORIGIN)
    with pytest.raises(ForwardError, match=r"dipoles_m\[0\].*not finite"):
        meg_sphere_field(points, normals, [[np.nan, 0, 0]], ORIGIN)
    with pytest.raises(ForwardError, match="origin_m must be 3 finite numbers"):
        meg_sphere_field(points, normals, dipoles, [0, 0])
    eeg = make_meg_array(["Cz", "M"], ["eeg", "mag"], [[0, 0, 0.1], [0, 0, 0.12]], [[0, 0, 1.0]] * 2, frame="template")
    with pytest.raises(ForwardError, match="EEG channels \\(Cz\\)"):
        meg_sphere_leadfield(eeg, dipoles, ORIGIN)
    assert meg_sphere_field(points, normals, np.zeros((0, 3)), ORIGIN).shape == (40, 0)


# ---------------------------------------------------------------- peer: MNE-Python


@pytest.mark.peers
def test_point_magnetometers_match_mne(generic_head):
    """MNE-Python's sphere MEG forward at the same integration points, as point magnetometers.

    MNE's Vectorview coil definitions differ from ours at 'normal' accuracy (its planar
    gradiometers use 4 points at (+-8.4, +-6.7) mm and 0.3 mm above the coil; its T3
    magnetometer a 21 mm loop), so channels are compared at identical points instead.
    """
    mne = pytest.importorskip("mne")
    from mne.io.constants import FIFF

    sub = generic_head.pick(generic_head.ch_names[::9])
    pm = make_meg_array([f"P{i:04d}" for i in range(sub.n_points)], "mag", sub.points_m, sub.point_normals, frame=sub.frame, accuracy="point")
    info = mne.create_info(list(pm.ch_names), 1000.0, "mag")
    for ch, p, rot in zip(info["chs"], pm.positions_m, pm.rotations):
        ch["loc"][:3] = p
        ch["loc"][3:12] = rot.T.ravel()  # coil x, y, z axes
        ch["coil_type"] = FIFF.FIFFV_COIL_POINT_MAGNETOMETER
    with info._unlock():
        info["dev_head_t"] = mne.transforms.Transform("meg", "head", np.eye(4))
    rng = np.random.default_rng(8)
    dipoles = random_setup(rng, n_dipoles=15)[2]
    src = mne.setup_volume_source_space(pos=dict(rr=dipoles, nn=np.tile([0, 0, 1.0], (15, 1))), verbose=False)
    sphere = mne.make_sphere_model(r0=ORIGIN, head_radius=None, verbose=False)
    fwd = mne.make_forward_solution(info, mne.transforms.Transform("head", "mri", np.eye(4)), src, sphere, meg=True, eeg=False, verbose=False)
    theirs = fwd["sol"]["data"]
    ours = meg_sphere_leadfield(pm, dipoles, ORIGIN)
    assert np.abs(ours - theirs).max() <= 1e-10 * np.abs(theirs).max()
    # and the weighted channels equal the points combined with our weights
    assert np.allclose(sub.channel_signals(meg_sphere_field(sub.points_m, sub.point_normals, dipoles, ORIGIN)), meg_sphere_leadfield(sub, dipoles, ORIGIN))


# ---------------------------------------------------------------- cross-check: single-layer BEM


def test_sarvas_matches_single_layer_bem_on_a_sphere():
    """The same coils through the BEM's field (rtsource.forward.bem) on a spherical mesh.

    642 vertices keep this quick; median RDM per eccentricity is ~0.005 here (~0.001 at 2562
    vertices, measured with the same code).
    """
    bem = pytest.importorskip("rtsource.forward.bem")

    radius = 0.081
    center = np.array([0.0, -0.02, 0.01])
    model = bem.concentric_sphere_model((radius,), (0.33,), order=3, center_m=center, frame="template", names=("inner_skull",))
    array = generic_meg_array()
    rng = np.random.default_rng(9)
    ecc = np.repeat([0.3, 0.6, 0.9], 6)
    u = rng.normal(size=(len(ecc), 3))
    u[:, 2] = np.abs(u[:, 2]) + 0.3  # below the helmet
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    pos = center + u * (ecc * radius)[:, None]
    tang = np.cross(u, rng.normal(size=u.shape))
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    sources = SourceSpace(pos, tang, np.zeros(len(pos)), np.full(len(pos), -1), Frame.TEMPLATE)
    lf_bem = make_leadfield(sources, array, BemHead.from_model(model), use_cache=False).leadfield
    lf_sph = make_leadfield(sources, array, SphereHead(meg_origin_m=center, inner_skull=model.surfaces[-1]), use_cache=False).leadfield
    assert lf_bem.model["kind"] == "meg_bem_single_layer" and lf_bem.gain.shape == lf_sph.gain.shape
    a, b = lf_bem.normal_gain(), lf_sph.normal_gain()
    for e in np.unique(ecc):
        cols = ecc == e
        for kind in ("mag", "planar_grad"):
            rows = np.array([t == kind for t in array.ch_types])
            x, y = a[np.ix_(rows, cols)], b[np.ix_(rows, cols)]
            rdm = np.linalg.norm(x / np.linalg.norm(x, axis=0) - y / np.linalg.norm(y, axis=0), axis=0)
            assert np.median(rdm) <= 0.02, (e, kind, rdm)
