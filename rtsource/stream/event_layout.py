"""Channel layouts and stream headers of ``NAME-epochs``, ``NAME-evoked`` and ``NAME-connectivity``.

The outlets themselves are opened in :mod:`rtsource.stream.outlets` (the one module that
makes outlets); this module says what a sample of each stream holds, so that the producer
(:mod:`rtsource.stream.eventstage`), the header and a consumer agree.

``NAME-epochs`` (type ``Epochs``, irregular rate, float32, one sample per accepted epoch,
stamped with the marker's time on the data stream's clock)::

    [event, index, data (n_times x n_channels, time-major) if published, features (n_features x n_channels)]

``event`` is the 1-based position of the event in the header's ``events`` list, ``index``
the 0-based count of this event's accepted epochs. ``NAME-evoked`` (type ``Evoked``, one
sample per accepted epoch, stamped like it)::

    [event, count, average (n_times x n_channels, time-major)]

``NAME-connectivity`` (type ``Connectivity``, regular at ``1 / step_s``, stamped with each
window's last sample): either every channel of
:func:`rtsource.stream.connectivity.pair_labels` (``output = "all"``: channel
``(measure * n_bands + band) * n_pairs + pair``, pairs ``i < j`` row-major over the header's
``rois``), or the strongest ``K`` edges per measure and band (``output = "strongest"``: channel
``((measure * n_bands + band) * K + rank) * 2`` holds the pair index, ``+ 1`` its value;
ranked by absolute value, rank 0 strongest).

Headers carry one ``channel`` entry per channel only up to :data:`MAX_LABELLED_CHANNELS`
channels: 68 ROIs x 5 measures x 2 bands are 22,780 channels, and their labels alone
make a 2.2 MB XML header that every consumer downloads when it connects (and LabRecorder
stores in every file). Above the limit the ``rtsource`` block describes the layout in a
few lines (``rois``, ``measures``, ``bands``, ``layout``), from which
:func:`connectivity_labels_from_header` rebuilds the labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import __version__
from .connectivity import pair_labels
from .outputs import CONNECTIVITY_SUFFIX, CONNECTIVITY_TYPE, EPOCHS_SUFFIX, EPOCHS_TYPE, EVOKED_SUFFIX, EVOKED_TYPE, append_artifacts, stream_name

#: Headers list each channel only up to this many channels (see the module docstring).
MAX_LABELLED_CHANNELS = 4096


@dataclass(frozen=True)
class EpochLayout:
    """What one ``NAME-epochs`` / ``NAME-evoked`` sample holds.

    Attributes
    ----------
    events : tuple of str
        Event names; a sample's ``event`` channel is the 1-based position here.
    channels : tuple of str
        The epoched channels (ROI names or source labels).
    tmin : float
        Time of the first epoch sample relative to the marker (s, on the sample grid).
    sfreq : float
        Sample rate of the epochs (Hz); ``n_times`` samples.
    n_times : int
    features : tuple of str
        Feature labels ``<window>:<channel>`` (feature-major).
    data : bool
        Whether ``NAME-epochs`` carries the epoch's samples.
    unit : str
    space : str
        ``roi`` or ``sources``.
    """

    events: tuple[str, ...]
    channels: tuple[str, ...]
    tmin: float
    sfreq: float
    n_times: int
    features: tuple[str, ...]
    data: bool
    unit: str = ""
    space: str = "roi"

    @property
    def n_data(self) -> int:
        return self.n_times * len(self.channels)

    @property
    def n_epoch_channels(self) -> int:
        return 2 + (self.n_data if self.data else 0) + len(self.features)

    @property
    def n_evoked_channels(self) -> int:
        return 2 + self.n_data

    def data_labels(self) -> list[str]:
        """``<channel>@<ms>`` in time-major order (ms relative to the marker, rounded to 0.1 ms)."""
        times = (self.tmin + np.arange(self.n_times) / self.sfreq) * 1e3
        return [f"{c}@{t:.1f}ms" for t in times for c in self.channels]


@dataclass(frozen=True)
class ConnectivityLayout:
    """What one ``NAME-connectivity`` sample holds (see the module docstring)."""

    rois: tuple[str, ...]
    measures: tuple[str, ...]
    bands: tuple[tuple[str, float, float], ...]
    rate_hz: float
    window_s: float
    output: str = "all"
    strongest_k: int = 0
    zscore: bool = False

    @property
    def n_pairs(self) -> int:
        return len(self.rois) * (len(self.rois) - 1) // 2

    @property
    def n_channels(self) -> int:
        blocks = len(self.measures) * len(self.bands)
        return blocks * self.n_pairs if self.output == "all" else blocks * self.strongest_k * 2

    def labels(self) -> list[str]:
        if self.output == "all":
            from .bandpower import Band
            from .connectivity import ConnectivitySpec

            spec = ConnectivitySpec(bands=tuple(Band(*b) for b in self.bands), measures=self.measures)
            return list(pair_labels(self.rois, spec))
        return [f"{m}:{b[0]}:top{r + 1}:{what}" for m in self.measures for b in self.bands for r in range(self.strongest_k) for what in ("pair", "value")]


def _pylsl():
    import pylsl

    return pylsl


def _meta(desc, output_name: str, bundle_path: str, input_stream: str, items, artifacts=()) -> None:
    meta = desc.append_child("rtsource")
    for key, value in (("version", __version__), ("output_name", output_name), ("bundle", bundle_path), ("input_stream", input_stream), *items):
        meta.append_child_value(key, str(value))
    append_artifacts(meta, artifacts)  # what artifact correction the data went through


def _channels(desc, labels, kind: str, unit: str) -> None:
    chans = desc.append_child("channels")
    for label in labels:
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("type", kind)
        ch.append_child_value("unit", unit)


def _epoch_meta(layout: EpochLayout):
    return (
        ("events", ",".join(layout.events)),
        ("channels", ",".join(layout.channels)),
        ("space", layout.space),
        ("tmin_s", repr(layout.tmin)),
        ("sfreq", repr(layout.sfreq)),
        ("n_times", layout.n_times),
        ("unit", layout.unit),
        ("timestamps", "the marker's time on the input stream's clock"),
    )


def make_epochs_info(layout: EpochLayout, *, output_name: str, source_id: str, bundle_path: str = "", input_stream: str = "", artifacts=()):
    """``NAME-epochs`` header: ``[event, index, data?, features]`` per sample (module docstring)."""
    pylsl = _pylsl()
    info = pylsl.StreamInfo(stream_name(output_name, EPOCHS_SUFFIX), EPOCHS_TYPE, layout.n_epoch_channels, pylsl.IRREGULAR_RATE, pylsl.cf_float32, source_id + EPOCHS_SUFFIX)
    desc = info.desc()
    if layout.n_epoch_channels <= MAX_LABELLED_CHANNELS:
        labels = ["event", "index"] + (layout.data_labels() if layout.data else []) + list(layout.features)
        _channels(desc, labels, "epoch", layout.unit or "dimensionless")
    _meta(desc, output_name, bundle_path, input_stream, (
        *_epoch_meta(layout),
        ("data", "true" if layout.data else "false"),
        ("features", ",".join(layout.features)),
        ("layout", "event (1-based in events), index, then data[time][channel] if data, then features[window][channel]"),
    ), artifacts)  # fmt: skip
    return info


def make_evoked_info(layout: EpochLayout, *, output_name: str, source_id: str, bundle_path: str = "", input_stream: str = "", artifacts=(), average: str = "running"):
    """``NAME-evoked`` header: ``[event, count, average]`` per sample (module docstring)."""
    pylsl = _pylsl()
    info = pylsl.StreamInfo(stream_name(output_name, EVOKED_SUFFIX), EVOKED_TYPE, layout.n_evoked_channels, pylsl.IRREGULAR_RATE, pylsl.cf_float32, source_id + EVOKED_SUFFIX)
    desc = info.desc()
    if layout.n_evoked_channels <= MAX_LABELLED_CHANNELS:
        _channels(desc, ["event", "count"] + layout.data_labels(), "evoked", layout.unit or "dimensionless")
    _meta(desc, output_name, bundle_path, input_stream, (
        *_epoch_meta(layout),
        ("average", average),
        ("layout", "event (1-based in events), count (epochs averaged), then average[time][channel]"),
    ), artifacts)  # fmt: skip
    return info


def make_connectivity_info(layout: ConnectivityLayout, *, output_name: str, source_id: str, bundle_path: str = "", input_stream: str = "", artifacts=()):
    """``NAME-connectivity`` header (module docstring); per-channel entries up to :data:`MAX_LABELLED_CHANNELS`."""
    pylsl = _pylsl()
    info = pylsl.StreamInfo(stream_name(output_name, CONNECTIVITY_SUFFIX), CONNECTIVITY_TYPE, layout.n_channels, layout.rate_hz, pylsl.cf_float32, source_id + CONNECTIVITY_SUFFIX)
    desc = info.desc()
    if layout.n_channels <= MAX_LABELLED_CHANNELS:
        _channels(desc, layout.labels(), "connectivity", "z" if layout.zscore else "dimensionless")
    rule = (
        "(measure * n_bands + band) * n_pairs + pair; pairs i < j row-major over rois"
        if layout.output == "all"
        else "((measure * n_bands + band) * strongest_k + rank) * 2 + (0: pair index, 1: value); ranked by |value|; pairs i < j row-major over rois"
    )
    _meta(desc, output_name, bundle_path, input_stream, (
        ("rois", ",".join(layout.rois)),
        ("measures", ",".join(layout.measures)),
        ("bands", ",".join(f"{n}:{lo:g}-{hi:g}" for n, lo, hi in layout.bands)),
        ("n_pairs", layout.n_pairs),
        ("output", layout.output),
        ("strongest_k", layout.strongest_k),
        ("window_s", repr(layout.window_s)),
        ("zscore", "true" if layout.zscore else "false"),
        ("layout", rule),
        ("timestamps", "each window's last input sample (input stream's clock)"),
    ), artifacts)  # fmt: skip
    return info


def connectivity_layout_from_header(meta: dict) -> ConnectivityLayout:
    """The layout from a ``NAME-connectivity`` header's ``rtsource`` block (a dict of its values)."""
    bands = []
    for item in filter(None, meta.get("bands", "").split(",")):
        name, _, edges = item.partition(":")
        lo, _, hi = edges.partition("-")
        bands.append((name, float(lo), float(hi)))
    return ConnectivityLayout(
        rois=tuple(filter(None, meta.get("rois", "").split(","))),
        measures=tuple(filter(None, meta.get("measures", "").split(","))),
        bands=tuple(bands),
        rate_hz=0.0,
        window_s=float(meta.get("window_s", 0) or 0),
        output=meta.get("output", "all"),
        strongest_k=int(meta.get("strongest_k", 0) or 0),
        zscore=meta.get("zscore") == "true",
    )


def connectivity_labels_from_header(meta: dict) -> list[str]:
    """Channel labels of ``NAME-connectivity`` rebuilt from its compact header (any size)."""
    return connectivity_layout_from_header(meta).labels()
