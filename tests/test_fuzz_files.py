"""Untrusted files: the bundle and config loaders only raise rtsource's documented errors.

Hypothesis mutates real files (byte flips, truncation, insertion) and writes random text;
whatever comes in, the loaders must either load it or refuse it with an RtsourceError.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtsource.bundle import load_bundle, save_bundle
from rtsource.config import load_config
from rtsource.errors import RtsourceError

from .conftest import make_bundle

_DIR = Path(tempfile.mkdtemp(prefix="rtsource-fuzz-"))
_BUNDLE = save_bundle(make_bundle(n_chan=4, n_src=6), _DIR / "good.npz").read_bytes()
_CONFIG = (Path(__file__).resolve().parents[1] / "configs" / "demo.toml").read_bytes()


def _mutate(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for kind, pos, value in edits:
        if not buf:
            break
        i = pos % len(buf)
        if kind == 0:
            buf[i] = value
        elif kind == 1:
            del buf[i : i + 1 + value % 64]
        else:
            buf[i:i] = bytes([value]) * (1 + value % 8)
    return bytes(buf)


edits = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1 << 30), st.integers(0, 255)), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits)
def test_mutated_bundles_are_loaded_or_refused(e):
    path = _DIR / "mutated.npz"
    path.write_bytes(_mutate(_BUNDLE, e))
    try:
        load_bundle(path)
    except RtsourceError:
        pass


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=4000))
def test_random_bytes_as_bundle(data):
    path = _DIR / "random.npz"
    path.write_bytes(data)
    try:
        load_bundle(path)
    except RtsourceError:
        pass


@settings(max_examples=200, deadline=None)
@given(edits)
def test_mutated_configs_are_loaded_or_refused(e):
    path = _DIR / "mutated.toml"
    path.write_bytes(_mutate(_CONFIG, e))
    try:
        load_config(path)
    except RtsourceError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=2000))
def test_random_text_as_config(text):
    path = _DIR / "random.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass") if False else path.write_bytes(text.encode("utf-8", "replace"))
    try:
        load_config(path)
    except RtsourceError:
        pass


def _schema():
    import dataclasses
    import typing

    from rtsource.config import Settings

    hints = typing.get_type_hints(Settings)
    out = {}
    for f in dataclasses.fields(Settings):
        cls = hints[f.name]
        if typing.get_origin(cls) is tuple:  # an array of tables ([[roi]])
            cls = typing.get_args(cls)[0]
        if dataclasses.is_dataclass(cls):
            out[f.name] = [g.name for g in dataclasses.fields(cls)]
    return out


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def config_docs(draw):
    schema = _schema()
    doc = {}
    for section in draw(st.lists(st.sampled_from(sorted(schema)), max_size=4, unique=True)):
        keys = draw(st.lists(st.sampled_from(schema[section]), max_size=4, unique=True))
        doc[section] = {k: draw(_values) for k in keys}
    return doc


@settings(max_examples=400, deadline=None)
@given(config_docs())
def test_structured_config_fuzz(doc):
    from rtsource.config import settings_from_dict

    doc = {k: {kk: vv for kk, vv in v.items() if vv is not None} for k, v in doc.items()}  # TOML has no null
    if "roi" in doc:
        doc["roi"] = [doc["roi"]]  # an array of tables
    try:
        settings_from_dict(doc)
    except RtsourceError as exc:  # a clean message that names the section of the culprit
        assert any(f"[{name}" in str(exc) for name in doc), str(exc)


# ---- edits with a recomputed checksum: the loader's meaning checks, not the checksum, decide --

_RESIGN_BASE = save_bundle(
    make_bundle(n_chan=4, n_src=6, gain=np.ones((4, 18)) * 1e-7, noise_cov=np.eye(4) * 1e-12, source_rotation=np.tile(np.eye(3), (6, 1, 1))),
    _DIR / "resign-base.npz",
).read_bytes()
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
_arrays = st.sampled_from(["kernel", "noise_norm", "source_positions_m", "source_normals", "source_areas_m2", "source_hemisphere",
                           "source_triangles", "channel_positions_m", "gain", "noise_cov", "source_rotation"])  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    header_edits=st.dictionaries(st.sampled_from(["method", "output_unit", "sfreq", "n_orient", "ch_names", "ch_types", "ch_units", "reference",
                                                  "source_frame", "channel_frame", "source_space_name", "params", "created_utc"]),
                                 st.text(max_size=20) | st.floats() | st.lists(st.text(max_size=6), min_size=4, max_size=4) | _json_values, max_size=2),  # fmt: skip
    array_edit=st.none() | st.tuples(_arrays, st.integers(0, 4), st.integers(0, 4), st.sampled_from([0.0, -1.0, np.nan, np.inf, 1e300, 7.0])),
)
def test_resigned_edits_are_loaded_or_refused(header_edits, array_edit):
    import io
    import json
    import zipfile

    from rtsource.bundle import _checksum

    with np.load(io.BytesIO(_RESIGN_BASE), allow_pickle=False) as z:
        members = {k: z[k] for k in z.files}
    head = json.loads(members.pop("header").tobytes())
    head.update(header_edits)
    if array_edit is not None:
        name, rows, cols, value = array_edit
        a = members[name].astype(np.float64) if members[name].dtype.kind == "f" else members[name].copy()
        if rows == 0:
            a = np.full(a.shape[:1] + (cols,) + a.shape[2:], value if a.dtype.kind == "f" else 1, dtype=a.dtype)  # wrong shape
        elif a.size:
            a.flat[(rows * 7) % a.size] = value if a.dtype.kind == "f" else -rows
        members[name] = a
    try:
        head["checksum"] = _checksum(head, members)
        members["header"] = np.frombuffer(json.dumps(head).encode(), np.uint8)
    except (TypeError, ValueError):
        return  # not representable as a bundle header at all
    path = _DIR / "resigned.npz"
    with open(path, "wb") as f:
        np.savez(f, **members)
    assert zipfile.is_zipfile(path)
    try:
        b = load_bundle(path)
    except RtsourceError as exc:
        assert "allow_pickle" not in str(exc)
        return
    # whatever loads makes sense
    assert b.method in ("MNE", "dSPM", "sLORETA", "eLORETA", "LCMV") and b.output_unit in ("", "A*m", "a.u.") and 1 <= b.sfreq <= 100000
    assert all({"eeg": "V", "mag": "T", "grad": "T/m"}.get(t) == u for t, u in zip(b.ch_types, b.ch_units))
    for a in (b.kernel, b.gain, b.noise_cov, b.source_rotation, b.sources.positions_m, b.channel_positions_m):
        assert np.all(np.isfinite(a))
    assert np.all(np.linalg.eigvalsh(b.noise_cov) > -1e-20) and b.source_rotation.shape == (b.n_sources, 3, 3)

