"""Operator bundle files: round trip, and refusal of damaged or foreign files (rtsource.bundle)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from rtsource.bundle import SCHEMA_VERSION, load_bundle, save_bundle
from rtsource.errors import BundleChecksumError, BundleError, BundleSchemaError

from .conftest import make_bundle


def test_round_trip(tmp_path, small_bundle):
    path = save_bundle(small_bundle, tmp_path / "b.npz")
    b = load_bundle(path)
    assert np.array_equal(b.kernel, small_bundle.kernel)
    assert np.array_equal(b.noise_norm, small_bundle.noise_norm)
    assert b.ch_names == small_bundle.ch_names and b.ch_units == ("V",) * 8
    assert b.sources.frame == small_bundle.sources.frame
    assert np.array_equal(b.sources.positions_m, small_bundle.sources.positions_m)
    assert b.params["snr"] == 3.0 and b.provenance["test"] is True
    assert b.sfreq == 500.0 and b.n_orient == 3 and b.method == "dSPM"
    assert not b.kernel.flags.writeable


def test_optional_arrays_round_trip(tmp_path):
    b = make_bundle(gain=np.ones((8, 60)), noise_cov=np.eye(8))
    back = load_bundle(save_bundle(b, tmp_path / "b.npz"))
    assert np.array_equal(back.gain, np.ones((8, 60))) and np.array_equal(back.noise_cov, np.eye(8))


def _rewrite(path, mutate):
    """Rewrite a bundle's members through ``mutate(dict)`` without fixing the checksum."""
    with np.load(path, allow_pickle=False) as z:
        members = {k: z[k] for k in z.files}
    mutate(members)
    with open(path, "wb") as f:
        np.savez(f, **members)


def test_tampered_array_is_refused(tmp_path, small_bundle):
    path = save_bundle(small_bundle, tmp_path / "b.npz")

    def bump(m):
        m["kernel"] = m["kernel"].copy()
        m["kernel"][0, 0] *= 1.0001

    _rewrite(path, bump)
    with pytest.raises(BundleChecksumError, match="checksum mismatch"):
        load_bundle(path)


