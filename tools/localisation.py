"""Localisation error of single simulated dipoles on the template (see rtsource.evaluation).

    python tools/localisation.py --n 100 --snr-db 10                 # every method
    python tools/localisation.py --method dSPM eLORETA LCMV-ungi-maxpower

Every method sees the same simulated segments (LCMV's data covariance is estimated from
each segment, dipole included). Prints the error distribution per method as a table and
JSON. Method labels: MNE, dSPM, sLORETA, eLORETA and the LCMV variants of
``rtsource.evaluation.DEFAULT_METHODS`` (``--list`` shows them).
"""

from __future__ import annotations

import argparse
import json
import logging
import time

from rtsource.config import Settings, load_config
from rtsource.evaluation import DEFAULT_METHODS, localisation_sweep, method_spec


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", help="TOML configuration (default: built-in)")
    ap.add_argument("--n", type=int, default=100, help="number of random dipoles")
    ap.add_argument("--snr-db", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", nargs="+", default=None, help="method labels (default: all)")
    ap.add_argument("--list", action="store_true", help="list the method labels and exit")
    args = ap.parse_args(argv)
    if args.list:
        for spec in DEFAULT_METHODS:
            print(f"{spec.label:>26}  {spec.method} {dict(spec.params)}")
        return
    logging.basicConfig(level=logging.ERROR)
    base = load_config(args.config) if args.config else Settings()
    specs = DEFAULT_METHODS if args.method is None else [method_spec(m) for m in args.method]
    t0 = time.perf_counter()
    results = localisation_sweep(base, specs, n_dipoles=args.n, snr_db=args.snr_db, seed=args.seed)
    rows = [r.summary() for r in results.values()]
    keys = list(rows[0])
    width = max(11, max(len(r["method"]) for r in rows))
    print(" | ".join(f"{k:>{width if k == 'method' else 11}}" for k in keys))
    for r in rows:
        print(" | ".join(f"{str(r[k]):>{width if k == 'method' else 11}}" for k in keys))
    print(json.dumps(rows, indent=1))
    print(f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
