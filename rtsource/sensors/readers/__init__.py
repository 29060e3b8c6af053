"""Readers of electrode and digitiser position files, and of transform files.

Every reader returns a :class:`Digitization`: electrodes (labelled), fiducials (NAS, LPA,
RPA), headshape points and head-localisation (HPI) coils, each as :class:`Points` in metres
in one frame, plus a :class:`ReadReport` that says which unit and frame were assumed and
why. Positions are converted to metres here, at the edge, and nowhere else.

Formats
-------
========================  ==================================================================
``*_electrodes.tsv``      BIDS: tab-separated ``name x y z ...`` with the sibling
                          ``*_coordsystem.json`` giving units, coordinate system, landmarks
                          (``AnatomicalLandmarkCoordinates``) and head coils.
``.elc``                  ASA / ANT Neuro: ``UnitPosition``, ``Positions`` (``x y z`` or
                          ``label : x y z``), ``Labels`` (one per line or tab-separated).
``.sfp``                  BESA / EGI: ``label x y z`` per line, no unit (guessed); EGI's
                          ``FidNz``, ``FidT9``, ``FidT10`` are the fiducials.
``.bvef`` / ``.bvct``     BrainVision XML: ``<Electrode>`` with ``Name``, ``Theta``, ``Phi``,
                          ``Radius`` (degrees, mm; BESA convention, see :func:`read_bvef`), or
                          CapTrak ``<CapTrakElectrode>`` with ``X``, ``Y``, ``Z`` in mm.
``.pos`` ``.hsp`` ``.elp``  Polhemus-style digitiser text (see :func:`read_polhemus`).
``.csv`` ``.tsv`` ``.txt``  Generic ``label,x,y,z`` (see :func:`read_positions_csv`).
========================  ==================================================================

One module per family (:mod:`.bids`, :mod:`.elc`, :mod:`.sfp`, :mod:`.brainvision`,
:mod:`.polhemus`, :mod:`.generic_csv`), one registry (:mod:`.registry`: format name and file
name -> reader) that :func:`read_digitization` and :func:`read_montage` dispatch through, the
result types in :mod:`.digitization`, unit handling in :mod:`.units`, and transform files
(:func:`read_transform`, :func:`write_transform`) in :mod:`.transform_files`.

Units. A unit the file states is used; a unit passed by the caller overrides it; only when
neither exists is it guessed from the extent (:func:`rtsource.geometry.estimate_length_unit`).
A stated unit that the extent contradicts -- a head that would be under 5 cm or over 1 m
across, when a unit 10 or more times smaller or larger makes it head-sized -- is refused
with :class:`~rtsource.errors.UnitError` (millimetres read as metres and the reverse).

Errors. A malformed file raises :class:`~rtsource.errors.GeometryError` naming the file,
the line number and the offending text; duplicate labels raise
:class:`~rtsource.errors.ChannelError`; units :class:`~rtsource.errors.UnitError`. No other
exception escapes a reader (the property tests feed them random and mutated files).
"""

from __future__ import annotations

from .bids import read_bids_electrodes
from .brainvision import BVEF_SPHERE_RADIUS_M, read_bvef
from .digitization import Digitization, ReadReport
from .elc import read_elc
from .generic_csv import read_positions_csv, write_positions_csv
from .polhemus import read_polhemus
from .registry import FORMATS, READERS, PositionFormat, detect_format, read_digitization, read_montage
from .sfp import read_sfp
from .transform_files import read_transform, write_transform
from .units import HEAD_EXTENT_RANGE_M, check_unit_against_extent, parse_length_unit

__all__ = [
    "BVEF_SPHERE_RADIUS_M",
    "Digitization",
    "FORMATS",
    "HEAD_EXTENT_RANGE_M",
    "PositionFormat",
    "READERS",
    "ReadReport",
    "check_unit_against_extent",
    "detect_format",
    "parse_length_unit",
    "read_bids_electrodes",
    "read_bvef",
    "read_digitization",
    "read_elc",
    "read_montage",
    "read_polhemus",
    "read_positions_csv",
    "read_sfp",
    "read_transform",
    "write_positions_csv",
    "write_transform",
]
