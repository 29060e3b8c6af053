"""MNE-Python objects in and out of rtsource (optional extra ``mne``).

Four bridges, all matching channels by name, never by position:

``bundle_from_forward``
    Our inverse on their forward: an MNE ``Info`` + ``Forward`` + noise ``Covariance`` (and
    optionally a montage for the recorded electrode positions) become an
    :class:`~rtsource.bundle.OperatorBundle` through
    :func:`rtsource.inverse.minimum_norm.make_inverse_operator`.
``bundle_from_inverse``
    Their inverse, our streaming: an MNE ``InverseOperator`` is prepared
    (``mne.minimum_norm.prepare_inverse_operator``) and its kernel and noise normalisation
    are extracted so that the loop's pooled / normalised output equals MNE's
    ``apply_inverse_raw``.
``labels_to_rois``
    MNE ``Label``s as rtsource ROIs (source indices of a bundle).
``to_source_estimate``
    Published source blocks (timestamps + values) as an MNE ``SourceEstimate`` for
    offline plotting.

Conventions
-----------
Gain columns: MNE's free-orientation gain is source-major x, y, z, which is rtsource's
"dipole-major x, y, z" convention, so columns are used as they are. The frame is the
forward's ``coord_frame``: MNE computes forwards in the **head** frame (Neuromag head
coordinates from the fiducials), so bundles made here have ``sources.frame == Frame.HEAD``
(``Frame.MRI`` if a forward is in MRI coordinates), with positions in metres. Surface
sources whose source space carries patch information get MNE's patch-averaged normals
(``use_cps=True``), as MNE's own inverse does; anything else gets the vertex normals.

Reference: rtsource folds the re-referencing matrix ``M`` into the kernel. From an MNE
``Info`` it is the SSP projector of ``info['projs'] + cov['projs']`` restricted, by name,
to the operator's channels (MNE's ``make_projector``). The bundle's ``reference`` then reads

- ``"average"``: the projector is the average reference over the operator's channels;
- ``"projectors"``: other SSP projectors (their descriptions are in the provenance);
- ``"none"``: no projector (the data are referenced upstream, ``custom_ref_applied``, or MEG);
- a channel name, or ``"average"``, when the caller passes ``reference=`` explicitly.

Modules: :mod:`.operators` (the two bundle bridges), :mod:`.channels` (picking, projectors,
covariance, positions), :mod:`.sources` (source spaces and vertex numbers), :mod:`.labels`,
:mod:`.source_estimate`.

MNE-Python imports only inside these functions (``import rtsource.interop`` stays cheap).
"""

from __future__ import annotations

from ._common import CHANNEL_KINDS, MissingDependency
from .channels import noise_covariance_from_mne, projector_matrix
from .labels import labels_to_rois
from .operators import bundle_from_forward, bundle_from_inverse
from .source_estimate import to_source_estimate
from .sources import source_space_from_mne, source_vertices

__all__ = [
    "CHANNEL_KINDS",
    "MissingDependency",
    "bundle_from_forward",
    "bundle_from_inverse",
    "labels_to_rois",
    "noise_covariance_from_mne",
    "projector_matrix",
    "source_space_from_mne",
    "source_vertices",
    "to_source_estimate",
]
