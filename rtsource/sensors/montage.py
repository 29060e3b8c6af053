"""EEG montages: labelled electrode positions, the standard 10-20/10-10/10-05 systems.

Electrodes are picked by channel name with the rules of :mod:`rtsource.channel_names`
(case-insensitive, old 10-20 names, a user's alias map).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from ..channel_names import canonical_label, match_labels
from ..errors import ChannelError
from ..geometry import Frame, Points

#: Standard systems of the embedded template and the level code stored with its electrodes.
STANDARD_SYSTEMS = {"standard_1020": 1, "standard_1010": 2, "standard_1005": 3}


@dataclass(frozen=True)
class Montage:
    """Named electrode positions in one frame.

    Parameters
    ----------
    electrodes : Points
        Labelled electrode positions.
    fiducials : Points or None
        NAS, LPA, RPA in the same frame, when known.
    name : str
        Where the montage came from (``"standard_1020"``, a file name, ...).
    """

    electrodes: Points
    fiducials: Points | None = None
    name: str = "montage"

    def __post_init__(self) -> None:
        if not self.electrodes.labels:
            raise ChannelError("a montage needs a label for every electrode")
        keys = [canonical_label(x) for x in self.electrodes.labels]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ChannelError(f"montage {self.name!r} has duplicate electrode labels (case-insensitive): {dup}")
        if self.fiducials is not None and self.fiducials.frame != self.electrodes.frame:
            raise ChannelError(
                f"montage {self.name!r}: fiducials in {self.fiducials.frame.value!r} but electrodes in "
                f"{self.electrodes.frame.value!r}"
            )

    @property
    def labels(self) -> tuple[str, ...]:
        return self.electrodes.labels

    @property
    def frame(self) -> Frame:
        return self.electrodes.frame

    def pick(self, channel_names: Iterable[str], aliases: Mapping[str, str] | None = None) -> "Montage":
        """Electrodes for ``channel_names``, in that order and renamed to those names.

        Raises :class:`ChannelError` listing every name that has no position.
        """
        names = list(channel_names)
        index = match_labels(names, self.labels, aliases=aliases, what="montage " + repr(self.name))
        pts = Points(self.electrodes.positions[index], self.electrodes.frame, self.electrodes.unit, tuple(names))
        return Montage(pts, self.fiducials, self.name)


def standard_montage(name: str = "standard_1005") -> Montage:
    """A 10-20 / 10-10 / 10-05 montage on the embedded template scalp (template frame, m).

    The positions are MNE-Python's fsaverage ones on the scalp coregistration fits to
    (:attr:`~rtsource.anatomy.template.Template.fit_electrodes`), so a coregistered standard
    cap and this montage agree; a BEM projects them onto its own scalp.

    Parameters
    ----------
    name : {"standard_1020", "standard_1010", "standard_1005"}
        The system; each includes the positions of the smaller ones.
    """
    if name not in STANDARD_SYSTEMS:
        raise ChannelError(f"standard montage {name!r} is not known; use one of {sorted(STANDARD_SYSTEMS)}")
    from ..anatomy.template import load_template

    t = load_template()
    keep = t.electrode_level <= STANDARD_SYSTEMS[name]
    labels = tuple(label for label, k in zip(t.fit_electrodes.labels, keep) if k)
    pts = Points(t.fit_electrodes.positions[keep], Frame.TEMPLATE, "m", labels)
    return Montage(pts, t.fiducials, name)


# The 64-channel layout that the simulator and demo use by default: the 10-10 positions of
# a common 64-electrode cap (BioSemi/actiCAP-style naming, all present in the 10-05 system).
CAP_64 = (
    "Fp1", "Fpz", "Fp2", "AF7", "AF3", "AFz", "AF4", "AF8",
    "F7", "F5", "F3", "F1", "Fz", "F2", "F4", "F6", "F8",
    "FT7", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "FT8",
    "T7", "C5", "C3", "C1", "Cz", "C2", "C4", "C6", "T8",
    "TP7", "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6", "TP8",
    "P7", "P5", "P3", "P1", "Pz", "P2", "P4", "P6", "P8",
    "PO7", "PO3", "POz", "PO4", "PO8", "O1", "Oz", "O2", "Iz", "TP9", "TP10",
)  # fmt: skip
