"""Validate the forward models against the concentric-sphere series and peer BEMs, and time them.

    python tools/validate_forward.py                  # everything installed, ~2-4 min on 2 cores
    python tools/validate_forward.py --quick          # 642-vertex meshes only, no peers
    python tools/validate_forward.py --json out.json  # also write the numbers as JSON
    python tools/validate_forward.py --layers-only --openmeeg-2562   # issue 17 acceptance (~1 h)

EEG: three concentric spheres (radii 90/85/81 mm, conductivities 0.3/0.006/0.3 S/m), 120
dipoles at eccentricities 0.2-0.95 of the inner radius (20 each, random directions), 64
electrodes on the upper part of the scalp sphere. Per eccentricity: median RDM and MAG of the
average-referenced topographies (all three orientations) against the analytic series
(rtsource.forward.sphere), for: the series against itself (sanity), rtsource's BEM on 642
and 2562 vertices per surface (with and without refinement), MNE-Python's linear-collocation
BEM and OpenMEEG's symmetric BEM on the same meshes when those packages are installed.

Four shells with a CSF layer (issue 17; radii 81/82.8/87.3/90 mm, conductivities
0.33/1.0/0.004/0.33 S/m, innermost first) with the same electrodes and dipoles: our BEM at 642
and 2562 vertices per surface (2562 also without refinement) and OpenMEEG at 642 (2562 with
--openmeeg-2562), a table of
median RDM/MAG per eccentricity, and the acceptance verdict at 2562 vertices (median RDM <=
0.05 and MAG within 5 % up to eccentricity 0.9). The exit status is 1 if it fails.

MEG: single-layer BEM (inner sphere, 2562 vertices) against the Sarvas formula (written here)
for tangential dipoles, and the field of radial dipoles relative to tangential ones.

Timings: numba compilation (in a fresh cache), assembly, solve, cached reuse, the electrode
step, and the lead-field throughput for 64 EEG channels x 20484 template sources. The
machine is shared: times are wall-clock of one run (process CPU time beside them).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# radii and conductivities innermost first everywhere (SphereModel, concentric_sphere_model)
RADII = (0.081, 0.085, 0.090)
SIGMA = (0.3, 0.006, 0.3)  # brain, skull, scalp
# issue 17: four shells with a CSF layer (brain, CSF, skull, scalp)
RADII4 = (0.081, 0.0828, 0.0873, 0.090)
SIGMA4 = (0.33, 1.0, 0.004, 0.33)
# acceptance of the layered BEM at 2562 vertices: median RDM and |MAG - 1| up to this eccentricity
ACCEPT_RDM, ACCEPT_MAG, ACCEPT_ECC = 0.05, 0.05, 0.9
ECCS = (0.2, 0.4, 0.6, 0.8, 0.9, 0.95)


def unit_vectors(rng, n):
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def cap_electrodes(rng, n=64):
    """n points on the scalp sphere above z = -0.3 R (where an EEG cap sits)."""
    out = []
    while len(out) < n:
        v = unit_vectors(rng, 1)[0]
        if v[2] > -0.3:
            out.append(v)
    return np.array(out) * RADII[-1]


def metrics(gain, ref, eccs):
    """{eccentricity: [median RDM, median MAG]} of average-referenced columns."""
    g = gain - gain.mean(axis=0)
    r = ref - ref.mean(axis=0)
    ng = np.linalg.norm(g, axis=0)
    nr = np.linalg.norm(r, axis=0)
    rdm = np.linalg.norm(g / ng - r / nr, axis=0)
    mag = ng / nr
    col = np.repeat(eccs, 3)
    return {f"{e:.2f}": [float(np.median(rdm[col == e])), float(np.median(mag[col == e]))] for e in np.unique(eccs)}


class Clock:
    def __enter__(self):
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def cold_compile_seconds() -> float | None:
    """Time to compile the BEM kernels in a fresh numba cache (a subprocess)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "NUMBA_CACHE_DIR": tmp}
        code = "from rtsource.forward.bem import warm_up; print(warm_up())"
        try:
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600, check=True)
            return float(out.stdout.strip().splitlines()[-1])
        except (subprocess.SubprocessError, ValueError) as exc:
            logging.getLogger("validate_forward").warning("cold compile measurement failed: %s", exc)
            return None


