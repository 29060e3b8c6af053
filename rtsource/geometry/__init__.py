"""Frames, units, point sets, meshes and transforms (all positions carry frame and unit)."""

from .frames import Frame, Transform, as_frame, check_same_frame
from .mesh import Mesh, Projection, check_nested, project_onto_mesh, signed_distance
from .points import Points
from .units import convert_length, estimate_length_unit, length_factor, parse_signal_unit

__all__ = [
    "Frame",
    "Transform",
    "as_frame",
    "check_same_frame",
    "Mesh",
    "Projection",
    "check_nested",
    "project_onto_mesh",
    "signed_distance",
    "Points",
    "convert_length",
    "estimate_length_unit",
    "length_factor",
    "parse_signal_unit",
]
