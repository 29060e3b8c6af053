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


def test_deeply_nested_toml_is_refused_before_parsing(tmp_path):
    """tomllib recurses per nesting level: 200,000 brackets were a RecursionError."""
    p = tmp_path / "deep.toml"
    p.write_text("[inverse]\nsnr = " + "[" * 200000 + "]" * 200000 + "\n")
    with pytest.raises(ConfigError, match=r"nests arrays or tables 200000 levels deep; rtsource reads at most 32"):
        load_config(p)
    p.write_text("x = {a = " * 5000 + "1" + "}" * 5000 + "\n")
    with pytest.raises(ConfigError, match="levels deep"):
        load_config(p)


def test_brackets_in_strings_and_comments_do_not_count_as_nesting(tmp_path):
    from rtsource.config import _toml_depth

    deep = "[" * 100
    p = tmp_path / "ok.toml"
    p.write_text(
        f'# {deep}\n[output]\nname = "{deep}"\ntype = \'{deep}\'\nsource_id = """{deep}\n\\"{deep}"""\n'
        f"[stream]\nname = '''{deep}'''\n[bandpower]\nbands = {{alpha = [8, 12]}}\n[[roi]]\nname = \"V1\"\ncenter_mm = [1, 2, 3]\n"
    )
    s = load_config(p)
    assert s.output.name == deep and s.stream.name == deep
    assert _toml_depth(p.read_text()) == 2


def test_huge_config_file_is_refused_unread(tmp_path):
    p = tmp_path / "huge.toml"
    with open(p, "wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: nothing to read if the size is checked first
    with pytest.raises(ConfigError, match=r"is 52.4 MB; configurations are a few kB"):
        load_config(p)


@pytest.mark.parametrize(
    "doc,fragments",
    [
        ({"inverse": {"snr": 1e-300}}, ["[inverse]", "snr", "1e-300", "at least 0.01"]),
        ({"noise_cov": {"seconds": 1e308}}, ["[noise_cov]", "seconds", "at most 600 s"]),
        ({"noise_cov": {"seconds": 1e6}}, ["[noise_cov]", "seconds", "GBs"]),
        ({"simulate": {"n_noise_sources": 10**9}}, ["[simulate]", "n_noise_sources", "at most 20000"]),
        ({"stream": {"resolve_timeout": 1e308}}, ["[stream]", "resolve_timeout", "at most 86400 s"]),
        ({"performance": {"threads": -1}}, ["[performance]", "threads", "0..256"]),
        ({"inverse": {"depth": 1e308}}, ["[inverse]", "depth", "at most 10"]),
    ],
)
def test_values_that_overflowed_or_allocated_are_bounded(doc, fragments):
    with pytest.raises(ConfigError) as exc:
        settings_from_dict(doc, where="my.toml")
    for f in fragments:
        assert f in str(exc.value), f"{f!r} not in {exc.value}"


def test_a_directory_is_not_a_config(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path)
