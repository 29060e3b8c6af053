"""Matching channel names: the one rule both the offline build and the stream use.

Streams and files spell electrode names in many ways. Matching is case-insensitive, knows
the old 10-20 names that the 10-10 system renamed (T3/T7, T4/T8, T5/P7, T6/P8; Oostenveld &
Praamstra 2001, Clin Neurophysiol 112:713) and takes a user's alias map on top.

The names rtsource gives its own output channels (ROIs, bands) follow one rule too
(:func:`check_roi_name`): LSL channel labels end up in XDF files, display legends and other
programs' column names, so they are kept to a safe ASCII subset.

This module is on the ground floor (it imports only :mod:`rtsource.errors`), so that
``stream/`` can match a stream's channels to a bundle's without importing the offline side.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

from .errors import ChannelError, ConfigError

#: Old 10-20 names and their 10-10 successors (both directions are matched).
RENAMED_10_20 = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}


def canonical_label(label: str, aliases: Mapping[str, str] | None = None) -> str:
    """The key a label is matched by: alias applied, old 10-20 names renamed, case folded."""
    text = label.strip()
    if aliases:
        lowered = {k.strip().casefold(): v for k, v in aliases.items()}
        text = lowered.get(text.casefold(), text).strip()
    for old, new in RENAMED_10_20.items():
        if text.casefold() == old.casefold():
            text = new
    return text.casefold()


def match_labels(
    wanted: Iterable[str],
    available: Iterable[str],
    *,
    aliases: Mapping[str, str] | None = None,
    what: str = "the available channels",
) -> list[int]:
    """Index into ``available`` for each name in ``wanted`` (see module docstring for the rules).

    Raises
    ------
    ChannelError
        If names are missing or match ambiguously, listing them and what was available.
    """
    wanted = list(wanted)
    available = list(available)
    lookup: dict[str, int] = {}
    clashes: dict[str, list[str]] = {}
    for i, name in enumerate(available):
        key = canonical_label(name, aliases)
        if key in lookup:
            clashes.setdefault(key, [available[lookup[key]]]).append(name)
        lookup.setdefault(key, i)
    missing = [w for w in wanted if canonical_label(w, aliases) not in lookup]
    if missing:
        shown = ", ".join(available[:12]) + (", ..." if len(available) > 12 else "")
        raise ChannelError(
            f"{len(missing)} channel(s) not found in {what}: {', '.join(missing)} "
            f"({len(available)} available: {shown}); check the names, or pass an alias map "
            f"(e.g. {{'{missing[0]}': 'NAME_IN_{what.split()[0].upper()}'}})"
        )
    keys = [canonical_label(w, aliases) for w in wanted]
    ambiguous = [clashes[k] for k in keys if k in clashes]
    if ambiguous:
        raise ChannelError(f"channel names match more than one entry in {what} (case-insensitive): {ambiguous}")
    idx = [lookup[k] for k in keys]
    if len(set(idx)) != len(idx):
        dup = [w for w, i in zip(wanted, idx) if idx.count(i) > 1]
        raise ChannelError(f"channels {dup} all map onto the same entry of {what}")
    return idx


__all__ = ["RENAMED_10_20", "canonical_label", "match_labels"]


# ---- labels of rtsource's own output channels -------------------------------------------

# ROI names become LSL channel labels (``V1``, ``V1_alpha``): ASCII, no spaces or commas.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


def check_roi_name(name: str, what: str = "ROI name") -> str:
    """Return ``name`` if it can be an LSL channel label, else raise ConfigError."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(
            f"{what} {name!r} is not usable as a channel label; use 1-64 ASCII letters, digits "
            "and _ . + - (starting with a letter or digit), e.g. 'V1_left'"
        )
    return name
