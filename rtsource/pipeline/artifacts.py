"""Setup's artifact calibration: ``[artifacts]`` settings + rest data -> ArtifactCalibration.

The data are the rest recording setup already captured for the noise covariance
(``calibration = "rest"``), a capture of ``seconds`` from the stream (``"stream"``, also
when setup captured nothing), or a recording file (``"file"``). They are prepared as the
stream will see them: the operator's channels in SI units, through the ``[preprocess]``
causal filter (ASR and regression run after it), and for the projection re-referenced as
the operator re-references. EOG/ECG channels, when named, come from the same recording
(or a capture of the operator's and those channels together).
"""

from __future__ import annotations

import json
import logging
from typing import Callable

import numpy as np

from ..artifacts import ArtifactCalibration, calibrate_asr, fit_eog_regression, fit_projection
from ..artifacts.calibration import subspace_projector
from ..config import Settings
from ..errors import ConfigError

logger = logging.getLogger(__name__)


def _causal_filter(settings: Settings, data: np.ndarray, sfreq: float) -> np.ndarray:
    """``data`` through the stream's ``[preprocess]`` filter, started at its steady state."""
    from scipy.signal import sosfilt, sosfilt_zi

    from ..stream.operator import FilterSpec

    p = settings.preprocess
    spec = FilterSpec(p.highpass_hz, p.lowpass_hz, p.order)
    if not spec.active:
        return data
    sos = spec.design(sfreq)
    zi = sosfilt_zi(sos)[:, :, None] * data[0][None, None, :]
    return sosfilt(sos, data, axis=0, zi=zi)[0]


def _extra_channels(settings: Settings, source, names: tuple[str, ...], seconds: float, stream) -> np.ndarray | None:
    """EOG/ECG columns (SI) simultaneous with the calibration data, or None if none are named."""
    if not names:
        return None
    from ..recordings import Recording, read_recording
    from ..stream.channels import StreamDescription, map_stream_channels

    if isinstance(source, Recording) or isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        rec = source if isinstance(source, Recording) else read_recording(source)
        desc = StreamDescription(
            name=rec.name, type=rec.type, source_id="", sfreq=rec.sfreq, n_channels=rec.n_channels, channel_format=rec.channel_format,
            ch_names=rec.ch_names, ch_types=("",) * rec.n_channels, ch_units=rec.ch_units,
        )  # fmt: skip
        cmap = map_stream_channels(desc, names, ("V",) * len(names), aliases=settings.sensors.aliases, assume_unit=settings.stream.assume_unit)
        return rec.data[:, cmap.index].astype(np.float64) * cmap.scale
    raise ConfigError(f"[artifacts] eog_channels / ecg_channels {list(names)} are read from the calibration recording; none was given")


def _capture_with(settings: Settings, extra: tuple[str, ...], seconds: float, stream, say):
    """Capture the operator's channels and ``extra`` together; (Calibration of the operator's, extra data)."""
    from ..build import sensor_channels
    from ..stream.calibration import Calibration, capture_calibration
    from ..stream.inlet import StreamSelector

    st = settings.stream
    names, kinds, units = sensor_channels(settings)
    selector = stream if stream is not None else StreamSelector(st.name, st.type, st.source_id)
    say(f"capturing {seconds:g} s for the artifact calibration from {selector} ...")
    cal = capture_calibration(
        selector, names + extra, seconds, ch_units=units + ("V",) * len(extra), ch_types=kinds + ("eeg",) * len(extra),
        resolve_timeout=st.resolve_timeout, assume_unit=st.assume_unit, aliases=settings.sensors.aliases,
    )  # fmt: skip
    n = len(names)
    own = Calibration(np.ascontiguousarray(cal.data[:, :n]), cal.timestamps, names, cal.stream, cal.gaps)
    return own, (cal.data[:, n:] if extra else None)


