"""Acceptance of issue 20's head tracking: a Vectorview-306 head moving 10 mm over 30 s.

    python tools/headmotion_acceptance.py [--seconds 30] [--update-mm 2] [--json out.json]

Prints the tracked-pose errors against the simulated pose, and the localisation error of a
fixed cortical source per 1 s window: head still, head moving with the operator fixed,
head moving with the operator following (rtsource.bench.headmotion.evaluate_headmotion).
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    from rtsource.bench.headmotion import evaluate_headmotion

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--update-mm", type=float, default=2.0)
    p.add_argument("--spacing", default="ico4")
    p.add_argument("--method", default="sLORETA")
    p.add_argument("--json", default="")
    a = p.parse_args(argv)
    res = evaluate_headmotion(duration_s=a.seconds, spacing=a.spacing, update_mm=a.update_mm, method=a.method)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    ok = res["acceptance"]["tracking_within_1mm_1deg"] and res["acceptance"]["following_within_3mm"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
