"""The loop's door to the offline side: without an injected OperatorRebuilder a running loop
cannot drop a channel, and says so (real loop, real LSL)."""

from __future__ import annotations

import pytest

from rtsource.errors import StreamError
from rtsource.stream.inlet import StreamSelector
from rtsource.stream.loop import LoopOptions, StreamLoop

from ..conftest import make_bundle
from .lsl_helpers import eeg_outlet, unique


def test_loop_without_rebuilder_refuses_to_drop_a_channel():
    bundle = make_bundle(n_chan=8, n_src=20)
    in_name, out_name = unique("norebuild-eeg"), unique("norebuild-src")
    outlet = eeg_outlet(in_name, bundle.ch_names, sfreq=bundle.sfreq, source_id=in_name)
    loop = StreamLoop(bundle, LoopOptions(selector=StreamSelector(in_name), output_name=out_name, resolve_timeout=20, telemetry=False))
    try:
        loop.connect()
        assert loop.features is not None and loop.features.hot_swap is None  # nothing to warm up
        with pytest.raises(StreamError, match="rebuilder"):
            loop.mark_bad("E03")
        assert loop.stats.operator_swaps == 0 and not loop.stats.hot_swap_ready
    finally:
        loop.close()
        del outlet
