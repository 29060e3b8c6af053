"""Setup from a lab's recording: ``[recording] file`` -> channels, sensors on the template, projectors.

    Acquisition (FIF, BIDS, EDF/BDF/BrainVision/XDF + positions; rtsource.recordings.read_acquisition)
        ─> the operator's channels: EEG electrodes with a digitised position, MEG channels of
           the array; bad channels left out
        ─> HEAD -> TEMPLATE: [coreg] trans (an MNE -trans.fif), else the digitisation
           (electrodes + fiducials + head-shape points) fitted to the template scalp (rtsource.coreg)
        ─> EEG electrodes on the template; MEG sensors through DEVICE -> HEAD -> TEMPLATE
        ─> SSP projectors (the recording's, plus a -cov.fif's), sampling rate
        ─> noise covariance: a -cov.fif, or computed from [noise_cov] file / the recording's samples

:func:`prepare_recording` does the geometry once (:class:`RecordingSetup`), and
:func:`rtsource.setup` uses it in place of ``[sensors]``; :func:`recording_noise_input`
says where the noise covariance comes from. Nothing here touches LSL.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import Settings
from ..errors import ConfigError, GeometryError
from ..geometry import Frame, Transform

if TYPE_CHECKING:  # annotations only
    from ..coreg import CoregResult
    from ..forward.leadfield import SensorSet
    from ..recordings import Acquisition, SspProjector

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordingSetup:
    """What setup takes from a recording.

    Attributes
    ----------
    acquisition : rtsource.recordings.Acquisition
        As read.
    settings : Settings
        The settings with ``[sensors]`` describing the recording's operator channels
        (channels, modality, meg_array = the recording, meg_channels) and ``[stream] sfreq``.
    sensors : rtsource.forward.leadfield.SensorSet
        EEG electrodes in TEMPLATE (m) and / or the MEG array carrying DEVICE -> TEMPLATE.
    head_to_template : Transform
        HEAD -> TEMPLATE (rigid unless the fit was scaled, which MEG refuses).
    coreg : rtsource.coreg.CoregResult or None
        The fit (None with ``[coreg] trans`` and no electrodes).
    projectors : tuple of SspProjector
        The recording's projectors.
    notes : tuple of str
        What was decided (channels left out, how the head was placed), for the report.
    """

    acquisition: Acquisition
    settings: Settings
    sensors: SensorSet
    head_to_template: Transform
    coreg: CoregResult | None
    projectors: tuple[SspProjector, ...]
    notes: tuple[str, ...]

    def provenance(self) -> dict:
        """JSON for the bundle's ``provenance['recording']``."""
        acq = self.acquisition
        out = {
            "path": acq.path, "format": acq.format, "sfreq": acq.sfreq, "modality": self.settings.sensors.modality,
            "bads": list(acq.bads), "projectors": [p.description for p in self.projectors],
            "head_to_template": {"from": "head", "to": "template", "unit": "m", "matrix": self.head_to_template.matrix.tolist()},
            "notes": list(self.notes),
        }  # fmt: skip
        if self.coreg is not None:
            out["coreg"] = {"qc": self.coreg.qc.as_dict(), "qc_png": self.coreg.qc_png}
        return out


