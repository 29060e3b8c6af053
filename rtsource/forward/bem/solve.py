"""Solving a BEM: the electrode-independent transfer matrix, cached on disk.

Linear collocation with analytic triangle integrals (:mod:`.integrals`) and the isolated-
problem approach (Hamalainen & Sarvas 1989, IEEE TBME 36:165; de Munck 1992, IEEE TBME
39:986), written from the formulas in ``reference/forward_inverse.md`` section 3.
:func:`solve_bem` (seconds, once per head model) assembles the double-layer matrix and
solves for a *transfer matrix* that maps the infinite-medium potentials of any source at the
innermost surface's vertices to the potentials at the outer surface's vertices. It does not
depend on the electrodes or the sources, so it is cached on disk
(``rtsource.cache.cache_dir() / "bem"``, npz without pickle) keyed by a hash of the meshes
and conductivities; the sensor steps (:mod:`.eeg`, :mod:`.meg`) apply it with
:func:`apply_transfer`.

The equations (sigma_k^- inside and sigma_k^+ outside surface k, air = 0)::

    V_i = g_i + 1/(2 pi) sum_l gamma_kl sum_j C_ij V_j,      i on surface k
    gamma_kl = (sigma_l^- - sigma_l^+) / (sigma_k^- + sigma_k^+)
    g_i = 2/(sigma_k^- + sigma_k^+) u_i,  u_i = Q.(r_i - r_q) / (4 pi |r_i - r_q|^3)

(Hamalainen & Sarvas 1989 eq. 12-14), C_ij the solid-angle coefficients of
:func:`rtsource.forward.bem.integrals.assemble_coefficients`, and the null space of constant
potentials deflated by adding 1/N to every entry (Lynn & Timlake 1968).

Isolated problem approach (used at the surface where sigma_out/sigma_in <= 0.1, the inner
skull): with phi the potential of the brain alone in an insulator, (I - C_bb/2pi) phi =
(2/sigma_b) u on the innermost surface, subtracting the isolated problem's integral equation
from the full one removes u from every equation, and the exact identity A^{-1} A[:, b] = E_b
leaves

    V_outer = -4 sigma_2 / (sigma_b^2 - sigma_2^2) (A^{-1})[outer, b] P u_b,
    P = (I + 1/N_b - C_bb / 2pi)^{-1}

so only the innermost vertices carry sources and only the (outer, inner) block of A^{-1}
is needed, which a block elimination gets at about 3/4 of the cost of one LU of A. (This
subtracts the whole isolated problem; MNE-Python subtracts (1 - mu) of it, which keeps a
mu-weighted copy of the standard equations and needs sources on every surface. Both are
exact in the continuum; this form needs a third of the storage and of the sensor work.)

With more layers inside the poorly conducting one (a CSF layer, sigma 1.0 S/m, between the
brain and the skull) the drop is at the inner skull, not at the innermost surface: there the
conductivity rises outwards (brain 0.33 -> CSF 1.0), and linear collocation without the
isolated problem gives RDM 0.2 and MAG 1.14 at eccentricity 0.9 on 4 x 642 vertices (0.03
and 0.96 with it). The isolated problem is then everything inside the inner skull with an
insulator outside (Meijs et al. 1989, IEEE TBME 36:1038; Stenroos & Sarvas 2012, Phys Med
Biol 57:3517), itself a mild-contrast BEM solved the standard way, and the same identity
gives V_outer from its potential on the inner skull (:func:`_solve_isolated_layered`). Two
sharp drops in one model are refused, as is the standard approach where one drop exists.

The dense linear algebra runs in single precision by default (relative difference to double
~1e-5, far below the discretisation error); integrals are always double.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg

from ...cache import cache_file, json_array, json_from_array, write_npz_atomically
from ...errors import ForwardError
from .integrals import Discretisation, assemble_coefficients, discretise
from .model import SHARP_DROP_RATIO, BemModel

logger = logging.getLogger(__name__)

__all__ = ["AUTO_REFINE_MAX_VERTICES", "AUTO_REFINE_THIN_MAX_VERTICES", "FORMAT_VERSION", "THIN_LAYER_EDGE_RATIO", "IPA_RATIO_LIMIT", "BemSolution", "apply_transfer", "solve_bem"]

#: Version of the cached solution's layout and algorithm; bump to invalidate old caches.
FORMAT_VERSION = 1

#: Hamalainen & Sarvas (1989) use the isolated problem approach when sigma_out/sigma_in at the
#: inner skull is at most this (one constant with MEG's choice of the inner skull).
IPA_RATIO_LIMIT = SHARP_DROP_RATIO

#: Models with at most this many vertices in all are refined once by default (3 x 642 is;
#: 3 x 2562 is not: there the refinement would quadruple a 3-6 s integration).
AUTO_REFINE_MAX_VERTICES = 3000

#: Larger models are refined by default too when a layer is thinner (median) than this
#: fraction of its inner surface's mean edge length, up to ``AUTO_REFINE_THIN_MAX_VERTICES``:
#: a 1.8 mm CSF shell under 6 mm triangles (4 x 2562 spheres) gives MAG 0.95 without and 0.99
#: with refinement (60 s instead of 21 s of CPU, once per head); the template's skull and
#: scalp (0.9-1.0 edge lengths thick at 2562 vertices) and the 3-shell spheres (0.6-0.8) are
#: not affected.
THIN_LAYER_EDGE_RATIO = 0.5
AUTO_REFINE_THIN_MAX_VERTICES = 4 * 2562

_DIPOLE_BLOCK = 2048  # dipoles per block of the lead-field product (~ 2562 x 6144 doubles)


def _system_matrix(model: BemModel, coeff: np.ndarray, order: Sequence[int] | None = None) -> np.ndarray:
    """In place: C -> A = I + 1/N - (1/2 pi) Gamma o C (Hamalainen & Sarvas 1989 eq. 14).

    gamma_kl = (sigma_l^- - sigma_l^+)/(sigma_k^- + sigma_k^+) for row surface k and column
    surface l; adding 1/N to every entry deflates the constant null vector (the potential
    is defined up to a constant; Lynn & Timlake 1968, Chan 1984).
    """
    order = list(range(model.n_layers)) if order is None else list(order)
    sizes = [model.n_vertices[k] for k in order]
    offsets = np.r_[0, np.cumsum(sizes)]
    sig_in, sig_out = model.sigma_in_out()
    for r, k in enumerate(order):
        for c, l in enumerate(order):
            gamma = (sig_in[l] - sig_out[l]) / (sig_in[k] + sig_out[k])
            coeff[offsets[r] : offsets[r + 1], offsets[c] : offsets[c + 1]] *= -gamma / (2.0 * np.pi)
    coeff[np.diag_indices_from(coeff)] += 1.0
    coeff += 1.0 / coeff.shape[0]
    return coeff


@dataclass(frozen=True, eq=False)
class BemSolution:
    """The electrode-independent part of a BEM forward model.

    Potentials at the vertices of ``model.surfaces[field_surface]`` are
    ``matrix @ u`` where u are the unit-conductivity infinite-medium potentials
    Q.(r_i - r_q)/(4 pi |r_i - r_q|^3) of the sources at the vertices of the surfaces listed
    in ``source_surfaces`` (concatenated in that order).

    Attributes
    ----------
    model : BemModel
    matrix : ndarray, shape (n_field_vertices, n_source_vertices)
        Ohm m (V per unit of u). Read-only.
    field_surface : int
        Index of the surface the rows belong to (0: the outermost).
    source_surfaces : tuple of int
        Surfaces whose vertices the columns belong to: with the isolated problem approach
        the isolated surface and those inside it ((n_layers - 1,) for three layers), (0,)
        for one layer, all surfaces otherwise.
    approach : str
        "isolated_problem", "standard" or "single_layer".
    refine : int
        0: potentials linear over the model's triangles; 1: integrals over butterfly-
        subdivided surfaces with the potentials interpolated smoothly (the sensor steps use
        the same representation).
    key : str
        Hash of the model and the algorithm (the cache key).
    info : Mapping
        Timings in seconds ("assembly_s", "solve_s", "load_s"), whether it came from the
        cache ("cached") and the surface the isolated problem approach isolated
        ("isolated_surface", None for the other approaches).
    """

    model: BemModel
    matrix: np.ndarray
    field_surface: int
    source_surfaces: tuple[int, ...]
    approach: str
    refine: int
    key: str
    info: Mapping[str, Any] = field(default_factory=dict)

    def discretisation(self, surface: int) -> Discretisation:
        """How potentials are represented on ``model.surfaces[surface]`` (computed once)."""
        memo = self.__dict__.setdefault("_discretisations", {})  # not a field: frozen-safe
        if surface not in memo:
            memo[surface] = discretise(self.model.surfaces[surface], self.refine)
        return memo[surface]

    @property
    def source_points_m(self) -> np.ndarray:
        """The vertices the columns of ``matrix`` refer to, shape (n_source_vertices, 3)."""
        return np.concatenate([self.model.surfaces[k].vertices_m for k in self.source_surfaces])


def _contrast_ratios(model: BemModel) -> np.ndarray:
    """sigma_out / sigma_in of each surface; inf for the outermost (air outside)."""
    sig_in, sig_out = model.sigma_in_out()
    ratio = sig_out / sig_in
    ratio[0] = np.inf  # the scalp/air boundary is not a candidate: nothing lies outside it
    return ratio


def _choose_approach(model: BemModel, approach: str) -> tuple[str, int | None]:
    """The approach and, for the isolated problem approach, the surface it isolates.

    The isolated problem approach belongs to the surface where the conductivity drops
    sharply outwards (sigma_out/sigma_in <= IPA_RATIO_LIMIT): the inner skull, with the
    conductivity of the compartment just inside it (brain, or CSF when a CSF layer lies
    between brain and skull). Everything inside that surface is the isolated problem
    (Hamalainen & Sarvas 1989; its generalisation to a layered inside: Meijs et al. 1989,
    IEEE TBME 36:1038; Stenroos & Sarvas 2012, Phys Med Biol 57:3517).
    """
    if approach not in ("auto", "isolated_problem", "standard"):
        raise ForwardError(f"approach = {approach!r} is not known; use 'auto', 'isolated_problem' or 'standard'")
    if model.n_layers == 1:
        return "single_layer", None
    ratio = _contrast_ratios(model)
    sig_in, sig_out = model.sigma_in_out()
    low = [k for k in range(1, model.n_layers) if ratio[k] <= IPA_RATIO_LIMIT]

    def _name(k: int) -> str:
        return f"surface {k} {model.surfaces[k].name!r} ({sig_in[k]:g} S/m inside, {sig_out[k]:g} S/m outside)"

    if len(low) > 1:
        raise ForwardError(
            f"the conductivity drops more than {1 / IPA_RATIO_LIMIT:g}-fold outwards at {len(low)} surfaces: "
            f"{'; '.join(_name(k) for k in low)}. rtsource's BEM isolates one such surface (the "
            f"isolated problem approach); at the others linear collocation loses the potential "
            f"inside them (errors of tens of percent). Merge those layers, or use OpenMEEG's "
            f"symmetric BEM ([forward] method = \"openmeeg\")"
        )
    if approach == "standard":
        if low:
            raise ForwardError(
                f"approach = 'standard' on a model whose conductivity drops {1 / ratio[low[0]]:.0f}-fold "
                f"outwards at {_name(low[0])}: without the isolated problem approach linear "
                f"collocation there is wrong by tens of percent (RDM 0.73 at eccentricity 0.93 on "
                f"three spheres); use approach='auto', which isolates that surface"
            )
        return "standard", None
    if approach == "auto" and not low:
        return "standard", None
    # forced, or a sharp drop: isolate the surface with the sharpest drop
    return "isolated_problem", int(low[0] if low else 1 + np.argmin(ratio[1:]))


def _thinnest_layer(model: BemModel) -> float:
    """min over adjacent surfaces of median thickness / mean edge length of the inner one.

    The thickness at an inner vertex is its distance to the nearest outer vertex (a k-d tree:
    milliseconds; it overestimates by at most half an edge, so it errs towards not refining).
    """
    from scipy.spatial import cKDTree

    ratios = [np.inf]
    for outer, inner in zip(model.surfaces, model.surfaces[1:]):
        v, t = inner.vertices_m, inner.triangles
        edge = np.linalg.norm(v[t] - v[t[:, [1, 2, 0]]], axis=2).mean()
        ratios.append(float(np.median(cKDTree(outer.vertices_m).query(v)[0])) / edge)
    return min(ratios)


def _choose_refine(model: BemModel, refine) -> int:
    if refine == "auto":
        n = sum(model.n_vertices)
        if n <= AUTO_REFINE_MAX_VERTICES:
            return 1
        return int(n <= AUTO_REFINE_THIN_MAX_VERTICES and _thinnest_layer(model) < THIN_LAYER_EDGE_RATIO)
    if refine in (0, 1, False, True):
        return int(refine)
    raise ForwardError(f"refine = {refine!r} is not known; use 'auto', 0 (no refinement) or 1 (one butterfly subdivision)")


def _solution_key(model: BemModel, approach: str, precision: str, refine: int, isolated: int | None = None) -> str:
    h = hashlib.sha256()
    # an isolated innermost surface keeps the key of the 3-layer solutions cached before
    tag = approach if isolated in (None, model.n_layers - 1) else f"{approach}@{isolated}"
    h.update(f"rtsource-bem-solution|v{FORMAT_VERSION}|{tag}|{precision}|refine{refine}|".encode())
    h.update(model.hash().encode())
    return h.hexdigest()[:32]


def _solve(
    model: BemModel, approach: str, precision: str, refine: int, isolated: int | None = None
) -> tuple[np.ndarray, tuple[int, ...], dict[str, float]]:
    dtype = np.float32 if precision == "single" else np.float64
    sizes = model.n_vertices
    sig_in, sig_out = model.sigma_in_out()
    t0 = time.perf_counter()
    if approach == "single_layer":
        # V = (2/sigma) (I + 1/N - C/2pi)^{-1} u: the homogeneous conductor
        coeff = assemble_coefficients(model, refine=refine)
        t1 = time.perf_counter()
        p_inv = coeff * (-1.0 / (2.0 * np.pi))
        p_inv[np.diag_indices_from(p_inv)] += 1.0
        p_inv += 1.0 / sizes[0]
        matrix = scipy.linalg.inv(p_inv.astype(dtype), overwrite_a=True, check_finite=False) * (2.0 / sig_in[0])
        sources: tuple[int, ...] = (0,)
    elif approach == "isolated_problem" and isolated == model.n_layers - 1:
        # unknowns ordered (middle surfaces, outermost, innermost): the blocks the
        # elimination works on are then contiguous
        k = model.n_layers
        order = list(range(1, k - 1)) + [0, k - 1]
        coeff = assemble_coefficients(model, order, refine=refine)
        t1 = time.perf_counter()
        nb = sizes[-1]
        # P^{-1} of the isolated inner compartment, before C is scaled in place
        p_inv = coeff[-nb:, -nb:] * (-1.0 / (2.0 * np.pi))
        p_inv[np.diag_indices_from(p_inv)] += 1.0
        p_inv += 1.0 / nb
        a = _system_matrix(model, coeff, order)
        if dtype != a.dtype:
            a = a.astype(dtype)
            del coeff
        x1p = _outer_inner_block_times_p(a, sum(sizes[1:-1]), sizes[0], p_inv.astype(dtype))
        s2, sb = sig_out[-1], sig_in[-1]
        matrix = x1p.astype(np.float64) * (-4.0 * s2 / (sb * sb - s2 * s2))
        sources = (k - 1,)
    elif approach == "isolated_problem":
        matrix, sources, t1 = _solve_isolated_layered(model, isolated, dtype, refine)
    else:
        coeff = assemble_coefficients(model, refine=refine)
        t1 = time.perf_counter()
        a = _system_matrix(model, coeff).astype(dtype, copy=False)
        matrix = _standard_outer_rows(model, a)
        sources = tuple(range(model.n_layers))
    t2 = time.perf_counter()
    return np.ascontiguousarray(matrix, dtype=np.float64), sources, {"assembly_s": t1 - t0, "solve_s": t2 - t1}


def _standard_outer_rows(model: BemModel, a: np.ndarray) -> np.ndarray:
    """Rows of the outer surface of the standard solution: (A^{-1})[outer, :] 2/(sigma- + sigma+).

    ``a`` is the deflated system matrix (surfaces outermost first), overwritten.
    """
    sig_in, sig_out = model.sigma_in_out()
    n0 = model.n_vertices[0]
    lu = scipy.linalg.lu_factor(a, overwrite_a=True, check_finite=False)
    rhs = np.zeros((a.shape[0], n0), dtype=a.dtype)
    rhs[np.arange(n0), np.arange(n0)] = 1.0
    rows = scipy.linalg.lu_solve(lu, rhs, trans=1, overwrite_b=True, check_finite=False).T  # (A^{-1})[outer, :]
    factor = np.repeat(2.0 / (sig_in + sig_out), model.n_vertices)
    return rows.astype(np.float64) * factor[None, :]


def _solve_isolated_layered(model: BemModel, m: int, dtype, refine: int) -> tuple[np.ndarray, tuple[int, ...], float]:
    """Isolated problem approach at a surface m with further surfaces inside it.

    The isolated problem is everything inside surface m with an insulator outside: its
    potential phi on the surfaces m..K-1 satisfies B phi = u, and B's columns equal the
    full system's except at m, where B[:, m] = sigma_m^- / (sigma_m^- - sigma_m^+)
    (A[:, m] - sigma_m^+ E_m). Hence V = A^{-1} u = A^{-1} B phi gives on the outer surface

        V_outer = -2 sigma^- sigma^+ / (sigma^-^2 - sigma^+^2) (A^{-1})[outer, m] phi_m

    (A row-scaled by 2/(sigma^- + sigma^+) as :func:`_system_matrix`; sigma^-/sigma^+ inside
    and outside surface m; Hamalainen & Sarvas 1989 eq. 20-23 with the isolated
    inside layered as Meijs et al. 1989, IEEE TBME 36:1038). phi_m comes from the
    isolated problem, a mild-contrast BEM with air outside solved the standard way.
    Returns the matrix from the sources' potentials u on surfaces m..K-1 to V_outer.
    """
    k = model.n_layers
    sizes = model.n_vertices
    rest = [j for j in range(1, k) if j != m]
    order = rest + [0, m]
    coeff = assemble_coefficients(model, order, refine=refine)
    t1 = time.perf_counter()
    # the isolated problem's coefficients (surfaces m..K-1, in that order), before C is scaled
    offsets = dict(zip(order, np.r_[0, np.cumsum([sizes[j] for j in order])][:-1]))
    inside = list(range(m, k))
    idx = np.concatenate([np.arange(offsets[j], offsets[j] + sizes[j]) for j in inside])
    sub = BemModel(model.surfaces[m:], model.conductivities[m:], check_intersections=False)
    a_iso = _system_matrix(sub, coeff[np.ix_(idx, idx)]).astype(dtype, copy=False)
    phi = _standard_outer_rows(sub, a_iso)  # (n_m, n_inside): phi_m from u on surfaces m..K-1
    del a_iso
    a = _system_matrix(model, coeff, order)
    if dtype != a.dtype:
        a = a.astype(dtype)
        del coeff
    x = _outer_block_times(a, sum(sizes[j] for j in rest), sizes[0], phi.astype(dtype))
    sig_in, sig_out = model.sigma_in_out()
    s_in, s_out = sig_in[m], sig_out[m]
    matrix = x.astype(np.float64) * (-2.0 * s_in * s_out / (s_in * s_in - s_out * s_out))
    return matrix, tuple(inside), t1


def _schur_outer(a: np.ndarray, n_r: int, n_o: int) -> tuple[np.ndarray, np.ndarray]:
    """T = S_oo^{-1} S_ox and Sigma = S_xx - S_xo T of A ordered (r, o, x) (A is overwritten).

    Eliminating the first ``n_r`` unknowns (r, possibly none) leaves the Schur complement S
    on (o, x); the (o, x) block of its inverse, which is that of A^{-1}, is -T Sigma^{-1}.
    Both block-elimination solves below end with that product.
    """
    lu_kw = {"check_finite": False}
    if n_r:
        lu = scipy.linalg.lu_factor(a[:n_r, :n_r], **lu_kw)
        w = scipy.linalg.lu_solve(lu, a[:n_r, n_r:], **lu_kw)  # A_rr^{-1} A_r,ox
        del lu
        s = a[n_r:, n_r:]
        s -= a[n_r:, :n_r] @ w
        del w
    else:
        s = a
    s_oo, s_ox = s[:n_o, :n_o], s[:n_o, n_o:]
    s_xo, s_xx = s[n_o:, :n_o], s[n_o:, n_o:]
    lu = scipy.linalg.lu_factor(s_oo, **lu_kw)
    t = scipy.linalg.lu_solve(lu, s_ox, **lu_kw)  # S_oo^{-1} S_ox
    del lu
    return t, s_xx - s_xo @ t


def _outer_block_times(a: np.ndarray, n_r: int, n_o: int, right: np.ndarray) -> np.ndarray:
    """(A^{-1})[o, m] @ right by block elimination (A, ordered (r, o, m), is overwritten).

    The (o, m) block of A^{-1} is -T Sigma^{-1} (:func:`_schur_outer`, x = m).
    """
    t, sigma = _schur_outer(a, n_r, n_o)
    return -t @ scipy.linalg.solve(sigma, right, overwrite_a=True, check_finite=False)


def _outer_inner_block_times_p(a: np.ndarray, n_m: int, n_o: int, p_inv: np.ndarray) -> np.ndarray:
    """(A^{-1})[o, b] @ P with P = p_inv^{-1}, by block elimination (A is overwritten).

    A is ordered (m, o, b): the middle surfaces (possibly none), the outermost, the
    innermost. The (o, b) block of A^{-1} is -T Sigma^{-1} (:func:`_schur_outer`, r = m,
    x = b), and Sigma^{-1} P = (P^{-1} Sigma)^{-1}. About 22 n^3 flops for three n-vertex
    surfaces, three quarters of an LU of A and its solve.
    """
    t, sigma = _schur_outer(a, n_m, n_o)
    q = p_inv @ sigma
    del sigma
    # X P = -T Q^{-1}  <=>  Q^T (X P)^T = -T^T
    return -scipy.linalg.solve(q.T, t.T, overwrite_a=True, overwrite_b=True, check_finite=False).T


def _read_cache(path: Path, model: BemModel, key: str, approach: str, refine: int) -> BemSolution | None:
    if not path.exists():
        return None
    t0 = time.perf_counter()
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json_from_array(z["meta"])
            matrix = z["matrix"]
        sources = tuple(int(x) for x in meta["source_surfaces"])
        n_rows = model.n_vertices[int(meta["field_surface"])]
        n_cols = sum(model.n_vertices[k] for k in sources)
        if (meta.get("format_version"), meta.get("key"), meta.get("approach"), meta.get("refine")) != (FORMAT_VERSION, key, approach, refine):
            raise ValueError("key, approach, refinement or format version differ")
        if matrix.shape != (n_rows, n_cols) or matrix.dtype != np.float64:
            raise ValueError(f"matrix has shape {matrix.shape} {matrix.dtype}, expected ({n_rows}, {n_cols}) float64")
        if not np.isfinite(matrix).all():
            raise ValueError("matrix has non-finite values")
    except Exception as exc:  # noqa: BLE001 -- a damaged cache entry is recomputed, never trusted
        logger.warning("ignoring damaged BEM cache file %s (%s); recomputing", path, exc)
        return None
    matrix.flags.writeable = False
    info = {"cached": True, "load_s": time.perf_counter() - t0, "path": str(path)}
    info.update({k: meta[k] for k in ("precision", "assembly_s", "solve_s", "isolated_surface") if k in meta})
    return BemSolution(model, matrix, int(meta["field_surface"]), sources, approach, refine, key, info)


def _write_cache(path: Path, sol: BemSolution) -> None:
    meta = {
        "format_version": FORMAT_VERSION,
        "key": sol.key,
        "approach": sol.approach,
        "refine": sol.refine,
        "field_surface": sol.field_surface,
        "source_surfaces": list(sol.source_surfaces),
        "model": sol.model.describe(),
        "precision": sol.info.get("precision"),
        "assembly_s": sol.info.get("assembly_s"),
        "solve_s": sol.info.get("solve_s"),
        "isolated_surface": sol.info.get("isolated_surface"),
    }
    try:
        write_npz_atomically(path, matrix=sol.matrix, meta=json_array(meta))
    except OSError as exc:
        logger.warning("could not cache the BEM solution in %s (%s)", path, exc)


def solve_bem(
    model: BemModel, *, use_cache: bool = True, approach: str = "auto", precision: str = "single", refine: int | str = "auto"
) -> BemSolution:
    """Solve the BEM (assembly + linear algebra), or load the solution from the disk cache.

    Parameters
    ----------
    model : BemModel
        One layer (homogeneous conductor, for MEG) or several (EEG).
    use_cache : bool
        Read and write ``rtsource.cache.cache_dir() / "bem" / <key>.npz``. A damaged
        file is recomputed with a warning.
    approach : {"auto", "isolated_problem", "standard"}
        "auto" uses the isolated problem approach at the surface whose outside to inside
        conductivity ratio is <= 0.1 (the inner skull; Hamalainen & Sarvas 1989, with a
        layered inside as Meijs et al. 1989), else the standard deflated system.
        "isolated_problem" forces it at the surface of the lowest ratio; "standard" is
        refused where such a drop exists (it is wrong by tens of percent there).
    precision : {"single", "double"}
        Floating-point type of the dense linear algebra (the integrals are always double).
        Single precision halves the time and memory; its relative difference to double is
        about 1e-5 on 3 x 2562 vertices, far below the discretisation error (~1e-2).
    refine : {"auto", 0, 1}
        1 integrates over once-subdivided surfaces (butterfly) with smoothly interpolated
        potentials: on 642-vertex spheres it cuts the error 2-3 fold (RDM at eccentricity
        0.9 from 0.07 to 0.04), at 4x the integration work. "auto" refines models of at most
        ``AUTO_REFINE_MAX_VERTICES`` vertices in all (3 x 642), where the cost is small and
        linear collocation on its own is too coarse for a thin skull, and models of up to
        ``AUTO_REFINE_THIN_MAX_VERTICES`` with a layer thinner than half its triangles'
        edges (a CSF shell; ``THIN_LAYER_EDGE_RATIO``).

    Returns
    -------
    BemSolution
        ``info`` has "assembly_s" and "solve_s" (or "load_s" when read from the cache).

    Raises
    ------
    ForwardError
        Bad arguments; the conductivity dropping more than 10-fold outwards at two surfaces
        (the message names them; OpenMEEG's symmetric BEM takes such models).
    """
    if not isinstance(model, BemModel):
        raise ForwardError(f"model must be a BemModel, got {type(model).__name__}; build one with BemModel(surfaces, conductivities)")
    if precision not in ("single", "double"):
        raise ForwardError(f"precision = {precision!r} is not known; use 'single' (default) or 'double'")
    approach, isolated = _choose_approach(model, approach)
    refine = _choose_refine(model, refine)
    key = _solution_key(model, approach, precision, refine, isolated)
    path = cache_file("bem", key) if use_cache else None
    if path is not None:
        cached = _read_cache(path, model, key, approach, refine)
        if cached is not None:
            logger.info("BEM solution from cache %s (%.2f s)", path, cached.info["load_s"])
            return cached
    matrix, sources, timing = _solve(model, approach, precision, refine, isolated)
    matrix.flags.writeable = False
    info = {"cached": False, "precision": precision, "isolated_surface": isolated, **timing}
    sol = BemSolution(model, matrix, 0, sources, approach, refine, key, info)
    logger.info(
        "BEM solution (%s, %s vertices, refine %d, %s precision): assembly %.2f s, solve %.2f s",
        approach, "+".join(map(str, model.n_vertices)), refine, precision, timing["assembly_s"], timing["solve_s"],
    )
    if path is not None:
        _write_cache(path, sol)
    return sol


def apply_transfer(transfer: np.ndarray, source_points: np.ndarray, dipoles: np.ndarray, out: np.ndarray, *, block: int = _DIPOLE_BLOCK) -> None:
    """out[:, 3j:3j+3] += transfer @ u(source_points, dipole j), in blocks of dipoles.

    u are the unit-conductivity infinite-medium potentials of the dipoles at the solution's
    source points (:attr:`BemSolution.source_points_m`); ``transfer`` is rows of
    :attr:`BemSolution.matrix` (or a product with them), so ``out`` gets the potentials or
    fields of the dipoles through the solution, per unit moment along x, y, z.
    """
    from .. import _bem_kernels as kernels

    n_d = len(dipoles)
    buf = np.empty((len(source_points), 3 * min(block, max(n_d, 1))))
    for start in range(0, n_d, block):
        stop = min(start + block, n_d)
        u = buf[:, : 3 * (stop - start)]
        kernels.infinite_potentials(source_points, np.ascontiguousarray(dipoles[start:stop]), u)
        out[:, 3 * start : 3 * stop] += transfer @ u