# ------------------------------------------------------------------------------ methods


def ours(order, refine, elec, dip, results, timings, label, radii=RADII, sigma=SIGMA):
    from rtsource.forward.bem import concentric_sphere_model, eeg_bem_leadfield, solve_bem

    model = concentric_sphere_model(radii, sigma, order=order)
    with Clock() as c:
        sol = solve_bem(model, refine=refine)
    with Clock() as reuse:
        again = solve_bem(model, refine=refine)
    assert again.info["cached"]
    with Clock() as lf:
        gain, report = eeg_bem_leadfield(sol, elec, dip)
    timings[label] = {
        "assembly_s": round(sol.info["assembly_s"], 3),
        "solve_s": round(sol.info["solve_s"], 3),
        "total_wall_s": round(c.wall, 3),
        "total_cpu_s": round(c.cpu, 3),
        "approach": sol.approach,
        "isolated_surface": sol.info.get("isolated_surface"),
        "refine": sol.refine,
        "cached_reuse_s": round(reuse.wall, 3),
        "electrode_step_s": round(report.timings_s["electrodes"], 4),
        "leadfield_120_dipoles_s": round(lf.wall, 4),
    }
    return gain


def mne_bem(order, elec, dip, label, timings):
    import mne
    from mne.transforms import Transform

    from rtsource.geometry.icosphere import icosphere

    mne.set_log_level("ERROR")
    v, t = icosphere(order)
    with tempfile.TemporaryDirectory() as tmp:
        bem_dir = Path(tmp) / "sphere" / "bem"
        bem_dir.mkdir(parents=True)
        for name, radius in zip(("inner_skull", "outer_skull", "outer_skin"), RADII):
            mne.write_surface(str(bem_dir / f"{name}.surf"), v * radius * 1e3, t, overwrite=True)
        with Clock() as c:
            surfs = mne.make_bem_model("sphere", ico=None, conductivity=SIGMA, subjects_dir=tmp)
            bem = mne.make_bem_solution(surfs)
        names = [f"E{i:02d}" for i in range(len(elec))]
        info = mne.create_info(names, 1000.0, "eeg")
        info.set_montage(mne.channels.make_dig_montage(ch_pos=dict(zip(names, elec)), coord_frame="head"))
        normals = dip / np.linalg.norm(dip, axis=1, keepdims=True)
        src = mne.setup_volume_source_space(pos={"rr": dip, "nn": normals}, mindist=0.0, bem=bem)
        trans = Transform("head", "mri", np.eye(4))
        with Clock() as lf:
            fwd = mne.make_forward_solution(info, trans, src, bem, meg=False, eeg=True, mindist=0.0)
    if fwd["nsource"] != len(dip):
        raise RuntimeError(f"MNE kept {fwd['nsource']} of {len(dip)} dipoles")
    timings[label] = {"solution_s": round(c.wall, 3), "solution_cpu_s": round(c.cpu, 3), "leadfield_120_dipoles_s": round(lf.wall, 3)}
    return fwd["sol"]["data"]


def openmeeg_bem(order, elec, dip, label, timings, radii=RADII, sigma=SIGMA):
    from rtsource.forward.bem import concentric_sphere_model
    from rtsource.forward.openmeeg_backend import openmeeg_eeg_leadfield, solve_openmeeg

    model = concentric_sphere_model(radii, sigma, order=order)
    with Clock() as c:
        sol = solve_openmeeg(model)
    if sol.info.get("cached"):
        print(f"  {label}: OpenMEEG solution from the cache (--cache)", file=sys.stderr)
    with Clock() as lf:
        gain, _ = openmeeg_eeg_leadfield(sol, elec, dip)
    timings[label] = {"solution_s": round(c.wall, 3), "solution_cpu_s": round(c.cpu, 3), "leadfield_120_dipoles_s": round(lf.wall, 3)}
    return gain