def test_tampered_header_is_refused(tmp_path, small_bundle):
    path = save_bundle(small_bundle, tmp_path / "b.npz")

    def edit(m):
        header = json.loads(m["header"].tobytes())
        header["ch_names"][0] = "Cz"
        m["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)

    _rewrite(path, edit)
    with pytest.raises(BundleChecksumError):
        load_bundle(path)


def test_schema_version_mismatch(tmp_path, small_bundle):
    path = save_bundle(small_bundle, tmp_path / "b.npz")

    def edit(m):
        header = json.loads(m["header"].tobytes())
        header["schema_version"] = SCHEMA_VERSION + 1
        m["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)

    _rewrite(path, edit)
    with pytest.raises(BundleSchemaError, match=f"schema version {SCHEMA_VERSION + 1}"):
        load_bundle(path)


def test_truncated_file(tmp_path, small_bundle):
    path = save_bundle(small_bundle, tmp_path / "b.npz")
    raw = path.read_bytes()
    for cut in (10, len(raw) // 2, len(raw) - 20):
        path.write_bytes(raw[:cut])
        with pytest.raises(BundleError, match="rebuild"):
            load_bundle(path)


def test_foreign_files(tmp_path):
    p = tmp_path / "x.npz"
    p.write_text("hello")
    with pytest.raises(BundleError):
        load_bundle(p)
    np.savez(p, a=np.ones(3))
    with pytest.raises(BundleSchemaError, match="header"):
        load_bundle(p)
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "missing.npz")


def test_pickled_member_is_refused(tmp_path, small_bundle):
    path = save_bundle(small_bundle, tmp_path / "b.npz")
    with zipfile.ZipFile(path, "a") as z:
        buf = io.BytesIO()
        np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
        z.writestr("extra.npy", buf.getvalue())
    with pytest.raises(BundleError):
        load_bundle(path)


def test_inconsistent_content_is_refused():
    with pytest.raises(BundleError, match="kernel shape"):
        make_bundle(kernel=np.ones((5, 8)))
    with pytest.raises(BundleError, match="sfreq"):
        make_bundle(sfreq=0.0)
    with pytest.raises(BundleError, match="non-finite"):
        k = np.ones((60, 8))
        k[0, 0] = np.nan
        make_bundle(kernel=k)


def test_version_1_bundles_stay_readable(tmp_path, small_bundle, monkeypatch):
    import rtsource.bundle as rb

    monkeypatch.setattr(rb, "SCHEMA_VERSION", 1)
    path = save_bundle(small_bundle, tmp_path / "v1.npz")
    monkeypatch.undo()
    assert np.array_equal(load_bundle(path).kernel, small_bundle.kernel)


def test_lcmv_and_eloreta_extras_round_trip(tmp_path):
    b = make_bundle(data_cov=np.eye(8) * 2.0, source_weights=np.ones((20, 3)))
    back = load_bundle(save_bundle(b, tmp_path / "b.npz"))
    assert np.array_equal(back.data_cov, np.eye(8) * 2.0) and back.source_weights.shape == (20, 3)
    with pytest.raises(BundleError, match="data_cov shape"):
        make_bundle(data_cov=np.eye(3))


# ---- edited bundles with a recomputed checksum: the meaning is checked, not only the sum ----

def _edit_and_resign(path, *, header=None, arrays=None, compressed=False):
    """Edit a saved bundle as an attacker would: change members, recompute the checksum."""
    from rtsource.bundle import _checksum

    with np.load(path, allow_pickle=False) as z:
        members = {k: z[k] for k in z.files}
    head = json.loads(members.pop("header").tobytes())
    if header is not None:
        header(head)
    if arrays is not None:
        arrays(members)
    head["checksum"] = _checksum(head, members)
    text = json.dumps(head) if not isinstance(head.get("params"), str) else head["params"]
    members["header"] = np.frombuffer(text.encode(), np.uint8)
    with open(path, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **members)


def _refused(path, *fragments):
    with pytest.raises(BundleError) as exc:
        load_bundle(path)
    msg = str(exc.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    assert "allow_pickle" not in msg
    return msg


def _set(name, value):
    def edit(m):
        m[name] = value

    return edit


@pytest.fixture
def saved(tmp_path):
    b = make_bundle(n_chan=8, n_src=4, gain=np.ones((8, 12)) * 1e-7, noise_cov=np.eye(8) * 1e-12,
                    source_rotation=np.tile(np.eye(3), (4, 1, 1)))  # fmt: skip
    return save_bundle(b, tmp_path / "b.npz")


def test_resigned_bundle_with_nan_gain_is_refused(saved):
    def nan_gain(m):
        g = m["gain"].copy()
        g[3, 5] = np.nan
        m["gain"] = g

    _edit_and_resign(saved, arrays=nan_gain)
    _refused(saved, "array 'gain'", "non-finite")


def test_resigned_bundle_with_wrong_rotation_shape_is_refused(saved):
    _edit_and_resign(saved, arrays=_set("source_rotation", np.tile(np.eye(3), (5, 1, 1))))  # (5,3,3) for 4 sources
    _refused(saved, "'source_rotation'", "(5, 3, 3)", "4 sources")
    _edit_and_resign(saved, arrays=_set("source_rotation", np.tile(np.eye(3) * 2.0, (4, 1, 1))))
    _refused(saved, "'source_rotation' is not made of rotations")


def test_resigned_bundle_with_negative_covariance_is_refused(saved):
    _edit_and_resign(saved, arrays=_set("noise_cov", -np.eye(8) * 1e-12))
    _refused(saved, "'noise_cov'", "negative eigenvalue")
    _edit_and_resign(saved, arrays=_set("noise_cov", np.triu(np.ones((8, 8)))))
    _refused(saved, "'noise_cov' is not symmetric")


@pytest.mark.parametrize(
    "key,value,fragments",
    [
        ("sfreq", 1e300, ["sfreq = 1e+300"]),
        ("sfreq", 0.5, ["sfreq = 0.5"]),
        ("method", "dSPM; rm -rf ~ #", ["method 'dSPM; rm -rf ~ #'", "MNE, dSPM"]),
        ("output_unit", "$(reboot)", ["output_unit"]),
        ("reference", "line\nbreak", ["reference"]),
        ("source_space_name", "x" * 10000, ["source_space_name"]),
    ],
)
def test_resigned_header_values_are_checked(saved, key, value, fragments):
    _edit_and_resign(saved, header=lambda h: h.__setitem__(key, value))
    _refused(saved, *fragments)


def test_resigned_units_and_types_are_checked(saved):
    _edit_and_resign(saved, header=lambda h: h.__setitem__("ch_units", ["uV"] * 8))
    _refused(saved, "type 'eeg' and unit 'uV'")
    _edit_and_resign(saved, header=lambda h: h.__setitem__("ch_types", ["ecg"] * 8))
    _refused(saved, "type 'ecg'")
    _edit_and_resign(saved, header=lambda h: h["ch_names"].__setitem__(0, 17))
    _refused(saved, "ch_names", "17")


def test_resigned_params_are_checked(saved):
    _edit_and_resign(saved, header=lambda h: h["params"].__setitem__("loose", 7.0))
    _refused(saved, "params loose is 7.0")
    _edit_and_resign(saved, header=lambda h: h["params"].__setitem__("snr", float("nan")))
    _refused(saved, "params snr is nan")
    _edit_and_resign(saved, header=lambda h: h["params"].__setitem__("method", "LCMV"))
    _refused(saved, "params method 'LCMV' differs")


def test_resigned_positions_far_away_are_refused(saved):
    _edit_and_resign(saved, arrays=_set("channel_positions_m", np.full((8, 3), 90.0)))  # millimetres stored as metres
    _refused(saved, "'channel_positions_m' reaches 90 m")


def test_deeply_nested_header_is_refused_before_parsing(saved):
    deep = "[" * 200000 + "]" * 200000

    def edit(h):
        h["provenance"] = "@DEEP@"

    with np.load(saved, allow_pickle=False) as z:
        members = {k: z[k] for k in z.files}
    head = json.loads(members.pop("header").tobytes())
    edit(head)
    text = json.dumps(head).replace('"@DEEP@"', deep)
    members["header"] = np.frombuffer(text.encode(), np.uint8)
    with open(saved, "wb") as f:
        np.savez(f, **members)
    _refused(saved, "nests 200001 levels deep", "at most 32")


def test_member_sizes_are_bounded_before_reading(tmp_path):
    """A compressed bundle that would inflate far beyond its file size is refused before
    anything is decompressed (tracemalloc's peak stays far below the inflated size)."""
    import tracemalloc

    n_chan, n_src = 128, 5000
    b = make_bundle(n_chan=n_chan, n_src=n_src, kernel=np.zeros((3 * n_src, n_chan)), gain=np.zeros((n_chan, 3 * n_src)))
    path = save_bundle(b, tmp_path / "big.npz")
    _edit_and_resign(path, compressed=True)  # 31 MB of zeros in a ~100 kB file
    assert path.stat().st_size < 2e6
    tracemalloc.start()
    try:
        msg = _refused(path, "would expand to", "decompressed")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10e6, f"{peak / 1e6:.0f} MB allocated before refusing: {msg}"


def test_declared_shape_is_checked_before_the_data_is_read(saved):
    """A member whose .npy header claims 1e6 rows is refused from the header alone."""
    import struct

    with zipfile.ZipFile(saved) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    head = b"{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 8), }"
    head += b" " * (63 - (len(head) + 10) % 64) + b"\n"
    members["kernel.npy"] = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head + b"\x00" * 64
    with zipfile.ZipFile(saved, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    _refused(saved, "array 'kernel' has shape (1000000, 8)", "8 channels and 4 sources")


def test_damaged_npy_header_never_suggests_allow_pickle(saved):
    import struct

    with zipfile.ZipFile(saved) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    members["kernel.npy"] = b"\x93NUMPY\x01\x00" + struct.pack("<H", 60000) + b" " * 60000  # numpy: "...allow_pickle=True"
    with zipfile.ZipFile(saved, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    _refused(saved, "array 'kernel' has a damaged header", "Header info length (60000)")
    members["kernel.npy"] = b"\x93NUMPY\x01\x00" + struct.pack("<H", 20) + b"{'descr': '|O', 'fo"  # cut
    with zipfile.ZipFile(saved, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    _refused(saved, "array 'kernel' has a damaged header")


def test_object_member_is_refused_without_unpickling(saved):
    _edit_and_resign(saved, arrays=_set("source_weights", np.array([[{"evil": 1}]], dtype=object)))  # saved with pickle
    _refused(saved, "'source_weights'", "plain numbers only")


# ---- saving: a unique temporary file, an atomic rename, no symlink followed -----------------

def test_save_uses_a_unique_temp_file_and_never_follows_symlinks(tmp_path, small_bundle):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "b.npz"
    (tmp_path / "b.npz.tmp").symlink_to(victim)  # the old fixed temporary name
    save_bundle(small_bundle, target)
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.npz", "b.npz.tmp", "victim.txt"]  # no temp file left
    assert np.array_equal(load_bundle(target).kernel, small_bundle.kernel)
    # a symlink at the target itself is replaced by the new file, not written through
    link = tmp_path / "link.npz"
    link.symlink_to(victim)
    save_bundle(small_bundle, link)
    assert victim.read_text() == "precious" and not link.is_symlink()
    target.chmod(0o640)
    save_bundle(small_bundle, target)
    assert target.stat().st_mode & 0o777 == 0o640  # an overwritten bundle keeps its permissions


def test_failed_save_keeps_the_old_bundle(tmp_path, small_bundle):
    target = save_bundle(small_bundle, tmp_path / "b.npz")
    before = target.read_bytes()
    bad = make_bundle(params={"x": object()})  # not JSON-serialisable: fails while writing
    with pytest.raises(TypeError):
        save_bundle(bad, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["b.npz"]

def test_meg_only_bundle_has_no_eeg_reference():
    """An MEG-only bundle has nothing to re-reference: it says so (older ones said 'average')."""
    import xml.etree.ElementTree as ET

    from rtsource.stream.channels import StreamDescription
    from rtsource.stream.outlets import make_source_info

    from .conftest import make_bundle

    types = ("mag", "grad", "grad") * 2
    for stored in ("average", "none"):  # written before / after the fix
        b = make_bundle(n_chan=6, ch_types=types, ch_units=("T", "T/m", "T/m") * 2, reference=stored)
        assert b.eeg_reference == "none" and "no EEG reference" in b.describe() and "ref average" not in b.describe()
        desc = StreamDescription("meg", "MEG", "meg", 500.0, 6, "float32", b.ch_names, ("MEG",) * 6, ("T",) * 6)
        info = make_source_info(b, desc, name="x", type_="Sources", source_id="x")
        assert ET.fromstring(info.as_xml()).find("desc/rtsource/reference").text == "none"
    eeg = make_bundle(n_chan=6)
    assert eeg.eeg_reference == "average" and "ref average" in eeg.describe()
