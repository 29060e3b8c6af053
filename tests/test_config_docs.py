"""Every configuration key is documented (docs/config.md) and listed with its default
(configs/demo.toml), and the demo configuration is exactly the defaults."""

from __future__ import annotations

import dataclasses
import re
import sys
import typing
from pathlib import Path

from rtsource.config import Settings, load_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.toml"
CONFIG_MD = ROOT / "docs" / "config.md"


def _item(annotation):
    """The dataclass of a ``tuple[X, ...]`` annotation (None for other annotations)."""
    if typing.get_origin(annotation) is tuple:
        (item,) = {a for a in typing.get_args(annotation) if a is not Ellipsis}
        return item if dataclasses.is_dataclass(item) else None
    return None


def all_keys() -> dict[str, set[str]]:
    """Section path ('inverse', 'roi', 'simulate.sources') -> the keys its dataclass defines."""
    out = {}
    hints = typing.get_type_hints(Settings)
    for f in dataclasses.fields(Settings):
        if f.name == "base_dir":
            continue
        cls = _item(hints[f.name]) or hints[f.name]
        sub = typing.get_type_hints(cls)
        out[f.name] = set()
        for g in dataclasses.fields(cls):
            nested = _item(sub[g.name])
            if nested is not None:
                out[f"{f.name}.{g.name}"] = {h.name for h in dataclasses.fields(nested)}
            out[f.name].add(g.name)
    return out


def test_the_demo_config_is_the_defaults():
    loaded = load_config(DEMO)
    assert dataclasses.replace(loaded, base_dir=".") == Settings()


def _uncomment_roi_example(text: str) -> str:
    """The demo file with its commented ``[[roi]]`` example switched on."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("# [[roi]]"):
            inside = True
        elif inside and not line.startswith("# "):
            inside = False
        lines.append(line[2:] if inside else line)
    return "\n".join(lines)


def test_the_demo_config_lists_every_key():
    data = tomllib.loads(_uncomment_roi_example(DEMO.read_text(encoding="utf-8")))
    for section, keys in all_keys().items():
        top, _, nested = section.partition(".")
        tables = data[top] if isinstance(data[top], list) else [data[top]]
        if nested:
            tables = [t for table in tables for t in table[nested]]
        for table in tables:
            missing = keys - set(table)
            assert not missing, f"configs/demo.toml [{section}] lacks {sorted(missing)}"


def test_the_demo_configs_roi_example_is_valid():
    from rtsource.config import settings_from_dict

    data = tomllib.loads(_uncomment_roi_example(DEMO.read_text(encoding="utf-8")))
    assert settings_from_dict(data).roi[0].name == "V1r"


def test_config_reference_documents_every_key():
    text = CONFIG_MD.read_text(encoding="utf-8")
    headers = re.split(r"^## `\[+([a-z_.]+)\]+`$", text, flags=re.M)
    documented = {headers[i]: set(re.findall(r"^\| `([a-z_0-9]+)` \|", headers[i + 1], flags=re.M)) for i in range(1, len(headers), 2)}
    for section, keys in all_keys().items():
        assert section in documented, f"docs/config.md has no section for [{section}]"
        assert keys <= documented[section], f"docs/config.md [{section}] lacks {sorted(keys - documented[section])}"


def test_config_reference_is_generated_from_the_code():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import config_reference
    finally:
        sys.path.pop(0)
    assert config_reference.render() == CONFIG_MD.read_text(encoding="utf-8"), "docs/config.md is stale: run python tools/config_reference.py"
