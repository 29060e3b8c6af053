"""Coregistration accuracy on cases with known transforms, read from BIDS and ASA files.

    python tools/coreg_accuracy.py [--draws 20] [--noise-rms-mm 2] [--cap 64]

For each draw: the template's standard electrodes, fiducials and 100 head-shape points
(5 % of them outliers) moved by a random rigid transform (up to 30 deg, 30 mm), with Gaussian
noise of the given RMS on every point, written as BIDS and as ASA .elc, read back with
``run_coreg``. Prints the electrode errors after coregistration (projected positions vs the
true ones) and of the transform alone (TRE), with head-shape points and with electrodes and
fiducials only (see :mod:`rtsource.coreg.cases`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rtsource.coreg.cases import simulate_case, solve_case, write_bids, write_elc  # noqa: E402
from rtsource.sensors.montage import CAP_64  # noqa: E402


def evaluate(draws: int, noise_rms_mm: float, n_headshape: int, fmt: str, method: str, tmp: Path) -> dict[str, np.ndarray]:
    final, tre = [], []
    for seed in range(draws):
        case = simulate_case(seed, CAP_64, noise_rms_mm=noise_rms_mm, n_headshape=n_headshape)
        folder = tmp / f"{fmt}-{n_headshape}-{method}-{seed}"
        path = write_bids(case, folder) if fmt == "bids" else write_elc(case, folder.with_suffix(".elc"))
        errors = solve_case(case, path, method=method)
        final.append(errors.final_mm)
        tre.append(errors.registration_mm)
    return {"final": np.array(final), "tre": np.array(tre)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--noise-rms-mm", type=float, default=2.0)
    args = ap.parse_args(argv)
    print(f"{args.draws} draws, 64 electrodes, noise {args.noise_rms_mm:g} mm RMS, 5% head-shape outliers")
    print(f"{'file':5s} {'points':28s} {'method':9s} | after coreg: median  p95   max | transform (TRE): median  max")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("bids", "elc"):
            for n_hs, what in ((100, "electrodes+fiducials+100 hs"), (0, "electrodes+fiducials")):
                for method in ("icp", "fiducials"):
                    r = evaluate(args.draws, args.noise_rms_mm, n_hs, fmt, method, Path(tmp))
                    f, t = r["final"], r["tre"]
                    print(
                        f"{fmt:5s} {what:28s} {method:9s} | {np.median(f):17.2f} {np.percentile(f, 95):5.2f} {f.max():5.2f} |"
                        f" {np.median(t):21.2f} {t.max():5.2f}"
                    )


if __name__ == "__main__":
    main()
