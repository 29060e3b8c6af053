"""The package's documented exceptions.

Every error rtsource raises on bad input is one of these. Each message names the argument,
the value it got and the fix, so a user can act on it without reading the source. They
subclass ``ValueError`` (or ``RuntimeError`` for run-time stream trouble) so that callers
that only know the builtins still catch them.
"""

from __future__ import annotations


class RtsourceError(Exception):
    """Base class of all rtsource errors."""


class ConfigError(RtsourceError, ValueError):
    """A configuration file or setting is malformed or out of range."""


class FrameError(RtsourceError, ValueError):
    """Coordinates in two different frames were combined without a transform."""


class UnitError(RtsourceError, ValueError):
    """A unit is unknown, missing, or inconsistent with the data."""


class GeometryError(RtsourceError, ValueError):
    """A mesh or point set is malformed (open, inverted, not nested, far off)."""


class ForwardError(RtsourceError, ValueError):
    """The forward model cannot be computed for these sources or sensors."""


class InverseError(RtsourceError, ValueError):
    """The inverse operator cannot be built from these inputs."""


class ChannelError(RtsourceError, ValueError):
    """Channels of a stream or file do not match the ones an operator needs."""


class BundleError(RtsourceError, ValueError):
    """An operator bundle file is unreadable, corrupt or incompatible."""


class BundleChecksumError(BundleError):
    """The bundle's content does not match its recorded checksum."""


class BundleSchemaError(BundleError):
    """The bundle's layout or schema version is not one this rtsource understands."""


class StreamError(RtsourceError, RuntimeError):
    """An LSL stream cannot be found, opened, or used as requested."""
