"""MEG sensors: coils with integration points, sensor arrays, a file format, a generic helmet.

A MEG channel measures the magnetic flux through one or more pick-up loops; numerically it is
a set of integration points with weights, placed by the channel's position and rotation
(Hamalainen et al. 1993, Rev Mod Phys 65:413, sec. IV). The package is split by concept:

:mod:`.coils`
    Coil types (``mag``, ``planar_grad``, ``axial_grad``, ``eeg``), their integration points
    at three accuracies (:func:`coil_definition`), and per-type tables (signal unit,
    whitening group, LSL type, ad hoc noise).
:mod:`.array`
    :class:`MegArray` (channels as placed coils, in one frame, with an optional
    device -> head transform; picking, moving, applying the coil weights) and
    :func:`make_meg_array`.
:mod:`.vendor_coils`
    The coils of real systems (Vectorview/TRIUX, CTF, KIT/Ricoh, Magnes, OPMs) by FIFF coil
    type id at the three accuracies (:func:`vendor_coil_definition`, :func:`coil_registry`).
:mod:`.compensation`
    :class:`GradientCompensation`: reference sensors and the CTF synthetic-gradient matrix
    carried with an array (lead field ``G - C G_ref``).
:mod:`.fif`
    :func:`meg_array_from_info`, :func:`read_meg_array_fif`: the array of a recording's
    channel info (MNE-Python, imported lazily).
:mod:`.helmet`
    :func:`generic_meg_array`: a 306-channel whole-head array around the template head.
:mod:`.io`
    The ``rtsource-meg-array`` JSON file (:func:`read_meg_array`, :func:`write_meg_array`),
    a configuration's array spec (:func:`load_meg_array`) and the stream-header metadata of
    an array (:func:`channel_metadata`).
"""

from __future__ import annotations

from .array import MegArray, make_meg_array
from .coils import (
    ACCURACIES,
    AD_HOC_NOISE_STD,
    AXIAL_BASELINE_M,
    AXIAL_RADIUS_M,
    COIL_TYPES,
    LSL_TYPE,
    MAG_SIDE_M,
    PLANAR_BASELINE_M,
    PLANAR_LOBE_M,
    WHITENING_GROUP,
    CoilDef,
    ad_hoc_noise_std,
    coil_definition,
)
from .compensation import GradientCompensation
from .fif import meg_array_from_info, read_meg_array_fif
from .vendor_coils import REFERENCE_COIL_TYPES, VendorCoil, coil_registry, vendor_coil, vendor_coil_definition
from .helmet import GENERIC_GAP_M, GENERIC_N_SITES, generic_helmet_transform, generic_meg_array
from .io import channel_metadata, load_meg_array, meg_array_from_dict, meg_array_to_dict, read_meg_array, write_meg_array

__all__ = [
    "ACCURACIES",
    "AD_HOC_NOISE_STD",
    "AXIAL_BASELINE_M",
    "AXIAL_RADIUS_M",
    "COIL_TYPES",
    "CoilDef",
    "GENERIC_GAP_M",
    "GradientCompensation",
    "REFERENCE_COIL_TYPES",
    "VendorCoil",
    "coil_registry",
    "meg_array_from_info",
    "read_meg_array_fif",
    "vendor_coil",
    "vendor_coil_definition",
    "GENERIC_N_SITES",
    "LSL_TYPE",
    "MAG_SIDE_M",
    "MegArray",
    "PLANAR_BASELINE_M",
    "PLANAR_LOBE_M",
    "WHITENING_GROUP",
    "ad_hoc_noise_std",
    "channel_metadata",
    "coil_definition",
    "generic_helmet_transform",
    "generic_meg_array",
    "load_meg_array",
    "make_meg_array",
    "meg_array_from_dict",
    "meg_array_to_dict",
    "read_meg_array",
    "write_meg_array",
]
