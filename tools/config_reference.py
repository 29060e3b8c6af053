"""Write docs/config.md, the reference of every configuration key, from rtsource/config.py.

    python tools/config_reference.py [--check]

Each key's type, default, allowed values (where the check is a fixed list) and description
come from the dataclass fields of :mod:`rtsource.config`, so the page cannot drift from the
code; ``--check`` exits 1 when docs/config.md differs from what would be written.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path

from rtsource import config

OUT = Path(__file__).resolve().parents[1] / "docs" / "config.md"

INTRO = """# Configuration reference

An rtsource configuration is one TOML file; `rtsource setup`, `rtsource run`, `rtsource
demo`, `rtsource simulate` and the Python API (`rtsource.load_config`) read it. Every key
has a default, so an empty file is a valid configuration (the template head, a 64-channel
10-10 cap, dSPM, the simulator's stream). Unknown sections and keys are errors, and so is a
value of the wrong type or out of range: the message names the file, the key, the value and
what is allowed. Relative paths are relative to the config file's folder.

[`configs/demo.toml`](../configs/demo.toml) lists every key with its default;
[`configs/eeg64_amplifier.toml`](../configs/eeg64_amplifier.toml) is a starting point for a
lab. In Python, `rtsource.Settings()` holds the defaults and `rtsource.settings_from_dict`
validates a dict of sections the same way as a file.

This page is generated from `rtsource/config.py` by `python tools/config_reference.py`.
"""


def _type_name(annotation) -> str:
    if typing.get_origin(annotation) is tuple:
        (item,) = {a for a in typing.get_args(annotation) if a is not Ellipsis}
        return f"list of {_type_name(item)}" if not dataclasses.is_dataclass(item) else "array of tables"
    return {str: "string", int: "integer", float: "number", bool: "boolean", dict: "table"}.get(annotation, getattr(annotation, "__name__", str(annotation)))


def toml_value(value) -> str:
    """A default as TOML writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")  # pragma: no cover


def allowed_values(check) -> tuple | None:
    """The fixed list a ``config._one_of`` check accepts (None for other checks)."""
    if check is None or check.__code__.co_freevars != ("allowed",):
        return None
    return check.__closure__[0].cell_contents


def sections():
    """(section header, dataclass, description) for every section, in file order."""
    hints = typing.get_type_hints(config.Settings)
    for f in dataclasses.fields(config.Settings):
        if f.name == "base_dir":
            continue
        cls = hints[f.name]
        if typing.get_origin(cls) is tuple:
            (item,) = {a for a in typing.get_args(cls) if a is not Ellipsis}
            yield f"[[{f.name}]]", item, (item.__doc__ or "").strip()
        else:
            yield f"[{f.name}]", cls, (cls.__doc__ or "").strip()
            for g in dataclasses.fields(cls):
                sub = typing.get_type_hints(cls)[g.name]
                if typing.get_origin(sub) is tuple and any(dataclasses.is_dataclass(a) for a in typing.get_args(sub)):
                    (item,) = {a for a in typing.get_args(sub) if a is not Ellipsis}
                    yield f"[[{f.name}.{g.name}]]", item, (item.__doc__ or "").strip()


def _default(field):
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()


def render() -> str:
    lines = [INTRO]
    for header, cls, doc in sections():
        text = doc.split(": ", 1)[-1] if doc.startswith("[") else doc
        lines += [f"## `{header}`", "", text[:1].upper() + text[1:], ""]
        if header.startswith("[["):
            lines += ["Repeat the header once per entry; a key left out of an entry takes the default below.", ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            annotation = hints[f.name]
            if typing.get_origin(annotation) is tuple and any(dataclasses.is_dataclass(a) for a in typing.get_args(annotation)):
                default = f"{len(_default(f))} entries (see `[[{header.strip('[]')}.{f.name}]]`)"
            else:
                value = toml_value(_default(f))
                default = f"`{value}`" if len(value) <= 60 else f"`{value[:57]}...`"
            meaning = f.metadata.get("doc", "")
            allowed = allowed_values(f.metadata.get("check"))
            if allowed:
                meaning += ("; " if meaning else "") + "one of " + ", ".join(f"`{toml_value(a)}`" for a in allowed)
            lines.append(f"| `{f.name}` | {_type_name(annotation)} | {default} | {meaning.replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/config.md is not up to date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is out of date: run python tools/config_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