def _head_to_template(settings: Settings, acq: Acquisition, say) -> tuple[Transform, CoregResult | None, list[str]]:
    """HEAD -> TEMPLATE from ``[coreg] trans`` or from fitting the digitisation; and the coreg result."""
    from ..anatomy.template import load_template

    c = settings.coreg
    dig = acq.digitization
    notes: list[str] = []
    template = load_template(settings.head.bem_order)
    if c.trans:
        from ..anatomy.mne_files import read_trans_fif

        t = read_trans_fif(settings.resolve_path(c.trans))
        if t.from_frame == Frame.MRI and t.to_frame == Frame.HEAD:
            t = t.inverse()
        if t.from_frame != Frame.HEAD:
            raise ConfigError(f"[coreg] trans = {c.trans!r} maps {t.from_frame.value!r} -> {t.to_frame.value!r}; give the head <-> MRI -trans.fif of mne coreg")
        notes.append(f"head -> template from {c.trans} (the template is the MRI)")
        t = Transform(Frame.HEAD, Frame.TEMPLATE, t.matrix)
        result = None
        if dig is not None and dig.electrodes is not None and len(dig.electrodes):
            from ..coreg import coregister

            result = coregister(
                dig.transformed(t), method="none", template=template, max_rms_mm=c.max_rms_mm, max_outlier_fraction=c.max_outlier_fraction,
                allow_bad_fit=c.allow_bad_fit, qc_png=str(settings.resolve_path(c.qc_png)) if c.qc_png else None,
            )  # fmt: skip
        return t, result, notes
    if dig is None:
        raise GeometryError(
            f"recording {acq.path!r} has no digitised positions (electrodes, fiducials, head-shape points); "
            "give [recording] positions = 'file', or [coreg] trans = 'subject-trans.fif'"
        )
    if dig.frame != Frame.HEAD and acq.meg is not None:
        raise GeometryError(f"recording {acq.path!r}: the digitisation is in the {dig.frame.value!r} frame, but MEG sensors are placed through the head frame")
    if dig.electrodes is not None and len(dig.electrodes):
        from ..coreg import coregister

        result = coregister(
            dig, method=c.method, scale=c.scale, template=template, max_rms_mm=c.max_rms_mm, max_outlier_fraction=c.max_outlier_fraction,
            allow_bad_fit=c.allow_bad_fit, qc_png=str(settings.resolve_path(c.qc_png)) if c.qc_png else None,
        )  # fmt: skip
        say(result.qc.summary())
        return result.transform, result, notes
    # MEG without EEG: fiducials (then ICP on the head-shape points) place the head
    from ..coreg import icp_to_surface, initial_alignment

    t, how = initial_alignment(dig, template, scale=False)
    notes.append(f"head placed by {how}")
    if c.method == "icp" and dig.headshape is not None and len(dig.headshape) >= 10:
        from ..geometry.head_frames import fiducials_m

        pairs = (np.array(fiducials_m(dig.fiducials)), np.array(fiducials_m(template.fiducials))) if dig.has_fiducials else None
        fit = icp_to_surface(dig.headshape.positions_m, template.fit_scalp, initial=t.matrix, pairs=pairs, pair_weight=1.0 if pairs else 0.0, scale=False)
        t = Transform(dig.frame, Frame.TEMPLATE, fit.matrix)
        notes.append(f"refined by ICP on {len(dig.headshape)} head-shape points ({fit.iterations} iterations)")
    return t, None, notes


