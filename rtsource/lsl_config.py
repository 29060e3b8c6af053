"""liblsl's configuration: its log level, without losing the user's own settings.

liblsl reads a config file named by ``$LSLAPICFG`` (session ID, network scope, known peers),
but ``pylsl.set_config_content`` replaces that file entirely. Every entry point that quiets
liblsl's INFO lines goes through :func:`configure_liblsl`, which keeps the user's file and
only sets ``[log] level``: a lab that isolates its streams with a ``SessionID`` keeps that
isolation, and so do concurrent test runs.
"""

from __future__ import annotations

import configparser
import os


def liblsl_config_content(log_level: int = -2) -> str:
    """The config text: ``$LSLAPICFG``'s sections (if readable) with ``[log] level`` set."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # liblsl's keys are case-sensitive (SessionID)
    path = os.environ.get("LSLAPICFG")
    if path:
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError):
            parser = configparser.ConfigParser(interpolation=None)  # liblsl would ignore it too
            parser.optionxform = str
    if not parser.has_section("log"):
        parser.add_section("log")
    parser.set("log", "level", str(int(log_level)))
    return "".join(
        f"[{section}]\n" + "".join(f"{key} = {value}\n" for key, value in parser.items(section)) for section in parser.sections()
    )


def configure_liblsl(log_level: int = -2) -> None:
    """Apply :func:`liblsl_config_content` (before any other LSL call; a no-op without pylsl)."""
    try:
        import pylsl

        pylsl.set_config_content(liblsl_config_content(log_level))
    except (ImportError, NotImplementedError, AttributeError):
        pass
