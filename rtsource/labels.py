"""Names that become channel labels on rtsource's output streams (ROIs, bands).

LSL channel labels end up in XDF files, display legends and other programs' column names,
so they are kept to a safe ASCII subset: no spaces, commas or quotes.
"""

from __future__ import annotations

import re

from .errors import ConfigError

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
