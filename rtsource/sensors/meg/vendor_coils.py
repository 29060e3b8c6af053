"""The MEG coils of real systems: a typed registry from coil type id to integration points.

A recording names each MEG channel's coil by an integer *coil type* (the FIFF convention,
``info["chs"][k]["coil_type"]`` in MNE-Python; the upper 16 bits carry the CTF
compensation grade and are not part of the type). Each type has integration points at three
accuracies (``"point"``, ``"normal"``, ``"accurate"``), as in MNE-Python. The numbers come
from Matti Hamalainen's ``coil_def.dat`` (MNE-C; shipped with MNE-Python, BSD-3-Clause),
regenerated into ``data/coil_definitions.json`` by ``tools/make_coil_table.py``; the coil
geometry behind them is in Hamalainen et al. (1993, Rev Mod Phys 65:413, sec. IV) and the
vendors' sensor specifications.

Systems covered (the ids are the FIFF constants)
-----------------------------------------------
==================================  ==========================================================
Elekta/MEGIN Vectorview, TRIUX      planar gradiometers 3012, 3013, 3014, 3015;
                                    magnetometers 3022, 3023, 3024, 3025 (TRIUX: 3012/3024)
Neuromag-122                        planar gradiometer 2
CTF                                 axial gradiometer 5001; references: magnetometer 5002,
                                    gradiometers 5003 (diagonal), 5004 (off-diagonal)
KIT/Yokogawa, Ricoh                 axial gradiometer 6001 (Ricoh systems are read with the
                                    same type); reference magnetometer 6002
4D/BTi Magnes                       magnetometer 4001, gradiometer 4002; references 4003-4005
OPM: QuSpin                         8001 (Gen1), 8002 (Gen2)
OPM: FieldLine                      8101
OPM: Kernel Flux                    8201
others                              BabySQUID/BabyMEG 7001-7004, Artemis123 7501-7503,
                                    KRISS 9001, Compumedics 9101/9102, point magnetometer 2000
==================================  ==========================================================

Multi-axis OPMs are one channel per sensitive axis, each with its own orientation (the
channel's rotation); the coil type is the same for all axes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import numpy as np

from ...arrays import frozen as _ro
from ...errors import ChannelError
from .coils import ACCURACIES, COIL_TYPES, CoilDef

__all__ = [
    "COMPENSATION_GRADE_SHIFT",
    "REFERENCE_COIL_TYPES",
    "VendorCoil",
    "coil_registry",
    "vendor_coil",
    "vendor_coil_definition",
]

_TABLE = Path(__file__).parent / "data" / "coil_definitions.json"
#: The compensation grade sits in the coil type's upper 16 bits (FIFF convention).
COMPENSATION_GRADE_SHIFT = 16
#: Coil types of reference sensors (used for gradient compensation, not as data channels).
REFERENCE_COIL_TYPES = frozenset({4003, 4004, 4005, 5002, 5003, 5004, 6002, 7003, 7004, 7502, 7503})
# coil_def.dat's coil classes -> rtsource's coil kinds; a second-order axial gradiometer
# measures T like the first-order one.
_KIND = {"mag": "mag", "axial_grad": "axial_grad", "planar_grad": "planar_grad", "axial_grad2": "axial_grad"}
_SYSTEM = (
    (range(2, 3), "Neuromag-122"),
    (range(2000, 2001), "generic"),
    (range(3000, 3100), "Elekta/MEGIN Vectorview/TRIUX"),
    (range(4000, 4100), "4D/BTi Magnes"),
    (range(5000, 5100), "CTF"),
    (range(6000, 6100), "KIT/Yokogawa/Ricoh"),
    (range(7000, 7100), "BabySQUID/BabyMEG"),
    (range(7500, 7600), "Artemis123"),
    (range(8000, 8100), "QuSpin OPM"),
    (range(8100, 8200), "FieldLine OPM"),
    (range(8200, 8300), "Kernel Flux OPM"),
    (range(9000, 9100), "KRISS"),
    (range(9100, 9200), "Compumedics"),
)


@dataclass(frozen=True)
class VendorCoil:
    """One coil type of a real system, at all accuracies.

    Attributes
    ----------
    coil_type : int
        The FIFF coil type id (without compensation bits).
    kind : str
        rtsource's coil kind: ``"mag"``, ``"axial_grad"`` or ``"planar_grad"`` (sets the
        channel's unit and whitening group).
    system : str
        Vendor/system family, e.g. ``"CTF"``.
    description : str
        The definition's own description (size and baseline).
    size_m, baseline_m : float
        Loop size and gradiometer baseline, metres (0 where not applicable).
    is_reference : bool
        A reference sensor of a compensation system.
    definitions : Mapping[str, CoilDef]
        Integration points per accuracy (``"point"``, ``"normal"``, ``"accurate"``).
    """

    coil_type: int
    kind: str
    system: str
    description: str
    size_m: float
    baseline_m: float
    is_reference: bool
    definitions: Mapping[str, CoilDef]


def _system(cid: int) -> str:
    for ids, name in _SYSTEM:
        if cid in ids:
            return name
    return "other"


@lru_cache(maxsize=1)
def coil_registry() -> Mapping[int, VendorCoil]:
    """All vendor coil types: coil type id -> :class:`VendorCoil` (read once from the table)."""
    doc = json.loads(_TABLE.read_text(encoding="utf-8"))
    entries: dict[int, dict] = {}
    for c in doc["coils"]:
        entries.setdefault(int(c["coil_type"]), {})[c["accuracy"]] = c
    out: dict[int, VendorCoil] = {}
    for cid, by_acc in entries.items():
        missing = [a for a in ACCURACIES if a not in by_acc]
        if missing:  # the table always has all three; guard a hand-edited one
            raise ChannelError(f"coil table {_TABLE.name}: coil type {cid} lacks accuracies {missing}")
        first = by_acc["normal"]
        kind = _KIND[first["class"]]
        defs = {}
        for acc in ACCURACIES:
            pts = np.asarray(by_acc[acc]["points"], dtype=float).reshape(-1, 7)
            nrm = pts[:, 4:7] / np.linalg.norm(pts[:, 4:7], axis=1, keepdims=True)
            defs[acc] = CoilDef(kind, acc, COIL_TYPES[kind], _ro(pts[:, 1:4]), _ro(nrm), _ro(pts[:, 0]), by_acc[acc]["description"])
        out[cid] = VendorCoil(
            cid, kind, _system(cid), first["description"], float(first["size_m"]), float(first["baseline_m"]),
            cid in REFERENCE_COIL_TYPES, defs,
        )  # fmt: skip
    return out


def vendor_coil(coil_type: int) -> VendorCoil:
    """The registry entry of ``coil_type`` (compensation bits are ignored).

    Raises
    ------
    ChannelError
        Unknown coil type (the message lists the known ones).
    """
    try:
        cid = int(coil_type) & 0xFFFF
    except (TypeError, ValueError):
        raise ChannelError(f"coil type {coil_type!r} must be an integer FIFF coil type id (e.g. 3012, 5001)") from None
    reg = coil_registry()
    if cid not in reg:
        raise ChannelError(
            f"MEG coil type {cid} has no definition; known types: {', '.join(str(k) for k in sorted(reg))} "
            f"(see rtsource.sensors.meg.vendor_coils)"
        )
    return reg[cid]


def vendor_coil_definition(coil_type: int, accuracy: str = "normal") -> CoilDef:
    """The integration points of a vendor coil type at ``accuracy`` (in the coil frame).

    Parameters
    ----------
    coil_type : int
        FIFF coil type id, e.g. 3012 (Vectorview planar gradiometer), 5001 (CTF axial
        gradiometer), 8201 (Kernel Flux OPM).
    accuracy : {"point", "normal", "accurate"}

    Returns
    -------
    CoilDef
        Points (m) and normals in the coil frame (z along the coil normal), weights
        (1/m for planar gradiometers).
    """
    if accuracy not in ACCURACIES:
        raise ChannelError(f"coil accuracy {accuracy!r} is not known; use one of {', '.join(ACCURACIES)}")
    return vendor_coil(coil_type).definitions[accuracy]
