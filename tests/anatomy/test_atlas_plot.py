"""The ROI picture shows the atlas outlines and fills the ROIs."""

from __future__ import annotations

import numpy as np
import pytest

from rtsource.anatomy.template import template_source_space
from rtsource.inverse.atlas_roi import roi_from_atlas

pytest.importorskip("matplotlib", reason="the ROI picture needs matplotlib: pip install rtsource[qc]")


def colour_fraction(path, rgb):
    from matplotlib.image import imread

    img = imread(str(path))[..., :3]
    return float((np.abs(img - np.asarray(rgb)).max(axis=-1) < 0.08).mean())


def test_roi_picture_fills_the_rois(tmp_path):
    from matplotlib import colormaps

    from rtsource.anatomy.atlas_plot import write_roi_png

    space = template_source_space("ico4")
    roi = roi_from_atlas(space, "M1r", "aparc", "motor-rh")
    first = colormaps["tab10"](0)[:3]
    with_roi = write_roi_png(tmp_path / "roi.png", [roi], spacing="ico4")
    without = write_roi_png(tmp_path / "atlas.png", [], spacing="ico4")
    assert with_roi.stat().st_size > 50_000
    # the ROI's colour (shaded up to 45 % darker) covers part of the picture only when drawn
    shades = [np.asarray(first) * f for f in (1.0, 0.9, 0.8)]
    assert sum(colour_fraction(with_roi, s) for s in shades) > 0.003
    assert sum(colour_fraction(without, s) for s in shades) < 0.0005
    # outlines: dark pixels in both
    assert colour_fraction(without, (0.2, 0.2, 0.2)) > 0.005
