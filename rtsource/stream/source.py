"""What the loop reads from: the input-source protocol.

The loop does not care whether samples come from LSL (:class:`rtsource.stream.inlet.Inlet`)
or another transport (a FieldTrip buffer, a file replayed in place); anything with this
shape can feed it. Sources must never drop samples silently: a sample they cannot deliver
is a gap in the timestamps, which the loop detects and reports.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .channels import StreamDescription


class InputSource(Protocol):
    """An open-able, pull-based source of multichannel samples.

    Attributes
    ----------
    description : StreamDescription
        Name, rate, channel labels / types / units (available before :meth:`open`).
    buffer : ndarray, shape (max_chunk, n_channels)
        Where :meth:`pull` writes samples (rows ``[:n]``).
    is_open : bool
    """

    description: StreamDescription
    buffer: np.ndarray
    is_open: bool

    def open(self) -> None:
        """Start receiving data; samples produced before this need not be delivered."""

    def pull(self, timeout: float) -> np.ndarray:
        """Wait up to ``timeout`` s for at least one sample; return the timestamps (n,) of
        the samples now in ``buffer[:n]`` (n may be 0), in the producer's clock."""

    def refresh_description(self, timeout: float = 2.0) -> StreamDescription:
        """Re-read the header after the source came back (optional; the loop checks with hasattr)."""

    def time_correction(self, timeout: float = 2.0) -> float:
        """Offset (s) to add to timestamps to get this machine's LSL clock."""

    def close(self) -> None:
        """Release the source; idempotent."""
