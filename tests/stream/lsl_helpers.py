"""Real LSL outlets and consumers for the tests (loopback; nothing is mocked)."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pylsl


def unique(prefix: str) -> str:
    """A stream name no other test (or demo on this machine) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def eeg_outlet(name, ch_names, *, sfreq=500.0, unit="microvolts", types=None, source_id=None, fmt=pylsl.cf_float32):
    info = pylsl.StreamInfo(name, "EEG", len(ch_names), sfreq, fmt, source_id or name)
    chans = info.desc().append_child("channels")
    for i, ch_name in enumerate(ch_names):
        ch = chans.append_child("channel")
        ch.append_child_value("label", ch_name)
        ch.append_child_value("type", types[i] if types else "EEG")
        if unit:
            ch.append_child_value("unit", unit)
    return pylsl.StreamOutlet(info, chunk_size=0, max_buffered=360)


class Collector:
    """Pulls every sample of a stream in a background thread."""

    def __init__(self, name: str, timeout: float = 30.0):
        found = pylsl.resolve_byprop("name", name, minimum=1, timeout=timeout)
        assert found, f"stream {name!r} did not appear within {timeout} s"
        self.inlet = pylsl.StreamInlet(found[0], max_buflen=360)
        self.info = self.inlet.info(timeout=10)
        self.inlet.open_stream(timeout=10)
        self.chunks: list[np.ndarray] = []
        self.stamps: list[np.ndarray] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            data, ts = self.inlet.pull_chunk(timeout=0.1, max_samples=4096, as_numpy=True)
            if len(ts):
                self.chunks.append(np.array(data))
                self.stamps.append(np.array(ts))

    @property
    def n_samples(self) -> int:
        return sum(len(t) for t in self.stamps)

    def stop(self):
        self._stop.set()
        self.thread.join(timeout=5)

    def data(self):
        if not self.chunks:
            return np.zeros((0, self.info.channel_count())), np.zeros(0)
        return np.vstack(self.chunks), np.concatenate(self.stamps)
