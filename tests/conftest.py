"""Shared fixtures: an isolated cache directory and small operator bundles."""

from __future__ import annotations

import os

import numpy as np
import pytest


def _quiet_liblsl() -> None:
    """liblsl: warnings and errors only, and a private LSL session for this test run.

    Must run before any LSL use. The session ID keeps concurrent test runs on one machine
    (two checkouts, CI beside a developer) from resolving each other's streams; the config
    file carries it to the subprocesses the tests start (liblsl reads $LSLAPICFG).
    """
    import tempfile
    import uuid

    session = os.environ.get("RTSOURCE_TEST_LSL_SESSION") or f"rtsource-tests-{uuid.uuid4().hex[:12]}"
    os.environ["RTSOURCE_TEST_LSL_SESSION"] = session
    content = f"[log]\nlevel = -2\n[lab]\nSessionID = {session}\n"
    path = os.path.join(tempfile.gettempdir(), f"{session}.cfg")
    with open(path, "w") as f:
        f.write(content)
    os.environ["LSLAPICFG"] = path
    try:
        import pylsl

        pylsl.set_config_content(content)
    except (ImportError, NotImplementedError, AttributeError):
        pass


_quiet_liblsl()


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Forward solutions are cached in a per-session directory, never the user's."""
    path = tmp_path_factory.mktemp("rtsource-cache")
    old = os.environ.get("RTSOURCE_CACHE")
    os.environ["RTSOURCE_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("RTSOURCE_CACHE", None)
    else:
        os.environ["RTSOURCE_CACHE"] = old


@pytest.fixture(scope="session", autouse=True)
def _isolated_control_keys(tmp_path_factory):
    """Loops started by the tests keep their control keys here, never in the user's folders."""
    path = tmp_path_factory.mktemp("rtsource-control")
    old = os.environ.get("RTSOURCE_CONTROL_DIR")
    os.environ["RTSOURCE_CONTROL_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("RTSOURCE_CONTROL_DIR", None)
    else:
        os.environ["RTSOURCE_CONTROL_DIR"] = old


def make_bundle(n_chan=8, n_src=20, n_orient=3, seed=0, sfreq=500.0, ch_names=None, **overrides):
    """A small, internally consistent bundle with random numbers (for file and stream tests)."""
    from rtsource.anatomy.source_space import SourceSpace
    from rtsource.bundle import OperatorBundle

    rng = np.random.default_rng(seed)
    normals = rng.normal(size=(n_src, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    sources = SourceSpace(rng.normal(size=(n_src, 3)) * 0.05, normals, np.full(n_src, 1e-5), np.r_[np.zeros(n_src // 2), np.ones(n_src - n_src // 2)], "template", "test-sources")
    names = tuple(ch_names or (f"E{i:02d}" for i in range(n_chan)))
    kwargs = dict(
        kernel=rng.normal(size=(n_src * n_orient, n_chan)) * 1e5,
        noise_norm=rng.uniform(0.5, 2.0, n_src) * 1e5,
        n_orient=n_orient,
        method="dSPM",
        output_unit="",
        ch_names=names,
        ch_types=("eeg",) * n_chan,
        ch_units=("V",) * n_chan,
        reference="average",
        sfreq=sfreq,
        sources=sources,
        channel_positions_m=rng.normal(size=(n_chan, 3)) * 0.09,
        channel_frame="template",
        params={"snr": 3.0, "lambda2": 1 / 9, "loose": 0.2},
        provenance={"test": True},
    )
    kwargs.update(overrides)
    return OperatorBundle(**kwargs)


@pytest.fixture
def small_bundle():
    return make_bundle()
