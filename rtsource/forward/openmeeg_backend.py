"""EEG lead fields from OpenMEEG's symmetric BEM (optional extra ``rtsource[openmeeg]``).

OpenMEEG (Gramfort et al. 2010, BioMed Eng OnLine 9:45) implements the symmetric boundary
element method of Kybic et al. (2005, IEEE TMI 24:12): Galerkin discretisation with the
potential (P1) and the normal current (P0) as unknowns on every interface. It is more
accurate than linear collocation next to the surfaces and much slower to assemble. This
module takes the same :class:`~rtsource.forward.bem.BemModel` and positions as
:func:`rtsource.forward.bem.eeg_bem_leadfield` and returns the same gain layout, so the
configuration can switch ``[forward] method = "openmeeg"`` without other changes.

The electrode-independent part (the inverse of OpenMEEG's head matrix, packed symmetric)
is cached on disk like our own BEM solution, under ``rtsource.cache.cache_dir() / "bem"``.

OpenMEEG numbers triangles the other way round (normals in), so the meshes are handed over
with two vertices of every triangle swapped, innermost surface first, as MNE-Python does.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..cache import cache_file, json_array, json_from_array, write_npz_atomically
from ..errors import ForwardError
from .bem.eeg import MAX_ELECTRODE_DISTANCE_M, project_electrodes
from .bem.model import BemModel, check_sources_inside
from .positions import positions_m

logger = logging.getLogger(__name__)

__all__ = ["OpenMeegSolution", "openmeeg_available", "openmeeg_eeg_leadfield", "solve_openmeeg"]

#: Version of the cached OpenMEEG solution layout.
FORMAT_VERSION = 2  # 2: the geometry is built for any number of layers

_INSTALL_HINT = 'pip install "rtsource[openmeeg]"'
_DIPOLE_BLOCK = 1000


def _import_openmeeg():
    try:
        import openmeeg as om
    except ImportError as exc:
        raise ForwardError(
            f'forward method "openmeeg" needs the OpenMEEG package, which is not installed '
            f"({exc}); install it with: {_INSTALL_HINT} (or use method \"bem\", rtsource's own BEM)"
        ) from None
    return om


@contextlib.contextmanager
def _quiet_stdout():
    """Silence OpenMEEG's C++ progress lines ("64 points have been mapped ...") on fd 1."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def openmeeg_available() -> bool:
    """True if the ``openmeeg`` package can be imported."""
    try:
        _import_openmeeg()
    except ForwardError:
        return False
    return True


@dataclass(frozen=True, eq=False)
class OpenMeegSolution:
    """OpenMEEG's inverted head matrix for a model.

    Attributes
    ----------
    model : BemModel
    inverse_flat : ndarray, shape (n * (n + 1) / 2,)
        The inverse head matrix in OpenMEEG's packed symmetric layout (read-only).
    key : str
        Cache key (model hash, OpenMEEG version, layout version).
    info : Mapping
        "assembly_s", "invert_s" or "load_s", "cached", "openmeeg_version".
    """

    model: BemModel
    inverse_flat: np.ndarray
    key: str
    info: Mapping[str, Any] = field(default_factory=dict)


def _geometry(om, model: BemModel):
    """OpenMEEG geometry of the model's nested surfaces, any number of them.

    OpenMEEG's own ``make_nested_geometry`` takes 1 or 3 meshes; the general
    ``make_geometry`` takes any set of interfaces and domains, so the nesting is spelled
    out here: domain k (innermost "Brain", where the sources are) lies inside interface k
    and outside interface k - 1 (innermost first), "Air" outside the last.
    """
    inner_first = model.surfaces[::-1]
    sigma = [float(x) for x in model.conductivities[::-1]]
    names = [f"interface{k}" for k in range(len(inner_first))]
    meshes = {
        name: (np.asfortranarray(s.vertices_m, dtype=np.float64), np.asfortranarray(s.triangles[:, [1, 0, 2]], dtype=np.int64))
        for name, s in zip(names, inner_first)
    }
    from openmeeg._openmeeg_wrapper import OrientedMesh, SimpleDomain  # what make_geometry expects

    interfaces = {name: [(name, OrientedMesh.Normal)] for name in names}
    inside, outside = SimpleDomain.Inside, SimpleDomain.Outside
    domains = {"Brain": ([(names[0], inside)], sigma[0])}
    for k in range(1, len(names)):
        domains[f"layer{k}"] = ([(names[k - 1], outside), (names[k], inside)], sigma[k])
    domains["Air"] = ([(names[-1], outside)], 0.0)
    return om.make_geometry(meshes, interfaces, domains)


def _key(om, model: BemModel) -> str:
    h = hashlib.sha256()
    h.update(f"rtsource-openmeeg|v{FORMAT_VERSION}|{getattr(om, '__version__', '?')}|".encode())
    h.update(model.hash().encode())
    return "openmeeg-" + h.hexdigest()[:32]


