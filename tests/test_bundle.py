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
