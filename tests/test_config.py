"""TOML configuration loading and validation (rtsource.config)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtsource.config import Settings, load_config, settings_from_dict, settings_to_dict
from rtsource.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_are_valid():
    s = settings_from_dict({})
    assert s == Settings(base_dir=".")
    assert s.inverse.method == "dSPM" and s.inverse.snr == 3.0 and len(s.sensors.channels) == 64


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    s = load_config(path)
    assert Path(s.base_dir) == path.parent


def test_values_are_converted_and_frozen(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[inverse]\nmethod = "sLORETA"\nsnr = 2\n[sensors]\nchannels = ["Cz", "Pz", "Oz", "Fz"]\nreference = "Cz"\n')
    s = load_config(p)
    assert s.inverse.snr == 2.0 and isinstance(s.inverse.snr, float)
    assert s.sensors.channels == ("Cz", "Pz", "Oz", "Fz")
    with pytest.raises(Exception):
        s.inverse.snr = 5.0  # frozen
    assert settings_to_dict(s)["inverse"]["method"] == "sLORETA"


@pytest.mark.parametrize(
    "doc,fragments",
    [
        ({"inverse": {"snr": -1.0}}, ["[inverse]", "snr", "-1.0", "> 0"]),
        ({"inverse": {"snrr": 3}}, ["unknown key", "'snrr'", "snr"]),
        ({"invers": {}}, ["unknown section", "'invers'", "inverse"]),
        ({"inverse": {"method": "beamformer"}}, ["method", "'beamformer'", "'LCMV'"]),
        ({"inverse": {"loose": 1.5}}, ["loose", "between 0 and 1"]),
        ({"inverse": {"fixed": "yes"}}, ["fixed", "true or false"]),
        ({"inverse": {"snr": float("nan")}}, ["snr", "finite"]),
        ({"sensors": {"reference": "XX"}}, ["reference", "'XX'"]),
        ({"sensors": {"channels": ["Cz", "cz", "Pz"]}}, ["channels", "repeat"]),
        ({"forward": {"relative_radii": [0.9, 0.8, 1.0], "conductivities": [0.3, 0.1, 0.3]}}, ["relative_radii", "increase"]),
        ({"forward": {"relative_radii": [0.9, 1.0], "conductivities": [0.3, 0.1, 0.3]}}, ["same length"]),
        ({"noise_cov": {"source": "file"}}, ["path"]),
        ({"stream": {"assume_unit": "furlong"}}, ["assume_unit", "furlong"]),
        ({"simulate": {"sources": [{"position_mm": [1, 2]}]}}, ["position_mm", "3 numbers"]),
        ({"simulate": {"sources": [{"frequency": 10}]}}, ["unknown key", "'frequency'"]),
        ({"inverse": 3}, ["[inverse]", "table"]),
        ({"simulate": {"relative_radii": [], "conductivities": []}}, ["[simulate]", "1 to 6 shells"]),
        ({"simulate": {"sfreq": 1e308}}, ["sfreq", "100000"]),
        ({"stream": {"sfreq": -5.0}}, ["sfreq"]),
        ({"stream": {"max_chunk": 0}}, ["max_chunk", "1..65536"]),
        ({"sensors": {"channels": []}}, ["channels", "at least 3"]),
    ],
)
def test_bad_values_are_named(doc, fragments):
    with pytest.raises(ConfigError) as exc:
        settings_from_dict(doc, where="my.toml")
    msg = str(exc.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[inverse\nsnr = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(binary)