def sarvas(points, q, r0):
    """B (k, 3) of dipole q at r0, sphere centred at 0 (Sarvas 1987, Phys Med Biol 32:11)."""
    a_vec = points - r0
    a = np.linalg.norm(a_vec, axis=1)
    r = np.linalg.norm(points, axis=1)
    ar = np.einsum("ij,ij->i", a_vec, points)
    f = a * (r * a + r * r - points @ r0)
    grad_f = (a * a / r + ar / a + 2 * a + 2 * r)[:, None] * points - (a + 2 * r + ar / a)[:, None] * r0
    qxr0 = np.cross(q, r0)
    return 1e-7 / f[:, None] ** 2 * (f[:, None] * qxr0 - (points @ qxr0)[:, None] * grad_f)


def meg_check(order, rng, timings):
    from rtsource.forward.bem import concentric_sphere_model, meg_bem_field, solve_bem

    model = concentric_sphere_model((RADII[0],), (SIGMA[0],), order=order, names=("inner_skull",))
    with Clock() as c:
        sol = solve_bem(model)
    pts = unit_vectors(rng, 300) * 0.11
    nrm = unit_vectors(rng, 300)
    eccs = np.repeat((0.2, 0.5, 0.7, 0.8, 0.9, 0.95), 15)
    dip = unit_vectors(rng, len(eccs)) * RADII[0] * eccs[:, None]
    with Clock() as lf:
        field = meg_bem_field(sol, pts, nrm, dip)
    timings[f"meg bem {model.n_vertices[0]}"] = {"solution_s": round(c.wall, 3), "field_300pts_90dip_s": round(lf.wall, 3)}
    out = {}
    for e in np.unique(eccs):
        rdm, mag, radial = [], [], []
        for j in np.flatnonzero(eccs == e):
            rhat = dip[j] / np.linalg.norm(dip[j])
            tang = np.cross(rhat, unit_vectors(rng, 1)[0])
            tang /= np.linalg.norm(tang)
            b = field[:, 3 * j : 3 * j + 3] @ tang
            ref = np.einsum("ki,ki->k", sarvas(pts, tang, dip[j]), nrm)
            rdm.append(np.linalg.norm(b / np.linalg.norm(b) - ref / np.linalg.norm(ref)))
            mag.append(np.linalg.norm(b) / np.linalg.norm(ref))
            radial.append(np.linalg.norm(field[:, 3 * j : 3 * j + 3] @ rhat) / np.linalg.norm(ref))
        out[f"{e:.2f}"] = [float(np.median(rdm)), float(np.median(mag)), float(np.median(radial))]
    return out


def template_throughput(bem_order, timings):
    from rtsource.anatomy.template import load_template, template_source_space
    from rtsource.forward.bem import bem_model_from_surfaces, eeg_bem_leadfield, solve_bem
    from rtsource.sensors.montage import CAP_64, standard_montage

    template = load_template(bem_order)
    with Clock() as mk:
        model = bem_model_from_surfaces(template.surfaces)
    sol = solve_bem(model)
    montage = standard_montage("standard_1005").pick(CAP_64)
    sources = template_source_space("ico5", "white")
    with Clock() as lf:
        _, report = eeg_bem_leadfield(sol, montage.electrodes.positions_m, sources.positions_m, electrode_labels=montage.labels)
    timings[f"template bem_order {bem_order}"] = {
        "n_vertices": list(model.n_vertices),
        "refine": sol.refine,
        "model_checks_s": round(mk.wall, 3),
        "assembly_s": round(sol.info["assembly_s"], 3),
        "solve_s": round(sol.info["solve_s"], 3),
        "electrode_step_s": round(report.timings_s["electrodes"], 4),
        "leadfield_64x20484_s": round(lf.wall, 3),
        "sources_per_s": round(sources.n_sources / lf.wall),
    }