def prepare_recording(settings: Settings, acquisition: Acquisition | None = None, progress=None) -> RecordingSetup:
    """The operator's channels, sensors on the template and projectors of ``[recording] file``.

    Parameters
    ----------
    settings : Settings
        ``[recording]`` (file, positions, modality), ``[coreg]`` (method, trans, thresholds),
        ``[sensors] meg_accuracy`` / ``reference``.
    acquisition : rtsource.recordings.Acquisition, optional
        Already read (default: read ``[recording] file``).
    progress : callable, optional
        One-line messages.

    Returns
    -------
    RecordingSetup

    Raises
    ------
    ConfigError, GeometryError, StreamError
        No usable channels, no way to place the head, a scaled fit with MEG.
    """
    from ..forward.leadfield import SensorSet
    from ..geometry.head_frames import compose
    from ..recordings import read_acquisition

    say = progress or logger.info
    r = settings.recording
    acq = acquisition
    if acq is None:
        if not r.file:
            raise ConfigError("no recording: set [recording] file = 'recording.fif' (or rtsource setup --recording FILE)")
        positions = settings.resolve_path(r.positions) if r.positions else None
        acq = read_acquisition(settings.resolve_path(r.file).resolve(), positions, accuracy=settings.sensors.meg_accuracy)
    notes = list(acq.notes)
    modality = r.modality or acq.modality
    if not modality or (("eeg" in modality) and "eeg" not in acq.ch_types) or ("meg" in modality and acq.meg is None):
        raise ConfigError(
            f"recording {acq.path!r} has {acq.modality or 'no EEG or MEG'} channels but [recording] modality = {r.modality!r}; "
            "leave it empty or pick what the recording has"
        )
    bads = set(acq.bads)
    eeg_names: list[str] = []
    if "eeg" in modality:
        placed = set(acq.digitization.electrodes.labels) if acq.digitization is not None and acq.digitization.electrodes is not None else set()
        eeg_all = [n for n in acq.names_of("eeg") if n not in bads]
        eeg_names = [n for n in eeg_all if n in placed]
        if len(eeg_all) > len(eeg_names):
            notes.append(f"{len(eeg_all) - len(eeg_names)} EEG channel(s) without a position left out")
        if len(eeg_names) < 3:
            raise GeometryError(
                f"recording {acq.path!r}: {len(eeg_names)} good EEG channel(s) with a digitised position (need 3); "
                "give the electrode positions with [recording] positions = 'file'"
            )
    meg_names: list[str] = []
    if "meg" in modality:
        meg_names = [n for n in acq.meg.ch_names if n not in bads]
    dropped = sorted(bads & (set(acq.names_of("eeg", "mag", "grad"))))
    if dropped:
        notes.append(f"{len(dropped)} bad channel(s) left out: {', '.join(dropped[:10])}{' ...' if len(dropped) > 10 else ''}")
    t, coreg, placed_notes = _head_to_template(settings, acq, say)
    notes += placed_notes
    montage = array = provenance = None
    if eeg_names:
        if coreg is None:
            raise GeometryError(f"recording {acq.path!r}: EEG electrodes could not be placed on the template")
        montage = coreg.montage.pick(eeg_names)
        d = coreg.to_dict()
        provenance = {"montage": acq.path, "transform": d["transform"], "qc": d["qc"], "reports": d["reports"], "qc_png": d["qc_png"]}
    if meg_names:
        scale = np.linalg.det(t.matrix[:3, :3])
        if abs(scale - 1.0) > 1e-6:
            raise ConfigError("[coreg] scale = true rescales the head, which would move the MEG sensors; set scale = false for MEG")
        if acq.dev_head_t is None:
            raise GeometryError(f"recording {acq.path!r} has no device->head transform; MEG sensors cannot be placed")
        arr = acq.meg.pick(meg_names).with_accuracy(settings.sensors.meg_accuracy)
        array = arr.with_dev_head_t(compose(acq.dev_head_t, t))
    s = settings.sensors
    sensors_settings = dataclasses.replace(
        s, modality=modality, channels=tuple(eeg_names) if eeg_names else s.channels, montage=acq.path,
        meg_array=_meg_array_spec(acq) if meg_names else s.meg_array, meg_channels=tuple(meg_names),
    )  # fmt: skip
    new = dataclasses.replace(settings, sensors=sensors_settings)
    if acq.sfreq and not settings.stream.sfreq:
        new = dataclasses.replace(new, stream=dataclasses.replace(settings.stream, sfreq=float(acq.sfreq)))
    say(
        f"recording {Path(acq.path).name}: {len(eeg_names)} EEG + {len(meg_names)} MEG channels, {len(acq.projectors)} projector(s), "
        f"{acq.sfreq:g} Hz" + "".join(f"; {n}" for n in notes)
    )
    return RecordingSetup(acq, new, SensorSet(montage, array, provenance), t, coreg, tuple(acq.projectors), tuple(notes))