def solve_openmeeg(model: BemModel, *, use_cache: bool = True) -> OpenMeegSolution:
    """Assemble and invert OpenMEEG's head matrix (or load it from the cache).

    Parameters
    ----------
    model : BemModel
        Any number of nested surfaces (outermost first, as everywhere in rtsource's BEM).
    use_cache : bool
        Read and write ``rtsource.cache.cache_dir() / "bem" / openmeeg-<key>.npz``.

    Raises
    ------
    ForwardError
        OpenMEEG is not installed (the message says how to install it).
    """
    om = _import_openmeeg()
    if not isinstance(model, BemModel):
        raise ForwardError(f"model must be a BemModel, got {type(model).__name__}")
    key = _key(om, model)
    path = cache_file("bem", key) if use_cache else None
    version = getattr(om, "__version__", "?")
    if path is not None and path.exists():
        t0 = time.perf_counter()
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json_from_array(z["meta"])
                flat = z["inverse_flat"]
            if meta.get("key") != key or flat.ndim != 1 or not np.isfinite(flat).all():
                raise ValueError("key or content does not match")
            flat.flags.writeable = False
            return OpenMeegSolution(model, flat, key, {"cached": True, "load_s": time.perf_counter() - t0, "openmeeg_version": version})
        except Exception as exc:  # noqa: BLE001 -- a damaged cache entry is recomputed, never trusted
            logger.warning("ignoring damaged OpenMEEG cache file %s (%s); recomputing", path, exc)
    geom = _geometry(om, model)
    t0 = time.perf_counter()
    with om.use_log_level("warning"):
        hm = om.HeadMat(geom)
        t1 = time.perf_counter()
        hm.invert()
    t2 = time.perf_counter()
    flat = np.array(hm.array_flat(), dtype=np.float64)
    flat.flags.writeable = False
    info = {"cached": False, "assembly_s": t1 - t0, "invert_s": t2 - t1, "openmeeg_version": version}
    logger.info("OpenMEEG head matrix %d unknowns: assembly %.1f s, inversion %.1f s", hm.nlin(), t1 - t0, t2 - t1)
    if path is not None:
        try:
            write_npz_atomically(path, inverse_flat=flat, meta=json_array({"key": key, **info}))
        except OSError as exc:
            logger.warning("could not cache the OpenMEEG solution in %s (%s)", path, exc)
    return OpenMeegSolution(model, flat, key, info)


def openmeeg_eeg_leadfield(
    model_or_solution,
    electrodes_m,
    dipoles_m,
    *,
    max_electrode_distance_m: float = MAX_ELECTRODE_DISTANCE_M,
    electrode_labels: Sequence[str] | None = None,
    use_cache: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """EEG lead field of point dipoles from OpenMEEG's symmetric BEM.

    Same inputs, checks and output layout as :func:`rtsource.forward.bem.eeg_bem_leadfield`:
    electrodes more than ``max_electrode_distance_m`` from the scalp and dipoles outside
    the innermost surface are refused; the electrodes are projected onto the scalp.

    Parameters
    ----------
    model_or_solution : BemModel or OpenMeegSolution
    electrodes_m : ndarray, shape (n_electrodes, 3), or Points
        Metres, in the model's frame.
    dipoles_m : ndarray, shape (n_dipoles, 3), or Points
        Metres, inside the innermost surface.
    max_electrode_distance_m : float
    electrode_labels : sequence of str, optional
        Names used in error messages.
    use_cache : bool
        Passed to :func:`solve_openmeeg` when a model is given.

    Returns
    -------
    gain : ndarray, shape (n_electrodes, 3 * n_dipoles)
        V per A*m against infinity; columns dipole-major x, y, z.
    info : dict
        Timings and OpenMEEG's version, for the lead field's description.
    """
    om = _import_openmeeg()
    sol = model_or_solution if isinstance(model_or_solution, OpenMeegSolution) else solve_openmeeg(model_or_solution, use_cache=use_cache)
    model = sol.model
    elec = positions_m(electrodes_m, "electrodes_m", model.frame, model="the BEM model")
    dip = positions_m(dipoles_m, "dipoles_m", model.frame, model="the BEM model")
    if len(elec) == 0:
        raise ForwardError("electrodes_m is empty; pass at least one electrode position")
    check_sources_inside(dip, model)
    proj = project_electrodes(model, elec, float(max_electrode_distance_m), electrode_labels)
    t0 = time.perf_counter()
    geom = _geometry(om, model)
    hminv = om.SymMatrix(np.asarray(sol.inverse_flat))
    with om.use_log_level("warning"), _quiet_stdout():
        sensors = om.make_sensors(np.asfortranarray(proj.points_m), geometry=geom)
        h2em = om.Head2EEGMat(geom, sensors)
        gain = np.empty((len(elec), 3 * len(dip)))
        for start in range(0, len(dip), _DIPOLE_BLOCK):
            block = dip[start : start + _DIPOLE_BLOCK]
            # one row per dipole and axis: position, unit moment (dipole-major x, y, z)
            rows = np.c_[np.repeat(block, 3, axis=0), np.tile(np.eye(3), (len(block), 1))]
            dsm = om.DipSourceMat(geom, om.Matrix(np.asfortranarray(rows)), "Brain")
            gain[:, 3 * start : 3 * (start + len(block))] = om.GainEEG(hminv, dsm, h2em).array()
    info = {
        "openmeeg_version": sol.info.get("openmeeg_version"),
        "solution_key": sol.key,
        "solution_cached": bool(sol.info.get("cached")),
        "leadfield_s": round(time.perf_counter() - t0, 3),
        "max_electrode_projection_mm": round(float(proj.distances_m.max()) * 1e3, 3),
    }
    return gain, info
