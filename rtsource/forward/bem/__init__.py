"""Boundary-element forward models: EEG (1 to n layers) and MEG (single layer).

The work splits in two, one module per concept:

- :mod:`.model`: the head as nested closed surfaces with a conductivity per compartment
  (:class:`BemModel`, outermost first), validated on construction.
- :mod:`.integrals`: the solid-angle integrals of hat functions over triangles (numba
  kernels in :mod:`rtsource.forward._bem_kernels`), with optional butterfly refinement.
- :mod:`.solve`: :func:`solve_bem` (seconds, once per head model) assembles and solves for
  the transfer matrix of the sources' infinite-medium potentials to the outer surface's
  potentials, cached on disk (:class:`BemSolution`).
- :mod:`.eeg` / :mod:`.meg`: the sensor steps (fractions of a second): electrodes projected
  onto the scalp (:func:`eeg_bem_leadfield`), or the magnetic field with the volume
  currents (:func:`meg_bem_field`, :func:`meg_bem_leadfield`).

The lead field of a montage or MEG array in a BEM head comes from the one entry point
:func:`rtsource.forward.leadfield.make_leadfield` with a
:class:`rtsource.forward.head_model.BemHead`; OpenMEEG's symmetric BEM, which takes the same
:class:`BemModel`, is in :mod:`rtsource.forward.openmeeg_backend`.
"""

from .eeg import MAX_ELECTRODE_DISTANCE_M, BemLeadfieldReport, eeg_bem_leadfield
from .integrals import warm_up
from .meg import meg_bem_field, meg_bem_leadfield
from .model import DEFAULT_CONDUCTIVITIES, BemModel, bem_model_from_surfaces, concentric_sphere_model
from .solve import FORMAT_VERSION, BemSolution, solve_bem

__all__ = [
    "DEFAULT_CONDUCTIVITIES",
    "FORMAT_VERSION",
    "MAX_ELECTRODE_DISTANCE_M",
    "BemLeadfieldReport",
    "BemModel",
    "BemSolution",
    "bem_model_from_surfaces",
    "concentric_sphere_model",
    "eeg_bem_leadfield",
    "meg_bem_field",
    "meg_bem_leadfield",
    "solve_bem",
    "warm_up",
]
