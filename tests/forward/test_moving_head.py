"""The lead field of a moving head (rtsource.forward.moving_head, issue 20): the pose-independent
part prepared once gives, for any head pose, what make_leadfield gives for the moved array."""

from __future__ import annotations

import numpy as np
import pytest

from rtsource.anatomy.template import load_template, template_source_space
from rtsource.errors import ForwardError
from rtsource.forward.head_model import BemHead, SphereHead
from rtsource.forward.leadfield import make_leadfield
from rtsource.forward.meg_sphere import meg_sphere_origin
from rtsource.forward.moving_head import BEM_REASON, prepare_moving_head
from rtsource.geometry import Frame, Transform
from rtsource.sensors.meg import generic_meg_array


def _rot(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def parts():
    tpl = load_template()
    sources = template_source_space("ico4").subset(list(range(0, 5124, 8)), name="ico4-every-8th")
    origin, _ = meg_sphere_origin(tpl.surfaces.inner_skull)
    dev = generic_meg_array()  # DEVICE, with a DEVICE -> TEMPLATE transform
    return sources, dev, origin, tpl


def test_moving_head_equals_make_leadfield_at_every_pose(parts):
    sources, dev, origin, _ = parts
    head = SphereHead(meg_origin_m=origin)
    moving = prepare_moving_head(sources, dev, head)
    start = dev.dev_head_t.matrix
    for rot_deg, shift in ((0.0, (0.0, 0.0, 0.0)), (-5.0, (-0.006, 0.003, -0.002))):
        m = start.copy()
        m[:3, :3], m[:3, 3] = _rot(rot_deg), start[:3, 3] + shift
        t = Transform.from_rotation_translation(Frame.DEVICE, Frame.TEMPLATE, m[:3, :3], m[:3, 3])
        want = make_leadfield(sources, dev.with_dev_head_t(t), head, use_cache=False)
        got = moving.leadfield(m)
        scale = np.abs(want.leadfield.gain).max()
        np.testing.assert_allclose(got.leadfield.gain, want.leadfield.gain, rtol=0, atol=1e-12 * scale)
        assert got.ch_types == want.ch_types and got.ch_units == want.ch_units
        np.testing.assert_allclose(got.leadfield.channel_positions_m, want.leadfield.channel_positions_m, atol=1e-12)
        assert got.leadfield.model["kind"] == want.leadfield.model["kind"] == "meg_sphere_sarvas"
    # a pose that puts the sensors into the head is refused, naming the transform
    m = start.copy()
    m[2, 3] -= 0.06
    with pytest.raises(ForwardError, match="device->head transform"):
        moving.gain(m)
    with pytest.raises(ForwardError, match="rigid"):
        moving.gain(np.diag([1.1, 1.0, 1.0, 1.0]))


def test_moving_head_refuses_a_bem_with_the_reason(parts):
    sources, dev, _, tpl = parts
    with pytest.raises(ForwardError, match="sphere model only") as info:
        prepare_moving_head(sources, dev, BemHead((tpl.surfaces.inner_skull,), (0.3,)))
    assert str(info.value) == BEM_REASON
