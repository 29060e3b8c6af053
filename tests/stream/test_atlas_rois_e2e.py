"""ROIs by atlas region name, from a config through setup to ROI streams over real LSL (issue 17)."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from rtsource.anatomy.atlas import load_atlas
from rtsource.build import build_bundle
from rtsource.bundle import load_bundle, save_bundle
from rtsource.config import load_config, settings_from_dict
from rtsource.errors import ConfigError
from rtsource.sensors.montage import CAP_64
from rtsource.session import feature_options, rois_from_settings
from rtsource.stream.inlet import StreamSelector
from rtsource.stream.loop import LoopOptions, StreamLoop
from rtsource.stream.outputs import ROI_SUFFIX

from .lsl_helpers import Collector, eeg_outlet, unique
from .test_reliability import push, wait_for

SFREQ = 500.0

CONFIG = """
[noise_cov]
source = "ad_hoc"
[stream]
sfreq = 500.0
[bundle]
path = "atlas_bundle.npz"

[[roi]]
name = "A1_left"
atlas = "aparc"
label = "transversetemporal-lh"

[[roi]]
name = "Broca"
atlas = "aparc"
labels = ["broca-lh"]
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The config set up into a bundle (template, ico4, spheres, ad hoc noise)."""
    folder = tmp_path_factory.mktemp("atlas")
    (folder / "atlas.toml").write_text(CONFIG)
    settings = load_config(folder / "atlas.toml")
    return settings, build_bundle(settings, sfreq=SFREQ)


def stream(bundle, features, n=1500):
    """Push n samples of noise through the loop; the ROI stream's data, stamps, labels, expected."""
    in_name, out_name = unique("atlas-eeg"), unique("atlas-src")
    outlet = eeg_outlet(in_name, CAP_64, sfreq=SFREQ, source_id=in_name)
    loop = StreamLoop(bundle, LoopOptions(selector=StreamSelector(in_name), output_name=out_name, resolve_timeout=20), features=features)
    loop.connect()
    thread = loop.run_in_thread()
    roi = Collector(out_name + ROI_SUFFIX)
    assert outlet.wait_for_consumers(20)
    x = (np.random.default_rng(0).normal(size=(n, 64)) * 10).astype(np.float32)
    stamps = 40.0 + np.arange(n) / SFREQ
    push(outlet, x, stamps)
    assert wait_for(lambda: roi.n_samples >= n)
    time.sleep(0.2)
    loop.stop()
    thread.join(10)
    roi.stop()
    loop.close()
    data, got = roi.data()
    labels = [c.find("label").text for c in ET.fromstring(roi.info.as_xml()).findall("desc/channels/channel")]
    expected = loop.features.roi_operator.apply(x.astype(np.float64) * 1e-6)
    assert np.array_equal(got, stamps)
    return data, labels, expected


def test_roi_by_region_name_sets_up_and_streams(setup, tmp_path):
    settings, bundle = setup
    rois = rois_from_settings(settings, bundle)
    # the same regions on the bundle as `rtsource run` loads it from disk
    again = rois_from_settings(settings, load_bundle(save_bundle(bundle, tmp_path / "b.npz")))
    assert [r.name for r in again] == ["A1_left", "Broca"] and all(np.array_equal(a.vertices, b.vertices) for a, b in zip(rois, again))
    atlas = load_atlas("aparc")
    labels = atlas.labels_for(bundle.sources)
    a1, broca = rois
    assert np.array_equal(a1.vertices, np.flatnonzero(labels == atlas.index("transversetemporal-lh")))
    want = np.flatnonzero(np.isin(labels, [atlas.index("parsopercularis-lh"), atlas.index("parstriangularis-lh")]))
    assert np.array_equal(broca.vertices, want)
    data, names, expected = stream(bundle, feature_options(settings, bundle))
    assert names == ["A1_left", "Broca"]
    assert np.allclose(data, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_one_roi_per_region_gives_68_named_channels(setup):
    settings, bundle = setup
    s = settings_from_dict({"rois": {"atlas": "aparc", "mode": "mean"}})
    feats = feature_options(s, bundle)
    assert len(feats.rois) == 68
    data, names, expected = stream(bundle, feats, n=1000)
    assert names == list(load_atlas("aparc").region_names) and len(names) == 68
    assert data.shape[1] == 68 and np.allclose(data, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="needs exactly one of label"):
        settings_from_dict({"roi": [{"name": "x", "atlas": "aparc"}]})
    with pytest.raises(ConfigError, match="hemisphere suffix"):
        settings_from_dict({"roi": [{"name": "x", "atlas": "aparc", "label": "precentral"}]})
    with pytest.raises(ConfigError, match="not a known atlas"):
        settings_from_dict({"rois": {"atlas": "destrieux"}})
    with pytest.raises(ConfigError, match="label/labels need atlas"):
        settings_from_dict({"roi": [{"name": "x", "center_mm": [0, 0, 50], "label": "precentral-lh"}]})
    with pytest.raises(ConfigError, match="exactly one of center_mm, vertices, hemisphere or atlas"):
        settings_from_dict({"roi": [{"name": "x", "hemisphere": "lh", "atlas": "aparc", "label": "precentral-lh"}]})
