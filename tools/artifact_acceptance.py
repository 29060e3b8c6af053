"""Issue 16's acceptance numbers for artifact correction, on the simulator (a long run).

    python tools/artifact_acceptance.py --json acceptance.json
    python tools/artifact_acceptance.py --quick --variants "none" "projection + asr cutoff 20"

ROI band power (occipital 8-12 Hz; frontal 4-8 and 15-25 Hz; temporal 15-25 Hz) of the
corrected source stream against the artifact-free truth during blink and muscle episodes
(r, with the uncorrected r), localisation of the simulated sources during blinks against
clean data, and the change on clean data, for each variant (see
:mod:`rtsource.bench.artifact_acceptance`). It takes 10-30 minutes on a busy 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> None:
    from rtsource.bench.artifact_acceptance import run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="30 s calibration + 20 s test on a coarser simulator cortex")
    ap.add_argument("--method", default="dSPM", choices=["MNE", "dSPM", "sLORETA", "eLORETA"])
    ap.add_argument("--variants", nargs="+", help='e.g. "none" "asr cutoff 20" "projection" "projection with 6 muscle + asr cutoff 10"')
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    results = run(quick=args.quick, method=args.method, progress=lambda line: print(line, flush=True), variants=args.variants)
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