def _meg_array_spec(acq: Acquisition) -> str:
    """What ``[sensors] meg_array`` names for the recording's array: the FIF itself, else a JSON copy.

    (The calibration reads the operator's channels through ``[sensors]``; a BIDS MEG session
    is a directory, which ``load_meg_array`` does not read, so its array is written to the
    cache as an ``rtsource-meg-array`` file, named by its content.)
    """
    import hashlib
    import json

    from ..cache import cache_dir
    from ..sensors.meg.io import meg_array_to_dict

    if acq.format == "fif":
        return acq.path
    text = json.dumps(meg_array_to_dict(acq.meg), indent=1) + "\n"
    path = cache_dir() / "meg-arrays" / f"{hashlib.sha256(text.encode()).hexdigest()[:20]}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return str(path)


def leadfield_for_recording(rs: RecordingSetup, *, use_cache: bool = True):
    """The lead field of the recording's sensors on the configured sources and head model."""
    from ..build import head_model_from_settings, source_space_from_settings
    from ..forward.leadfield import make_leadfield

    s = rs.settings
    if s.forward.method == "openmeeg" and "meg" in s.sensors.modality:
        raise ConfigError("[forward] method = 'openmeeg' computes EEG only; use 'bem' or 'sphere' for MEG")
    return make_leadfield(source_space_from_settings(s), rs.sensors, head_model_from_settings(s), use_cache=use_cache)


def is_mne_covariance(path: str | Path) -> bool:
    """Whether ``path`` names an MNE covariance file (``-cov.fif`` / ``_cov.fif``)."""
    name = Path(path).name.lower()
    return name.endswith(("-cov.fif", "_cov.fif", "-cov.fif.gz", "_cov.fif.gz"))


def read_mne_covariance(path: str | Path):
    """An MNE ``-cov.fif`` as (NoiseCovariance, projectors): projected with its own projectors.

    Needs MNE-Python (``pip install rtsource[mne]``).
    """
    from ..interop.mne_bridge import noise_covariance_from_mne
    from ..recordings.dependencies import need
    from ..recordings.fif_acquisition import projectors_from_mne

    mne = need("mne", "mne", "MNE covariance files")
    try:
        cov = mne.read_cov(str(path), verbose="error")
    except Exception as exc:  # MNE raises several kinds on a damaged or wrong file
        raise ConfigError(f"cannot read the covariance {str(path)!r} with MNE-Python: {type(exc).__name__}: {exc}") from None
    names = [c for c in cov.ch_names if c not in set(cov["bads"])]
    return noise_covariance_from_mne(cov, names), projectors_from_mne(cov["projs"])


def merge_projectors(*groups: Any) -> tuple[SspProjector, ...]:
    """Projectors of several sources, each description once (the first wins)."""
    seen, out = set(), []
    for group in groups:
        for p in group:
            if p.description not in seen:
                seen.add(p.description)
                out.append(p)
    return tuple(out)


def recording_noise_input(settings: Settings, calibration=None):
    """Where ``[noise_cov] source = 'stream'`` gets its data when setup has a recording.

    Returns
    -------
    (kind, value)
        ``("given", calibration)`` when the caller passed one; ``("cov", path)`` for an MNE
        ``-cov.fif``; ``("recording", path)`` for a recording whose samples are the noise
        (``[noise_cov] file``, else ``[recording] file``); ``("stream", None)`` otherwise.
    """
    if calibration is not None:
        return "given", calibration
    nc = settings.noise_cov
    if nc.file:
        path = settings.resolve_path(nc.file)
        return ("cov" if is_mne_covariance(path) else "recording"), path
    r = settings.recording.file
    if r and not settings.resolve_path(r).is_dir():
        return "recording", settings.resolve_path(r)
    return "stream", None


__all__ = [
    "RecordingSetup", "is_mne_covariance", "leadfield_for_recording", "merge_projectors", "prepare_recording",
    "read_mne_covariance", "recording_noise_input",
]  # fmt: skip
