"""Optional packages a reader needs, and the error that says how to install them."""

from __future__ import annotations

import importlib
import importlib.util

from ..errors import RtsourceError


class MissingDependency(RtsourceError, ImportError):
    """A reader needs an optional package that is not installed."""


def need(module: str, extra: str, what: str):
    """Import ``module`` or raise :class:`MissingDependency` naming the ``rtsource[extra]`` to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(f"reading {what} needs the {module!r} package; install it with `pip install rtsource[{extra}]` (or `pip install {module}`)") from None


def has(module: str) -> bool:
    """Whether ``module`` is installed (without importing it)."""
    return importlib.util.find_spec(module) is not None
