"""MEG arrays in and out: the ``rtsource-meg-array`` JSON file, a configuration's array spec,
and the per-channel metadata a stream header carries.

JSON file format (``rtsource-meg-array``, version 1)
---------------------------------------------------
UTF-8 JSON, one object::

    {
      "format": "rtsource-meg-array",          # required, exactly this
      "version": 1,                            # required
      "name": "my-system",                     # optional
      "frame": "device",                       # required: device, head, template, mri, ctf
      "unit": "mm",                            # required: m, cm or mm (every length below)
      "accuracy": "normal",                    # optional: point, normal (default), accurate
      "dev_head_t": {                          # optional: only for frame "device"
        "to": "head",                          #   head or template (or mri)
        "matrix": [[1,0,0,0],[0,1,0,0],[0,0,1,40],[0,0,0,1]]  # 4x4, translation in "unit"
      },
      "channels": [                            # required, at least one
        {"name": "MEG001G1", "type": "planar_grad",
         "position": [x, y, z],                # coil centre, in "unit"
         "normal": [nx, ny, nz],               # unit vector, away from the head
         "x_axis": [ex, ey, ez]},              # unit, normal to "normal"; required for
                                               #   planar_grad (the gradient direction)
        {"name": "MEG001M", "type": "mag", "position": [...], "normal": [...],
         "coil_type": 3024}                    # optional: the vendor coil (FIFF id, see
                                               #   rtsource.sensors.meg.vendor_coils); all
                                               #   channels or none
      ],
      "compensation": {                        # optional: gradient compensation in effect
        "grade": 3,                            #   >= 1 (CTF synthetic gradient order)
        "references": [ ...channel objects... ],  # the reference sensors, same keys
        "matrix": [[...], ...]                 #   n_channels x n_references
      }
    }

``type`` is one of ``mag``, ``planar_grad``, ``axial_grad`` (and ``eeg``). Unknown keys are
an error (a misspelt ``"x-axis"`` must not be silently ignored). Every error names the
offending entry (``channels[17] ('MEG006G2')``) and says what to fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ChannelError, FrameError, GeometryError, UnitError
from ...geometry import Frame, Transform, as_frame
from ...geometry.units import length_factor
from .array import MegArray, make_meg_array
from .coils import ACCURACIES, COIL_TYPES, LSL_TYPE
from .compensation import GradientCompensation
from .helmet import generic_meg_array

_FORMAT = "rtsource-meg-array"
_TOP_KEYS = {"format", "version", "name", "frame", "unit", "accuracy", "dev_head_t", "channels", "compensation"}
_CHANNEL_KEYS = {"name", "type", "position", "normal", "x_axis", "coil_type"}
_COMPENSATION_KEYS = {"grade", "references", "matrix"}


def _vector(entry: dict, key: str, where: str, required: bool = True):
    if key not in entry:
        if required:
            raise ChannelError(f"{where}: {key!r} is missing; give it as [x, y, z]")
        return None
    v = entry[key]
    if (
        not isinstance(v, list)
        or len(v) != 3
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    ):
        raise ChannelError(f"{where}: {key!r} must be a list of 3 numbers, got {v!r}")
    a = np.asarray(v, dtype=float)
    if not np.all(np.isfinite(a)):
        raise ChannelError(f"{where}: {key!r} = {v!r} is not finite")
    return a


def meg_array_from_dict(doc: Any, *, source: str = "MEG array document") -> MegArray:
    """Validate a parsed ``rtsource-meg-array`` document (see the module docstring)."""
    if not isinstance(doc, dict):
        raise ChannelError(f"{source}: the top level must be a JSON object, got {type(doc).__name__}")
    extra = sorted(set(doc) - _TOP_KEYS)
    if extra:
        raise ChannelError(f"{source}: unknown top-level keys {extra}; allowed: {sorted(_TOP_KEYS)}")
    if doc.get("format") != _FORMAT:
        raise ChannelError(f"{source}: 'format' must be {_FORMAT!r}, got {doc.get('format')!r}")
    if doc.get("version") != 1:
        raise ChannelError(f"{source}: 'version' {doc.get('version')!r} is not supported; this rtsource reads version 1")
    if "frame" not in doc:
        raise ChannelError(f"{source}: 'frame' is missing; say which frame the positions are in (e.g. 'device')")
    try:
        frame = as_frame(doc["frame"])
    except FrameError as exc:
        raise FrameError(f"{source}: {exc}") from None
    if frame == Frame.UNKNOWN:
        raise FrameError(f"{source}: frame 'unknown' is not allowed for a MEG array; name the real frame (usually 'device')")
    unit = doc.get("unit")
    if unit is None:
        raise ChannelError(f"{source}: 'unit' is missing; give the length unit of the positions ('m', 'cm' or 'mm')")
    try:
        scale = length_factor(str(unit))
    except UnitError as exc:
        raise ChannelError(f"{source}: {exc}") from None
    accuracy = doc.get("accuracy", "normal")
    if accuracy not in ACCURACIES:
        raise ChannelError(f"{source}: 'accuracy' {accuracy!r} is not known; use one of {', '.join(ACCURACIES)}")
    names, types, pos, nrm, xs, coil_types = _channel_list(doc.get("channels"), scale, source, "channels")
    dev_head_t = None
    if "dev_head_t" in doc and doc["dev_head_t"] is not None:
        spec = doc["dev_head_t"]
        if frame != Frame.DEVICE:
            raise ChannelError(f"{source}: 'dev_head_t' is only allowed with frame 'device', but frame is {frame.value!r}")
        if not isinstance(spec, dict) or set(spec) - {"to", "matrix"} or "matrix" not in spec:
            raise ChannelError(f"{source}: 'dev_head_t' must be an object {{'to': 'head', 'matrix': 4x4 list}}, got {spec!r}")
        try:
            m = np.asarray(spec["matrix"], dtype=float)
        except (TypeError, ValueError):
            m = np.zeros(0)
        if m.shape != (4, 4):
            raise ChannelError(f"{source}: 'dev_head_t' matrix must be 4x4 numbers, got {spec['matrix']!r}")
        m = m.copy()
        m[:3, 3] *= scale
        try:
            dev_head_t = Transform(Frame.DEVICE, as_frame(spec.get("to", "head")), m)
        except FrameError as exc:
            raise FrameError(f"{source}: 'dev_head_t': {exc}") from None
    try:
        compensation = None
        if doc.get("compensation") is not None:
            compensation = _compensation_from(doc["compensation"], scale, source, frame, accuracy, dev_head_t)
        return make_meg_array(
            names, types, np.asarray(pos), np.asarray(nrm), xs, frame=frame, accuracy=accuracy,
            dev_head_t=dev_head_t, name=str(doc.get("name", source)), coil_types=coil_types, compensation=compensation,
        )
    except (GeometryError, ChannelError, FrameError) as exc:
        raise type(exc)(f"{source}: {exc}") from None


def _channel_list(chans: Any, scale: float, source: str, key: str):
    """Parse a list of channel objects: names, types, positions (m), normals, x axes, coil ids."""
    if not isinstance(chans, list) or not chans:
        raise ChannelError(f"{source}: {key!r} must be a non-empty list of channel objects")
    names, types, pos, nrm, xs, ids = [], [], [], [], [], []
    for i, entry in enumerate(chans):
        label = entry.get("name") if isinstance(entry, dict) else None
        where = f"{source}: {key}[{i}]" + (f" ({label!r})" if isinstance(label, str) else "")
        if not isinstance(entry, dict):
            raise ChannelError(f"{where} must be an object with name, type, position, normal, got {entry!r}")
        unknown = sorted(set(entry) - _CHANNEL_KEYS)
        if unknown:
            raise ChannelError(f"{where}: unknown keys {unknown}; allowed: {sorted(_CHANNEL_KEYS)}")
        if not isinstance(label, str) or not label.strip():
            raise ChannelError(f"{where}: 'name' must be a non-empty string, got {label!r}")
        kind = entry.get("type")
        if kind not in COIL_TYPES:
            raise ChannelError(f"{where}: coil type {kind!r} is not known; use one of {', '.join(COIL_TYPES)}")
        cid = entry.get("coil_type")
        if cid is not None and (not isinstance(cid, int) or isinstance(cid, bool)):
            raise ChannelError(f"{where}: 'coil_type' must be an integer FIFF coil type id (e.g. 3012), got {cid!r}")
        names.append(label)
        types.append(kind)
        pos.append(_vector(entry, "position", where) * scale)
        nrm.append(_vector(entry, "normal", where))
        xs.append(_vector(entry, "x_axis", where, required=False))
        ids.append(cid)
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise ChannelError(f"{source}: channel names {dup} appear more than once in {key!r}; names must be unique")
    given = [x is not None for x in ids]
    if any(given) and not all(given):
        i = given.index(False)
        raise ChannelError(
            f"{source}: {key}[{i}] ({names[i]!r}) has no 'coil_type' but others do; give the vendor coil of every "
            f"channel or of none"
        )
    return names, types, pos, nrm, xs, (tuple(ids) if all(given) else None)


def _compensation_from(spec: Any, scale: float, source: str, frame, accuracy: str, dev_head_t) -> GradientCompensation:
    if not isinstance(spec, dict) or set(spec) - _COMPENSATION_KEYS or not _COMPENSATION_KEYS <= set(spec):
        raise ChannelError(
            f"{source}: 'compensation' must be an object with exactly the keys {sorted(_COMPENSATION_KEYS)}, got "
            f"{sorted(spec) if isinstance(spec, dict) else type(spec).__name__}"
        )
    names, types, pos, nrm, xs, ids = _channel_list(spec["references"], scale, source, "compensation.references")
    refs = make_meg_array(
        names, types, np.asarray(pos), np.asarray(nrm), xs, frame=frame, accuracy=accuracy, dev_head_t=dev_head_t,
        name="references", coil_types=ids,
    )  # fmt: skip
    try:
        matrix = np.asarray(spec["matrix"], dtype=float)
    except (TypeError, ValueError):
        raise ChannelError(f"{source}: 'compensation.matrix' must be a list of rows of numbers") from None
    return GradientCompensation(spec["grade"], matrix, refs)


def read_meg_array(path: str | Path) -> MegArray:
    """Read a sensor array from an ``rtsource-meg-array`` JSON file (module docstring).

    Raises
    ------
    ChannelError
        Unreadable JSON (with line and column), missing or unknown keys, unknown coil types;
        every message names the file and the offending entry.
    GeometryError
        Non-unit or non-perpendicular orientations, named by entry.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ChannelError(f"cannot read MEG array file {str(path)!r}: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ChannelError(
            f"MEG array file {str(path)!r} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    return meg_array_from_dict(doc, source=f"MEG array file {path.name!r}")


def meg_array_to_dict(array: MegArray, *, unit: str = "mm") -> dict:
    """The ``rtsource-meg-array`` document of ``array`` (lengths in ``unit``)."""
    scale = 1.0 / length_factor(unit)
    doc: dict[str, Any] = {
        "format": _FORMAT,
        "version": 1,
        "name": array.name,
        "frame": array.frame.value,
        "unit": unit,
        "accuracy": array.accuracy,
    }
    if array.dev_head_t is not None and array.frame == Frame.DEVICE:
        m = np.array(array.dev_head_t.matrix)
        m[:3, 3] *= scale
        doc["dev_head_t"] = {"to": array.dev_head_t.to_frame.value, "matrix": m.round(12).tolist()}
    doc["channels"] = _channel_entries(array, scale)
    comp = array.compensation
    if comp is not None:
        doc["compensation"] = {
            "grade": comp.grade,
            "references": _channel_entries(comp.references, scale),
            "matrix": [[float(x) for x in row] for row in comp.matrix],
        }
    return doc


def _channel_entries(array: MegArray, scale: float) -> list[dict]:
    chans = []
    for i, (n, t) in enumerate(zip(array.ch_names, array.ch_types)):
        entry = {
            "name": n,
            "type": t,
            "position": [round(float(x), 9) for x in array.positions_m[i] * scale],
            "normal": [round(float(x), 12) for x in array.rotations[i, :, 2]],
            "x_axis": [round(float(x), 12) for x in array.rotations[i, :, 0]],
        }
        if array.coil_types is not None:
            entry["coil_type"] = int(array.coil_types[i])
        chans.append(entry)
    return chans


def write_meg_array(array: MegArray, path: str | Path, *, unit: str = "mm") -> None:
    """Write ``array`` as an ``rtsource-meg-array`` JSON file (lengths in ``unit``)."""
    path = Path(path)
    text = json.dumps(meg_array_to_dict(array, unit=unit), indent=1)
    path.write_text(text + "\n", encoding="utf-8")


def load_meg_array(spec: str | Path, *, accuracy: str | None = None) -> MegArray:
    """The array a configuration names: ``"generic"``, a JSON array file or a FIF recording.

    Parameters
    ----------
    spec : str or Path
        ``"generic"`` (:func:`generic_meg_array`), an ``rtsource-meg-array`` file, or a
        ``.fif``/``.fif.gz`` recording (its channel info, through MNE-Python:
        :func:`rtsource.sensors.meg.fif.read_meg_array_fif`).
    accuracy : {"point", "normal", "accurate"}, optional
        Override the coil integration accuracy (default: the file's, or "normal").
    """
    if str(spec) == "generic":
        return generic_meg_array(accuracy or "normal")
    if str(spec).lower().endswith((".fif", ".fif.gz")):
        from .fif import read_meg_array_fif

        return read_meg_array_fif(spec, accuracy=accuracy or "normal")
    array = read_meg_array(spec)
    return array if accuracy is None or accuracy == array.accuracy else array.with_accuracy(accuracy)


def channel_metadata(array: MegArray, *, unit: str = "mm") -> tuple[dict[str, str], ...]:
    """Per channel the values a stream header (LSL ``desc/channels/channel``) carries.

    Keys: ``label``, ``type`` (``MAG``/``GRAD``/``EEG``), ``unit`` (``T``, ``T/m``, ``V``),
    ``X``, ``Y``, ``Z`` (coil centre in ``unit``), ``normal`` and ``x_axis`` (three
    space-separated numbers), and ``frame``; ``coil_type`` (the vendor coil's FIFF id) when
    the array has vendor coils. Strings, ready for ``append_child_value``.
    """
    scale = 1.0 / length_factor(unit)
    out = []
    for i, name in enumerate(array.ch_names):
        p = array.positions_m[i] * scale
        out.append(
            {
                "label": name,
                "type": LSL_TYPE[array.ch_types[i]],
                "unit": COIL_TYPES[array.ch_types[i]],
                "X": f"{p[0]:.3f}",
                "Y": f"{p[1]:.3f}",
                "Z": f"{p[2]:.3f}",
                "normal": " ".join(f"{x:.6f}" for x in array.rotations[i, :, 2]),
                "x_axis": " ".join(f"{x:.6f}" for x in array.rotations[i, :, 0]),
                "frame": array.frame.value,
            }
        )
        if array.coil_types is not None:
            out[-1]["coil_type"] = str(array.coil_types[i])
    return tuple(out)


__all__ = [
    "channel_metadata",
    "load_meg_array",
    "meg_array_from_dict",
    "meg_array_to_dict",
    "read_meg_array",
    "write_meg_array",
]
