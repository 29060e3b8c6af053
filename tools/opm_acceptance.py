"""Acceptance of issue 20's OPM part: HFC on the Kernel Flux helmet with a moving (worn) array.

    python tools/opm_acceptance.py [--seconds 10] [--json out.json]

Prints the interference attenuation of the HFC projector (order 1 and 2, with and without
sensor calibration errors) and the localisation error with HFC against the noise-free case
(rtsource.bench.opm.evaluate_opm).
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    from rtsource.bench.opm import evaluate_opm

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--json", default="")
    a = p.parse_args(argv)
    res = evaluate_opm(seconds=a.seconds)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0 if all(res["acceptance"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