def layered_acceptance(args, elec, dip, eccs, timings) -> dict:
    """Issue 17: four shells with CSF, our BEM and OpenMEEG against the series."""
    from rtsource.forward.sphere import SphereModel, eeg_sphere_leadfield

    ref, _ = eeg_sphere_leadfield(elec, dip, SphereModel([0, 0, 0], RADII4, SIGMA4, "head"))
    results = {}
    # "auto" refines 4 x 2562 here (the CSF shell is thinner than half the triangles' edges);
    # the linear run shows what that buys
    runs = [("bem 642", 3, "auto"), ("bem 2562", 4, "auto"), ("bem 2562 linear", 4, 0)]
    for label, order, refine in runs:
        key = f"4 shells {label}"
        results[label] = metrics(ours(order, refine, elec, dip, results, timings, key, RADII4, SIGMA4), ref, eccs)
        print(f"  {key}: done ({timings[key]['total_wall_s']:.1f} s)", file=sys.stderr)
    if not args.skip_openmeeg:
        try:
            import openmeeg  # noqa: F401

            for order in (3, 4) if args.openmeeg_2562 else (3,):
                label = f"openmeeg {10 * 4**order + 2}"
                results[label] = metrics(openmeeg_bem(order, elec, dip, f"4 shells {label}", timings, RADII4, SIGMA4), ref, eccs)
                print(f"  4 shells {label}: done", file=sys.stderr)
        except ImportError:
            pass
    return results


def print_layers(results: dict) -> bool:
    """The 4-shell table and the acceptance verdict of the 2562-vertex runs; True if all pass."""
    labels = list(results)
    print(
        f"\nEEG, 4 concentric spheres with CSF ({'/'.join(f'{r * 1e3:g}' for r in RADII4)} mm, "
        f"{'/'.join(f'{x:g}' for x in SIGMA4)} S/m, innermost first), 64 electrodes, 20 dipoles per eccentricity"
    )
    print("median RDM / MAG per eccentricity (of the innermost radius; average reference, vs the analytic series)")
    print(f"{'ecc':<6}" + "".join(f"{label:>20}" for label in labels))
    for e in (f"{x:.2f}" for x in ECCS):
        print(f"{e:<6}" + "".join(f"{results[label][e][0]:>11.4f}/{results[label][e][1]:<8.3f}" for label in labels))
    ok = True
    for label in labels:
        if "2562" not in label:
            continue
        worst_rdm = max(v[0] for e, v in results[label].items() if float(e) <= ACCEPT_ECC)
        worst_mag = max(abs(v[1] - 1) for e, v in results[label].items() if float(e) <= ACCEPT_ECC)
        passed = worst_rdm <= ACCEPT_RDM and worst_mag <= ACCEPT_MAG
        ok &= passed
        print(
            f"acceptance {label}: worst median RDM {worst_rdm:.4f} (<= {ACCEPT_RDM}), worst |MAG - 1| {worst_mag:.3f} "
            f"(<= {ACCEPT_MAG}) up to eccentricity {ACCEPT_ECC}: {'PASS' if passed else 'FAIL'}"
        )
    return ok


