"""Coregistration: put digitised electrodes (and headshape points) on the head model.

    position file(s) ─> Digitization (frame UNKNOWN / HEAD / CTF / TEMPLATE)
        ─> initial alignment to the template   (fiducials, else electrode labels, else frame)
        ─> ICP refinement against the scalp    (point-to-plane, robust, optional scale)
        ─> projection of the electrodes onto the scalp
        ─> quality control (distances to the scalp, refusal threshold, QC picture)

One module per stage:

:mod:`.alignment`
    The initial alignment (:func:`fiducial_alignment`, :func:`label_alignment`,
    :func:`initial_alignment`) and the MEG chain DEVICE -> HEAD -> TEMPLATE
    (:func:`head_to_template`, :func:`device_to_template`).
:mod:`.icp`
    Robust point-to-plane ICP (:func:`icp_to_surface`, Tukey's :func:`tukey_weights`).
:mod:`.qc`
    Distances to the scalp, outliers and the refusal test (:func:`measure_fit`,
    :class:`CoregQC`), and :class:`CoregResult`.
:mod:`.register`
    The step that runs them in order (:func:`coregister`), and its file-level entry points
    :func:`run_coreg` (``rtsource coreg``) and :func:`template_montage` (the offline build).
"""

from __future__ import annotations

from .alignment import device_to_template, fiducial_alignment, head_to_template, initial_alignment, label_alignment
from .icp import IcpFit, icp_to_surface, tukey_weights
from .qc import DEFAULT_MAX_OUTLIER_FRACTION, DEFAULT_MAX_RMS_MM, CoregQC, CoregResult, measure_fit
from .register import METHODS, coregister, run_coreg, template_montage

__all__ = [
    "DEFAULT_MAX_OUTLIER_FRACTION",
    "DEFAULT_MAX_RMS_MM",
    "METHODS",
    "CoregQC",
    "CoregResult",
    "IcpFit",
    "coregister",
    "device_to_template",
    "fiducial_alignment",
    "head_to_template",
    "icp_to_surface",
    "initial_alignment",
    "label_alignment",
    "measure_fit",
    "run_coreg",
    "template_montage",
    "tukey_weights",
]
