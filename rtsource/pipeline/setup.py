"""The offline stage as one call: configuration -> calibration -> covariances -> bundle.

    settings ─> lead field (cached on disk)
             ─> noise calibration: captured from the stream, read from a recording file,
                or given as data ([noise_cov] source = 'stream'); or a covariance file / ad hoc
             ─> [LCMV: data calibration, the same ways]
             ─> [artifacts: ASR / regression / projection calibrated on the rest data]
             ─> inverse operator (with the artifact projection folded in) ─> OperatorBundle

With ``[recording] file`` the channels, sensor positions (coregistered), MEG sensors, SSP
projectors, sampling rate and the noise samples come from the lab's recording
(:mod:`.recording`); no stream is needed. ``rtsource setup CONFIG`` is this function plus a
print of the result. A calibration given
by the caller (a :class:`~rtsource.recordings.Recording` read from a file, or a
:class:`~rtsource.stream.calibration.Calibration` captured earlier) replaces the capture
from the stream; its channels are matched by name and converted to SI units exactly as a
live stream's are.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Union

import numpy as np

from ..bundle import OperatorBundle, save_bundle
from ..config import Settings, load_config
from ..errors import ConfigError

if TYPE_CHECKING:  # annotations only: reading them imports nothing at run time
    from ..recordings import Recording
    from ..stream.calibration import Calibration

logger = logging.getLogger(__name__)

#: What :func:`setup` accepts as a calibration: a recording file's path, a Recording, a Calibration.
CalibrationInput = Union[str, Path, "Recording", "Calibration"]


def as_settings(config: Settings | str | Path | None) -> Settings:
    """``config`` as :class:`~rtsource.config.Settings`: a path is read, None gives the defaults."""
    if config is None:
        return Settings()
    if isinstance(config, Settings):
        return config
    if isinstance(config, (str, Path)):
        return load_config(config)
    raise ConfigError(f"config = {config!r}: pass a Settings object, a TOML file path, or None for the defaults")


def calibration_from_recording(settings: Settings, recording: str | Path | Recording) -> Calibration:
    """The operator's channels of a recording, by name, in SI units and operator order.

    Parameters
    ----------
    settings : Settings
        Which channels the operator uses (``[sensors]``), ``[sensors] aliases`` and
        ``[stream] assume_unit`` (for channels without a unit).
    recording : str, Path or rtsource.recordings.Recording
        A rest (or empty-room) recording; a path is read with :func:`rtsource.recordings.read_recording`
        (XDF, EDF/BDF, BrainVision, FIF).

    Returns
    -------
    rtsource.stream.calibration.Calibration
        ``data`` (n_samples, n_channels) in V / T / T/m, timestamps ``k / sfreq`` in s.
    """
    from ..build import sensor_channels
    from ..recordings import Recording, read_recording
    from ..stream.calibration import Calibration
    from ..stream.channels import StreamDescription, map_stream_channels

    rec = recording if isinstance(recording, Recording) else read_recording(recording)
    desc = StreamDescription(
        name=rec.name, type=rec.type, source_id="", sfreq=rec.sfreq, n_channels=rec.n_channels, channel_format=rec.channel_format,
        ch_names=rec.ch_names, ch_types=rec.ch_types, ch_units=rec.ch_units,
    )  # fmt: skip
    names, kinds, units = sensor_channels(settings)
    cmap = map_stream_channels(desc, names, units, aliases=settings.sensors.aliases, assume_unit=settings.stream.assume_unit, ch_types=kinds)
    data = rec.data[:, cmap.index].astype(np.float64) * cmap.scale
    return Calibration(data, np.arange(rec.n_samples) / rec.sfreq, tuple(names), desc, gaps=rec.file_gaps)


def _calibration(settings: Settings, given: CalibrationInput | None, seconds: float, what: str, stream, progress) -> Calibration:
    """``given`` as a Calibration, or ``seconds`` captured from the configured stream."""
    from ..stream.calibration import Calibration

    if isinstance(given, Calibration):
        return given
    if given is not None:
        cal = calibration_from_recording(settings, given)
        progress(f"{what}: {cal.data.shape[0] / cal.stream.sfreq:g} s of {len(cal.ch_names)} channels from {cal.stream.name!r}")
        return cal
    from ..session import capture
    from ..stream.inlet import StreamSelector

    st = settings.stream
    selector = (stream if stream is not None else StreamSelector(st.name, st.type, st.source_id)).for_modality(settings.sensors.modality)
    progress(f"capturing {seconds:g} s of {what} from {selector} ...")
    return capture(settings, selector, seconds)


def _check_sfreq(sfreq: float | None, cal) -> float:
    if sfreq and abs(sfreq - cal.stream.sfreq) > 1e-6 * sfreq:
        raise ConfigError(
            f"sampling rate {sfreq:g} Hz ([stream] sfreq or sfreq=) but the calibration from {cal.stream.name!r} runs at "
            f"{cal.stream.sfreq:g} Hz; set [stream] sfreq = {cal.stream.sfreq:g} or record the calibration at {sfreq:g} Hz"
        )
    return cal.stream.sfreq


def setup(
    config: Settings | str | Path | None = None,
    *,
    out: str | Path | None = None,
    sfreq: float | None = None,
    calibration: CalibrationInput | None = None,
    data_calibration: CalibrationInput | None = None,
    stream=None,
    leadfield=None,
    progress: Callable[[str], None] | None = None,
) -> OperatorBundle:
    """Run the whole offline stage the configuration describes and return the bundle.

    Parameters
    ----------
    config : Settings, str, Path or None
        The configuration (a TOML path is read; None: the defaults, i.e. the template head,
        a 64-channel cap and dSPM).
    out : str or Path, optional
        Write the bundle to this file (``.npz``); by default nothing is written (the command
        line passes ``[bundle] path``).
    sfreq : float, optional
        Sampling rate in Hz of the stream the operator is for. Default: ``[stream] sfreq``,
        else the calibration's rate. A calibration at another rate is an error.
    calibration : str, Path, Recording or Calibration, optional
        Noise calibration (rest, or an empty room for MEG) for ``[noise_cov] source =
        'stream'``: a recording file, a :class:`~rtsource.recordings.Recording`, or a
        :class:`~rtsource.stream.calibration.Calibration`. Default: ``[noise_cov] file``, else
        ``[recording] file``'s samples, else capture ``[noise_cov] seconds`` from the stream
        ``[stream]`` (or ``stream``) names. Ignored
        (with a warning) when the noise covariance comes from a file or is ad hoc.
    data_calibration : same as ``calibration``, optional
        LCMV: the data the beamformer's covariance is estimated from (``[data_cov] source =
        'stream'``); default: ``[recording] file``'s samples, else capture ``[data_cov]
        seconds`` from the stream.
    stream : rtsource.stream.inlet.StreamSelector, optional
        Which LSL stream to capture from (default: ``[stream]`` name / type / source_id).
    leadfield : rtsource.build.SensorLeadField, optional
        A lead field computed before for the same settings (default: computed, or read from
        the cache).
    progress : callable, optional
        Receives one-line messages (default: the module's logger at INFO level).

    Returns
    -------
    OperatorBundle

    Raises
    ------
    ConfigError, StreamError, ChannelError, UnitError
        Bad settings, no stream to capture from, channels or units that do not match.
    """
    from ..build import build_bundle, compute_leadfield
    from ..session import estimate_covariance

    settings = as_settings(config)
    say = progress or logger.info
    rec = projectors = None
    if settings.recording.file:  # channels, sensors, projectors and rate from the lab's recording
        from .recording import prepare_recording

        rec = prepare_recording(settings, progress=say)
        settings, projectors = rec.settings, rec.projectors
    sfreq = sfreq or settings.stream.sfreq or None
    t0 = time.perf_counter()
    if leadfield is not None:
        slf = leadfield
    elif rec is not None:
        from .recording import leadfield_for_recording

        slf = leadfield_for_recording(rec)
    else:
        slf = compute_leadfield(settings)
    gain = slf.leadfield.gain
    say(f"lead field {gain.shape[0]} x {gain.shape[1]} ({slf.leadfield.sources.name}, {settings.sensors.modality}) in {time.perf_counter() - t0:.1f} s")
    from ..coreg.report import coreg_report_lines

    for line in coreg_report_lines(slf.leadfield.model):
        say(line)
    noise_cov = data_cov = rest = None
    if settings.noise_cov.source == "stream":
        from .recording import merge_projectors, read_mne_covariance, recording_noise_input

        kind, given = recording_noise_input(settings, calibration) if (rec is not None or settings.noise_cov.file) else ("given", calibration)
        if kind == "cov":
            noise_cov, cov_projs = read_mne_covariance(given)
            projectors = merge_projectors(projectors or (), cov_projs)
            say(f"noise covariance from {given} ({noise_cov.n_chan} channels, {len(cov_projs)} projector(s))")
        else:
            cal = rest = _calibration(settings, given, settings.noise_cov.seconds, "noise calibration (rest, or an empty room for MEG)", stream, say)
            noise_cov = estimate_covariance(settings, cal, data=False)
            sfreq = _check_sfreq(sfreq, cal)
    elif calibration is not None:
        logger.warning("calibration ignored: [noise_cov] source = %r (not 'stream')", settings.noise_cov.source)
    if settings.noise_cov.source == "file":
        from .recording import is_mne_covariance, merge_projectors, read_mne_covariance

        if is_mne_covariance(settings.noise_cov.path):  # an MNE -cov.fif, with its projectors
            noise_cov, cov_projs = read_mne_covariance(settings.resolve_path(settings.noise_cov.path))
            projectors = merge_projectors(projectors or (), cov_projs)
    if settings.inverse.method == "LCMV" and settings.data_cov.source == "stream":
        if data_calibration is None and rec is not None and not settings.resolve_path(settings.recording.file).is_dir():
            data_calibration = settings.resolve_path(settings.recording.file)  # the recording's samples, as for the noise
        cal = _calibration(settings, data_calibration, settings.data_cov.seconds, "data for the beamformer's covariance", stream, say)
        data_cov = estimate_covariance(settings, cal, data=True)
        sfreq = _check_sfreq(sfreq, cal)
    elif data_calibration is not None:
        logger.warning("data_calibration ignored: it is used by [inverse] method = 'LCMV' with [data_cov] source = 'stream'")
    from .artifacts import calibrate_artifacts

    artifacts = calibrate_artifacts(settings, rest=rest, given=calibration, stream=stream, progress=say, from_recording=calibration_from_recording)
    if artifacts is not None and artifacts.per_chunk:  # calibrated at the stream's rate
        rate = (artifacts.asr or artifacts.regression).sfreq
        if sfreq and abs(rate - sfreq) > 1e-6 * sfreq:
            raise ConfigError(f"the artifact calibration runs at {rate:g} Hz but the operator is for {sfreq:g} Hz; record it at {sfreq:g} Hz")
        sfreq = rate
    if not sfreq:
        raise ConfigError(
            "the sampling rate is unknown: set [stream] sfreq in the config or pass sfreq (--sfreq) "
            "(or use [noise_cov] source = 'stream', which reads it from the calibration)"
        )
    bundle = build_bundle(settings, sfreq=sfreq, noise_cov=noise_cov, data_cov=data_cov, leadfield=slf, projectors=projectors or (), artifacts=artifacts)
    if rec is not None:
        bundle = dataclasses.replace(bundle, provenance={**bundle.provenance, "recording": rec.provenance()})
    if out is not None:
        save_bundle(bundle, out)
        say(f"bundle written to {out}")
    return bundle