# --------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write all numbers to this JSON file")
    ap.add_argument("--quick", action="store_true", help="642-vertex meshes only, no peers, no MEG, no template")
    ap.add_argument("--refined-2562", action="store_true", help="also our BEM on 2562 vertices with refinement (slow)")
    ap.add_argument("--skip-mne", action="store_true")
    ap.add_argument("--skip-openmeeg", action="store_true")
    ap.add_argument("--openmeeg-2562", action="store_true", help="also OpenMEEG on 2562 vertices (very slow: about an hour for 4 shells)")
    ap.add_argument("--layers-only", action="store_true", help="only the 4-shell (CSF) acceptance: our BEM and OpenMEEG at 642 and 2562 vertices")
    ap.add_argument("--skip-layers", action="store_true", help="leave out the 4-shell (CSF) acceptance")
    ap.add_argument("--cache", help="cache directory to reuse (default: a fresh one, so that first-run timings mean it)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    # a fresh cache, so that "first run" means it
    cache = tempfile.TemporaryDirectory(prefix="rtsource-validate-")
    os.environ["RTSOURCE_CACHE"] = args.cache or cache.name

    from rtsource.forward.bem import warm_up
    from rtsource.forward.sphere import SphereModel, eeg_sphere_leadfield

    rng = np.random.default_rng(args.seed)
    elec = cap_electrodes(rng)
    eccs = np.repeat(ECCS, 20)
    dip = unit_vectors(rng, len(eccs)) * RADII[0] * eccs[:, None]
    if args.layers_only:
        timings: dict[str, dict] = {}
        layers = layered_acceptance(args, elec, dip, eccs, timings)
        ok = print_layers(layers)
        if args.json:
            Path(args.json).write_text(json.dumps({"four_shells": layers, "timings": timings, "seed": args.seed}, indent=1))
        cache.cleanup()
        return 0 if ok else 1
    ref, _ = eeg_sphere_leadfield(elec, dip, SphereModel([0, 0, 0], RADII, SIGMA, "head"))

    timings: dict[str, dict] = {}
    compile_s = None if args.quick else cold_compile_seconds()
    timings["numba"] = {"cold_compile_s": compile_s, "warm_up_s": round(warm_up(), 3)}

    results: dict[str, dict] = {"series (self)": metrics(ref, ref, eccs)}
    runs = [("bem 642", 3, "auto"), ("bem 642 linear", 3, 0)]
    if not args.quick:
        runs.append(("bem 2562", 4, "auto"))
        if args.refined_2562:
            runs.append(("bem 2562 refined", 4, 1))
    for label, order, refine in runs:
        results[label] = metrics(ours(order, refine, elec, dip, results, timings, label), ref, eccs)
        print(f"  {label}: done ({timings[label]['total_wall_s']:.1f} s)", file=sys.stderr)

    peers = {}
    if not args.quick and not args.skip_mne:
        try:
            import mne

            for order in (3, 4):
                label = f"mne {10 * 4**order + 2}"
                results[label] = metrics(mne_bem(order, elec, dip, label, timings), ref, eccs)
                print(f"  {label}: done", file=sys.stderr)
            peers["mne"] = mne.__version__
        except ImportError:
            peers["mne"] = None
    if not args.quick and not args.skip_openmeeg:
        try:
            import openmeeg

            for order in (3, 4) if args.openmeeg_2562 else (3,):
                label = f"openmeeg {10 * 4**order + 2}"
                results[label] = metrics(openmeeg_bem(order, elec, dip, label, timings), ref, eccs)
                print(f"  {label}: done", file=sys.stderr)
            peers["openmeeg"] = getattr(openmeeg, "__version__", "?")
        except ImportError:
            peers["openmeeg"] = None

    layers = None if args.quick or args.skip_layers else layered_acceptance(args, elec, dip, eccs, timings)
    meg = None
    if not args.quick:
        meg = meg_check(4, rng, timings)
        for order in (3, 4):
            template_throughput(order, timings)

    # ---- report
    cols = [f"{e:.2f}" for e in ECCS]
    print("\nEEG, 3 concentric spheres (90/85/81 mm, 0.3/0.006/0.3 S/m), 64 electrodes, 20 dipoles per eccentricity")
    print("median RDM / MAG per eccentricity (average reference, vs the analytic series)")
    print(f"{'method':<20}" + "".join(f"{c:>15}" for c in cols))
    for label, row in results.items():
        print(f"{label:<20}" + "".join(f"{row[c][0]:>8.4f}/{row[c][1]:<6.3f}" for c in cols))
    layers_ok = print_layers(layers) if layers else True
    if meg:
        print("\nMEG single-layer BEM (2562 vertices) vs Sarvas, tangential dipoles: median RDM / MAG; radial/tangential field")
        print(f"{'eccentricity':<14}{'RDM':>8}{'MAG':>8}{'radial':>10}")
        for e, (r, m, rad) in meg.items():
            print(f"{e:<14}{r:>8.4f}{m:>8.3f}{rad:>10.2e}")
    print("\nTimings (wall seconds on this machine; see JSON for CPU times)")
    for label, row in timings.items():
        print(f"  {label:<22} " + ", ".join(f"{k}={v}" for k, v in row.items()))
    out = {"eeg": results, "four_shells": layers, "meg_vs_sarvas": meg, "timings": timings, "peers": peers, "seed": args.seed}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"\nwrote {args.json}")
    cache.cleanup()
    return 0 if layers_ok else 1


if __name__ == "__main__":
    sys.exit(main())
