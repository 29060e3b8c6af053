"""The simulator's artifacts: amplitude, timing, topography, switches, and the ground truth."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rtsource.config import Settings, load_config
from rtsource.errors import ConfigError
from rtsource.simulation_artifacts import KINDS
from rtsource.simulator import SignalGenerator, simulated_channels


def _gen(kinds, seed=3, **scales):
    s = Settings()
    sim = dataclasses.replace(s.simulate, artifacts=tuple(kinds), seed=seed, n_noise_sources=50, **scales)
    names, array = simulated_channels(s)
    return SignalGenerator(sim, names, array), list(names)


@pytest.fixture(scope="module")
def all_kinds():
    g, names = _gen(KINDS)
    blocks = [g.next_block(500) for _ in range(60)]
    return g, names, blocks


def _cat(blocks, attr):
    return np.vstack([getattr(b, attr) for b in blocks])


def test_ground_truth_is_the_artifact_free_signal(all_kinds):
    g, names, blocks = all_kinds
    plain, _ = _gen(())
    clean = np.vstack([plain.next_block(500).clean_v for _ in range(60)])
    np.testing.assert_array_equal(_cat(blocks, "clean_v"), clean)  # artifacts change nothing else
    assert np.abs(_cat(blocks, "data_v") - clean).max() > 50e-6
    b = plain.next_block(10)
    np.testing.assert_array_equal(b.data_v, b.clean_v)  # artifacts off: data is the truth


def test_blinks_are_frontal_and_timed_like_blinks(all_kinds):
    g, names, blocks = all_kinds
    art = _cat(blocks, "data_v") - _cat(blocks, "clean_v")
    ev = g.artifacts.events["blinks"]
    starts = np.array([e[0] for e in ev if e[0] < 30000]) / 500.0
    assert 5 <= len(starts) <= 20
    assert np.all((np.diff(starts) >= 3.0) & (np.diff(starts) <= 6.0))
    assert all(0.2 <= e[1] / 500 <= 0.4 for e in ev)
    pattern = g.artifacts._blink_pattern * 1e6
    fp = [names.index(c) for c in ("Fp1", "Fp2")]
    assert 100 <= np.abs(pattern[fp]).max() <= 200
    for c in ("Cz", "Pz", "O1", "T7"):
        assert abs(pattern[names.index(c)]) < 0.5 * np.abs(pattern[fp]).max()
    active = _cat(blocks, "artifact_active")[:, KINDS.index("blinks")]
    assert 0.03 < active.mean() < 0.15
    assert np.abs(art[active][:, fp]).max() > 100e-6


def test_saccades_are_opposite_at_f7_f8(all_kinds):
    g, names, _ = all_kinds
    p = g.artifacts._saccade_pattern
    assert p[names.index("F7")] * p[names.index("F8")] < 0
    assert np.abs(p).max() == pytest.approx(40e-6)


def test_emg_is_high_frequency_and_temporal():
    g, names = _gen(("emg",))
    blocks = [g.next_block(500) for _ in range(40)]
    art = _cat(blocks, "data_v") - _cat(blocks, "clean_v")
    on = _cat(blocks, "artifact_active")[:, KINDS.index("emg")]
    assert on.any() and not on.all()
    rms = art[on].std(axis=0)
    assert rms[[names.index(c) for c in ("FT7", "FT8", "T7", "T8", "F7", "F8")]].max() > 3 * rms[names.index("Pz")]
    spec = np.abs(np.fft.rfft(art[on], axis=0)) ** 2
    f = np.fft.rfftfreq(int(on.sum()), 1 / 500)
    assert spec[f > 20].sum() > 0.95 * spec.sum()
    np.testing.assert_array_equal(art[~on], 0.0)


def test_heartbeat_rate_and_pops_and_drifts():
    g, names = _gen(("ecg", "pops", "drifts"))
    blocks = [g.next_block(500) for _ in range(120)]
    beats = np.array([e[0] for e in g.artifacts.events["ecg"] if e[0] < 60000])
    rate = 60.0 / np.median(np.diff(beats) / 500)
    assert 57 <= rate <= 84
    active = _cat(blocks, "artifact_active")
    assert active[:, KINDS.index("drifts")].all() and not active[:, KINDS.index("blinks")].any()
    pops = [e for e in g.artifacts.events["pops"] if e[0] + e[1] < 60000]
    art = _cat(blocks, "data_v") - _cat(blocks, "clean_v")
    for s, _, ch in pops:
        jump = art[s, int(ch)] - art[s - 1, int(ch)]
        assert jump == pytest.approx(300e-6, rel=0.05)


def test_chunk_size_does_not_change_the_artifacts():
    a, _ = _gen(KINDS)
    b, _ = _gen(KINDS)
    xa = np.vstack([(lambda k: k.data_v - k.clean_v)(a.next_block(10)) for _ in range(2000)])
    xb = np.vstack([(lambda k: k.data_v - k.clean_v)(b.next_block(37)) for _ in range(541)])[:20000]
    np.testing.assert_allclose(xa, xb, atol=1e-18)


def test_scale_keys_scale(all_kinds):
    g, names, _ = all_kinds
    g2, _ = _gen(KINDS, blink_uv=75.0, emg_uv=60.0)
    np.testing.assert_allclose(g2.artifacts._blink_pattern, 0.5 * g.artifacts._blink_pattern)
    np.testing.assert_allclose(g2.artifacts._emg_gain, 2 * g.artifacts._emg_gain)


def test_config_and_cli(tmp_path):
    cfg = tmp_path / "sim.toml"
    cfg.write_text('[simulate]\nartifacts = ["blinks", "emg"]\nblink_uv = 120.0\n')
    s = load_config(cfg)
    assert s.simulate.artifacts == ("blinks", "emg") and s.simulate.blink_uv == 120.0
    cfg.write_text('[simulate]\nartifacts = ["blink"]\n')
    with pytest.raises(ConfigError, match="artifacts"):
        load_config(cfg)
    from rtsource.cli import _with_options, build_parser

    args = build_parser().parse_args(["simulate", "--artifacts", "blinks,ecg"])
    assert _with_options(Settings(), args).simulate.artifacts == ("blinks", "ecg")
    args = build_parser().parse_args(["simulate", "--artifacts", "none"])
    assert _with_options(s, args).simulate.artifacts == ()
    args = build_parser().parse_args(["simulate", "--artifacts", "blinks,sneezes"])
    with pytest.raises(ConfigError, match="--artifacts"):
        _with_options(Settings(), args)
    bad = dataclasses.replace(Settings().simulate, artifacts=("sneezes",), n_noise_sources=0)
    with pytest.raises(ConfigError, match="sneezes"):
        SignalGenerator(bad, *simulated_channels(Settings()))


def test_demo_config_lists_the_keys():
    from pathlib import Path

    s = load_config(Path(__file__).parents[2] / "configs" / "demo.toml")
    assert s.simulate.artifacts == () and s.simulate.blink_uv == 150.0