def calibrate_artifacts(
    settings: Settings, *, rest=None, given=None, stream=None, progress: Callable[[str], None] | None = None, from_recording=None
) -> ArtifactCalibration | None:
    """The artifact calibration ``[artifacts]`` asks for (None when ``method`` is none).

    Parameters
    ----------
    settings : Settings
    rest : rtsource.stream.calibration.Calibration, optional
        The rest recording setup captured (or read) for the noise covariance.
    given : str, Path or Recording, optional
        The file that rest recording came from (for EOG/ECG channels by name).
    stream : StreamSelector, optional
        Where to capture from when needed.
    progress : callable, optional
    from_recording : callable, optional
        ``(settings, path) -> Calibration`` for ``calibration = "file"``
        (:func:`rtsource.pipeline.setup.calibration_from_recording`, which setup passes).
    """
    from ..build import sensor_channels
    from ..inverse.reference import reference_matrix

    a = settings.artifacts
    say = progress or logger.info
    methods = tuple(m for m in a.method if m != "none")
    if not methods:
        return None
    extra = tuple(a.eog_channels) + tuple(a.ecg_channels)
    source_file = None
    if a.calibration == "file":
        if from_recording is None:
            raise ConfigError("[artifacts] calibration = 'file': pass from_recording (rtsource.pipeline.setup does)")
        source_file = str(settings.resolve_path(a.path))
        data_cal = from_recording(settings, source_file)
        extras = _extra_channels(settings, source_file, extra, 0, stream)
        where = f"file {a.path}"
    elif a.calibration == "rest" and rest is not None and (not extra or given is not None):
        data_cal, where = rest, "the rest recording of setup"
        extras = _extra_channels(settings, given, extra, 0, stream) if extra else None
        source_file = str(given) if given is not None and not hasattr(given, "data") else None
    else:
        data_cal, extras = _capture_with(settings, extra, a.seconds, stream, say)
        where = f"{a.seconds:g} s captured from stream {data_cal.stream.name!r}"
    sfreq = float(data_cal.stream.sfreq)
    names, kinds, _ = sensor_channels(settings)
    x = _causal_filter(settings, np.asarray(data_cal.data, dtype=np.float64), sfreq)
    eog = ecg = None
    if extras is not None:
        extras = _causal_filter(settings, extras, sfreq)
        eog, ecg = extras[:, : len(a.eog_channels)], extras[:, len(a.eog_channels) :]
    prov = json.dumps({"source": where, "file": source_file or "", "seconds": round(len(x) / sfreq, 3), "methods": list(methods)})
    asr = regression = projection = None
    if "regression" in methods:
        regression = fit_eog_regression(x, eog, sfreq, names, a.eog_channels, source=where)
        say(f"EOG regression on {', '.join(a.eog_channels)}: {json.loads(regression.provenance)['variance_explained']:.1%} of the EEG variance explained")
    if "projection" in methods:
        # patterns live in the operator's re-referenced space, on one sensor type (EEG if any):
        # a projector must not mix EEG and MEG, which are whitened apart
        m = reference_matrix(names, settings.sensors.reference, kinds)
        typ = "eeg" if "eeg" in kinds else None
        cols = [i for i, k in enumerate(kinds) if typ is None or k == typ]
        xr = (x @ m.T)[:, cols]
        sub = fit_projection(
            xr, sfreq, [names[i] for i in cols], eog=eog, ecg=ecg if ecg is not None and ecg.shape[1] else None,
            frontal=a.frontal_channels, n_ocular=a.n_ocular, n_cardiac=a.n_cardiac, n_muscle=a.n_muscle, source=where,
        )  # fmt: skip
        projection = sub
        whys = [v["why"] for v in json.loads(sub.provenance).values() if isinstance(v, dict) and "why" in v]
        say(f"artifact projection: {sub.n_vectors} component(s) ({', '.join(sub.kinds) or 'none found'})" + (f"; {'; '.join(whys)}" if whys else ""))
    # ASR after the projection runs in the subspace it leaves (calibration.py's docstring):
    # fitted on the projected data, so its repair never brings a blink's residue back
    space = "projected" if {"asr", "muscle"} & set(methods) and projection is not None and projection.n_vectors else "channels"
    reference = settings.sensors.reference if "eeg" in kinds else "none"
    xa = x - eog @ regression.coefficients if regression is not None else x  # ASR sees the regressed data
    q = subspace_projector(projection, reference, names) if space == "projected" else None
    muscle = None
    if "asr" in methods:
        asr = calibrate_asr(
            xa, sfreq, names, cutoff=a.asr_cutoff, window_s=a.asr_window_s, max_bad_channels=a.asr_max_bad_channels,
            max_remove_fraction=a.asr_max_remove, source=where, projector=q,
        )  # fmt: skip
        say(f"ASR calibrated on {asr.n_windows_used} of {asr.n_windows_total} clean 1 s windows (cutoff {a.asr_cutoff:g}, {space})")
    if "muscle" in methods:
        muscle = calibrate_asr(
            xa, sfreq, names, cutoff=a.muscle_cutoff, window_s=a.asr_window_s, max_bad_channels=a.asr_max_bad_channels,
            max_remove_fraction=a.asr_max_remove, source=where, projector=q, band_hz=a.muscle_band_hz,
        )  # fmt: skip
        say(f"muscle ASR (above {a.muscle_band_hz:g} Hz, cutoff {a.muscle_cutoff:g}) calibrated on {muscle.n_windows_used} clean 1 s windows")
    return ArtifactCalibration(methods, asr, regression, projection, a.asr_lookahead_s, a.asr_update_every, a.seconds, prov, space, reference, muscle)


__all__ = ["calibrate_artifacts"]
