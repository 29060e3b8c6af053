"""Lead-field assembly: sensors + sources + head model -> gain matrix.

The gain is stored against infinity (un-referenced). EEG potentials are differences, so the
inverse re-references the gain with the same matrix M as the data (average reference, or
"minus the reference channel"; ``rtsource.inverse.minimum_norm.reference_matrix``), which
keeps data and model treated exactly alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..anatomy.source_space import SourceSpace
from ..anatomy.template import Template
from ..errors import ForwardError
from ..geometry import check_same_frame
from ..sensors.montage import Montage
from .sphere import SphereModel, eeg_sphere_leadfield, fit_sphere, make_sphere_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeadField:
    """A gain matrix with what it was computed for.

    Attributes
    ----------
    gain : ndarray, shape (n_channels, 3 * n_sources)
        Potentials against infinity (un-referenced), V per A*m; columns dipole-major x, y, z.
    ch_names : tuple of str
    channel_positions_m : ndarray, shape (n_channels, 3)
    sources : SourceSpace
    model : Mapping
        Description of the head model (kind, centre, radii, conductivities).
    terms : ndarray of int, shape (n_sources,)
        Series terms used per source (sphere models).
    """

    gain: np.ndarray
    ch_names: tuple[str, ...]
    channel_positions_m: np.ndarray
    sources: SourceSpace
    model: Mapping[str, Any] = field(default_factory=dict)
    terms: np.ndarray | None = None

    def normal_gain(self) -> np.ndarray:
        """Gain of dipoles along the surface normals, shape (n_channels, n_sources)."""
        g = self.gain.reshape(len(self.ch_names), -1, 3)
        return np.einsum("csk,sk->cs", g, self.sources.normals)


def sphere_model_for_template(template: Template, relative_radii, conductivities) -> SphereModel:
    """Concentric spheres fitted to the template's upper scalp (above the fiducial plane)."""
    scalp = template.surfaces.scalp.vertices_m
    z_cut = template.fiducials.positions_m[:, 2].min()
    center, radius = fit_sphere(scalp[scalp[:, 2] > z_cut])
    return make_sphere_model(center, radius, template.frame, relative_radii=tuple(relative_radii), conductivities=tuple(conductivities))


def make_eeg_leadfield(
    montage: Montage,
    sources: SourceSpace,
    model: SphereModel,
    *,
    rtol: float = 1e-6,
    max_inward_shift_m: float = 0.003,
) -> LeadField:
    """EEG lead field of ``sources`` at the electrodes of ``montage`` in a sphere model.

    A sphere fitted to a real scalp does not enclose every cortical vertex inside its brain
    shell. Sources at most ``max_inward_shift_m`` outside that shell are evaluated 0.5 mm
    inside it, along their radius (the "inward shift" FieldTrip also applies); how many and
    by how much is logged and recorded in ``LeadField.model``. Sources further out are an
    error: the model cannot represent them.

    Raises
    ------
    FrameError
        Electrodes, sources and model are not all in one frame.
    ForwardError
        Sources too far outside the innermost shell, or a series that did not converge.
    """
    check_same_frame(montage.frame, sources.frame, "the electrodes", "the source space")
    check_same_frame(montage.frame, model.frame, "the electrodes", "the head model")
    elec = montage.electrodes.positions_m
    if len(elec) < 3:
        raise ForwardError(f"need at least 3 electrodes for an EEG forward model, got {len(elec)}")
    pos = sources.positions_m.copy()
    rel = pos - model.center_m
    r = np.linalg.norm(rel, axis=1)
    limit = model.radii_m[0] - 0.5e-3
    shift = (r > limit) & (r <= model.radii_m[0] + max_inward_shift_m)
    if shift.any():
        pos[shift] = model.center_m + rel[shift] * (limit / r[shift])[:, None]
        logger.warning(
            "%d of %d sources lie up to %.2f mm outside the innermost sphere (r = %.1f mm); "
            "evaluated 0.5 mm inside it",
            int(shift.sum()),
            len(pos),
            float((r[shift] - limit).max()) * 1e3,
            model.radii_m[0] * 1e3,
        )
    gain, report = eeg_sphere_leadfield(elec, pos, model, rtol=rtol)
    logger.info(
        "sphere lead field %d x %d: series terms %d..%d (eccentricity up to %.3f)",
        gain.shape[0],
        gain.shape[1],
        int(report.n_terms.min()),
        int(report.n_terms.max()),
        float(report.eccentricity.max()),
    )
    desc = {
        "kind": "eeg_sphere_series",
        "frame": model.frame.value,
        "center_m": np.asarray(model.center_m).tolist(),
        "radii_m": np.asarray(model.radii_m).tolist(),
        "conductivities_s_per_m": np.asarray(model.conductivities).tolist(),
        "rtol": rtol,
        "max_terms": int(report.n_terms.max()),
        "sources_shifted_inward": int(shift.sum()),
        "max_inward_shift_mm": round(float((r[shift] - limit).max()) * 1e3, 3) if shift.any() else 0.0,
    }
    return LeadField(gain, montage.labels, elec, sources, desc, report.n_terms)
