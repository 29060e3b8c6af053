"""Hidden helper processes of the benchmarks: ``python -m rtsource.bench --produce | --consume | --relay ...``."""

from __future__ import annotations

import sys

from .processes import consume_quietly, produce, relay

if sys.argv[1] == "--produce":
    produce(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), *sys.argv[7:8])
elif sys.argv[1] == "--consume":
    consume_quietly(sys.argv[2], float(sys.argv[3]))
elif sys.argv[1] == "--relay":
    relay(sys.argv[2], sys.argv[3], float(sys.argv[4]), *[int(a) for a in sys.argv[5:6]])
elif sys.argv[1] in ("--mne-lsl", "--window"):
    from .peers import mne_lsl_loop, window_loop

    (mne_lsl_loop if sys.argv[1] == "--mne-lsl" else window_loop)(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
elif sys.argv[1] == "--capacity-loop":
    from .capacity import capacity_loop

    capacity_loop(sys.argv[2])
