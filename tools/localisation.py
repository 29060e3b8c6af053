"""Localisation error of single simulated dipoles on the template (see rtsource.evaluation).

    python tools/localisation.py --n 100 --snr-db 10 --method dSPM sLORETA MNE

Prints the error distribution per method as a table and JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging

from rtsource.config import Settings, load_config
from rtsource.evaluation import single_dipole_sweep


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", help="TOML configuration (default: built-in)")
    ap.add_argument("--n", type=int, default=100, help="number of random dipoles")
    ap.add_argument("--snr-db", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", nargs="+", default=["dSPM", "sLORETA", "MNE"])
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    base = load_config(args.config) if args.config else Settings()
    rows = []
    for method in args.method:
        s = dataclasses.replace(base, inverse=dataclasses.replace(base.inverse, method=method))
        rows.append(single_dipole_sweep(s, n_dipoles=args.n, snr_db=args.snr_db, seed=args.seed).summary())
    keys = list(rows[0])
    print(" | ".join(f"{k:>11}" for k in keys))
    for r in rows:
        print(" | ".join(f"{str(r[k]):>11}" for k in keys))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
