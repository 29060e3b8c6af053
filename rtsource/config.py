"""TOML configuration -> validated, frozen settings.

One file describes the whole path from head model to published sample. Each ``[section]``
maps onto a frozen dataclass below; every key is checked on load, and an error names the
file, the key, the value and what is allowed. Unknown keys are errors (a typo must not be
silently ignored). Every key has a default, so an empty file is a valid configuration:
the template head with a 64-channel cap, dSPM, and the simulator's stream.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError
from .inverse.params import METHODS, ORIENTATIONS, WEIGHT_NORMS, EloretaOptions, LcmvParams, MinimumNormParams
from .sensors.montage import CAP_64

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def _nonneg(v: float) -> str | None:
    return None if v >= 0 else "must be >= 0"


def _unit_interval(v: float) -> str | None:
    return None if 0 <= v <= 1 else "must be between 0 and 1"


def _between(lo: float, hi: float, unit: str = "", why: str = ""):
    """Range check with a sane maximum (huge values overflow or allocate without bound)."""

    def check(v: float) -> str | None:
        if lo <= v <= hi:
            return None
        u = f" {unit}" if unit else ""
        if v > hi:
            problem = f"must be at most {hi:g}{u}"
        elif lo > 0 and v <= 0:
            problem = f"must be > 0 (at least {lo:g}{u})"
        else:
            problem = f"must be at least {lo:g}{u}"
        return problem + (f"; {why}" if why else "")

    return check


def _one_of(*allowed: str):
    def check(v: str) -> str | None:
        return None if v in allowed else f"must be one of {', '.join(repr(a) for a in allowed)}"

    return check


def _opt(check, doc: str = "", default=dataclasses.MISSING, factory=dataclasses.MISSING):
    meta = {"check": check, "doc": doc}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class HeadSettings:
    """[head]: the head model geometry."""

    model: str = _opt(_one_of("template", "freesurfer"), "the embedded fsaverage template, or a FreeSurfer subject (docs/subject.md)", "template")
    bem_order: int = _opt(_one_of(3, 4), "icosphere order of the template's head surfaces (3: 642, 4: 2562 vertices)", 4)
    subjects_dir: str = _opt(None, "freesurfer: the SUBJECTS_DIR (relative to the config; empty: $SUBJECTS_DIR)", "")
    subject: str = _opt(None, "freesurfer: the subject's folder name in subjects_dir", "")
    trans: str = _opt(None, "freesurfer: MNE -trans.fif (head <-> MRI); empty: coregister the electrodes to the subject's scalp", "")
    bem: str = _opt(None, "freesurfer: MNE -bem.fif / -bem-sol.fif with the BEM surfaces; empty: the subject's bem/*.surf", "")
    fiducials: str = _opt(None, "freesurfer: MNE -fiducials.fif; empty: bem/SUBJECT-fiducials.fif, else estimated from talairach.xfm", "")


@dataclass(frozen=True)
class SensorSettings:
    """[sensors]: which electrodes, where, and how the data are referenced."""

    montage: str = _opt(
        lambda v: None if v.strip() else "must be a standard name or a file path",
        "'standard_1020' / 'standard_1010' / 'standard_1005' (on the template scalp) or an electrode "
        "file (.tsv BIDS, .elc, .sfp, .bvef, .pos, .csv) that [coreg] aligns to the template",
        "standard_1005",
    )
    channels: tuple[str, ...] = _opt(None, "channel names the operator expects, in order", factory=lambda: CAP_64)
    reference: str = _opt(None, "'average' or the name of the reference channel", "average")
    aliases: dict = _opt(
        lambda v: None if all(isinstance(x, str) for x in v.values()) else "values must be channel names (strings)",
        "stream name -> montage name, for non-standard labels",
        factory=dict,
    )
    modality: str = _opt(_one_of("eeg", "meg", "eeg+meg"), "which sensors the operator uses", "eeg")
    meg_array: str = _opt(None, "'generic' (306-channel helmet) or a MEG array JSON file", "generic")
    meg_accuracy: str = _opt(_one_of("point", "normal", "accurate"), "integration points per coil", "normal")
    meg_channels: tuple[str, ...] = _opt(None, "MEG channels the operator uses (empty: all of the array)", factory=tuple)
    hfc_order: int = _opt(_between(0, 2), "OPM magnetometers: homogeneous field correction folded into the operator (0: off, 1: uniform field, 2: + gradients)", 0)


@dataclass(frozen=True)
class CoregSettings:
    """[coreg]: aligning an electrode file to the template head (unused for standard montages)."""

    method: str = _opt(_one_of("icp", "fiducials", "none"), "fiducials then robust point-to-plane ICP, fiducials only, or none", "icp")
    headshape: str = _opt(None, "optional headshape file (any montage format, or plain 'x y z' text) in the electrode file's frame", "")
    headshape_unit: str = _opt(lambda v: None if v in ("", "m", "cm", "mm") else "must be '', 'm', 'cm' or 'mm'", "length unit of the headshape file (needed for plain 'x y z' text)", "")
    scale: bool = _opt(None, "allow a uniform scale (template heads rarely fit the subject's size)", False)
    max_rms_mm: float = _opt(_between(0.1, 1000.0, "mm"), "refuse the bundle if electrodes are further than this (RMS) from the scalp", 5.0)
    max_outlier_fraction: float = _opt(_unit_interval, "refuse if more points than this are outliers", 0.2)
    allow_bad_fit: bool = _opt(None, "build anyway when the fit fails the QC thresholds", False)
    qc_png: str = _opt(None, "write the QC picture here (relative to the config); empty: none", "")
    unit: str = _opt(lambda v: None if v in ("", "m", "cm", "mm") else "must be '', 'm', 'cm' or 'mm'", "override the file's length unit", "")
    frame: str = _opt(None, "override the file's frame ('head', 'ctf', 'template', ...)", "")
    trans: str = _opt(None, "[recording]: an MNE -trans.fif (head -> MRI of the template) used instead of fitting; empty: fit", "")


@dataclass(frozen=True)
class RecordingSettings:
    """[recording]: a lab's recording setup takes channels, positions, projectors, MEG sensors and rest data from."""

    file: str = _opt(None, "FIF, EDF/BDF, BrainVision or XDF file, or a BIDS session directory; empty: none (channels from [sensors])", "")
    positions: str = _opt(None, "positions file (any [sensors] montage format) for recordings without digitisation (EDF/BDF, BrainVision, XDF)", "")
    modality: str = _opt(_one_of("", "eeg", "meg", "eeg+meg"), "sensors of the recording the operator uses; empty: all it has", "")


@dataclass(frozen=True)
class SourceSpaceSettings:
    """[source_space]: where the dipoles sit."""

    kind: str = _opt(_one_of("cortex", "volume", "discrete", "surfaces"), "template cortex, a volume grid, your points, or your surfaces", "cortex")
    spacing: str = _opt(_one_of("ico3", "ico4", "ico5", "ico6", "oct5", "oct6", "all"), "cortex: ico4 = 5124 sources, ico5 = 20484 (template: ico4/ico5; a subject: also ico3, ico6, oct5, oct6, all)", "ico4")
    surface: str = _opt(_one_of("white", "mid", "pial"), "cortex: cortical depth of the dipoles", "white")
    volume_spacing_mm: float = _opt(lambda v: None if 2 <= v <= 30 else "must be 2..30 mm", "volume: grid spacing", 7.0)
    volume_mindist_mm: float = _opt(_between(0.0, 50.0, "mm"), "volume: minimum distance to the inner skull", 5.0)
    points: str = _opt(None, "discrete: CSV of name,x,y,z[,nx,ny,nz] in mm (template frame)", "")
    lh: str = _opt(None, "surfaces: left hemisphere (GIFTI or FreeSurfer), in the template frame, mm", "")
    rh: str = _opt(None, "surfaces: right hemisphere", "")
    n_sources: int = _opt(_between(10, 200000), "surfaces: decimate to about this many sources", 5000)


@dataclass(frozen=True)
class ForwardSettings:
    """[forward]: the forward model."""

    method: str = _opt(_one_of("sphere", "bem", "openmeeg"), "concentric spheres (exact series), our BEM (any number of layers), or OpenMEEG's symmetric BEM", "sphere")
    relative_radii: tuple[float, ...] = _opt(None, "shell radii relative to the fitted scalp sphere, inner to outer", factory=lambda: (0.90, 0.92, 0.97, 1.0))
    conductivities: tuple[float, ...] = _opt(None, "S/m per shell, inner to outer", factory=lambda: (0.33, 1.0, 0.004, 0.33))
    rtol: float = _opt(_between(1e-12, 0.1), "relative convergence of the sphere series", 1e-6)
    bem_conductivities: tuple[float, ...] = _opt(
        None, "BEM: S/m per layer, outermost first like the head's surfaces (template: scalp, skull, brain; brain:skull 80 as FieldTrip)", factory=lambda: (0.33, 0.0042, 0.33)
    )


_MN = MinimumNormParams()  # the defaults of [inverse] (one place: rtsource.inverse.params)
_LCMV = LcmvParams()


@dataclass(frozen=True)
class InverseSettings:
    """[inverse]: the inverse operator."""

    method: str = _opt(_one_of(*METHODS), "inverse method", _MN.method)
    snr: float = _opt(_between(0.01, 1000.0, why="lambda2 = 1 / snr^2 must stay a usable regularisation"), "assumed SNR; lambda2 = 1 / snr^2 (minimum-norm family)", _MN.snr)
    loose: float = _opt(_unit_interval, "tangential source variance (0 fixed-like, 1 free)", _MN.loose)
    depth: float = _opt(_between(0.0, 10.0), "minimum-norm depth-weighting exponent (0 disables; eLORETA ignores it)", _MN.depth or 0.0)
    fixed: bool = _opt(None, "surface-normal orientation only (signed output)", _MN.fixed)
    eloreta_eps: float = _opt(_between(1e-12, 0.1), "eLORETA: relative change at which the weights have converged", _MN.eloreta.eps)
    eloreta_max_iter: int = _opt(lambda v: None if 1 <= v <= 1000 else "must be in 1..1000", "eLORETA: iteration limit", _MN.eloreta.max_iter)
    reg: float = _opt(_between(0.0, 100.0), "LCMV: regularisation, fraction of the mean eigenvalue (0.05 as MNE; 0.3-0.5 for template heads)", _LCMV.reg)
    weight_norm: str = _opt(_one_of(*WEIGHT_NORMS), "LCMV: weight normalisation", _LCMV.weight_norm)
    lcmv_orientation: str = _opt(_one_of(*ORIENTATIONS), "LCMV: source orientation", _LCMV.orientation)
    lcmv_depth: float = _opt(_between(0.0, 10.0), "LCMV: depth-weighting exponent (0: none, as MNE-Python; with unit-gain the output is then in a.u.)", _LCMV.depth or 0.0)

    def params(self) -> MinimumNormParams | LcmvParams:
        """The typed parameters of ``method`` (the keys of the other methods are unused)."""
        if self.method == "LCMV":
            return LcmvParams(reg=self.reg, weight_norm=self.weight_norm, orientation=self.lcmv_orientation,
                              depth=self.lcmv_depth or None)
        return MinimumNormParams(
            method=self.method, snr=self.snr, loose=self.loose, depth=self.depth or None, fixed=self.fixed,
            eloreta=EloretaOptions(eps=self.eloreta_eps, max_iter=self.eloreta_max_iter),
        )


@dataclass(frozen=True)
class NoiseCovSettings:
    """[noise_cov]: the noise covariance the inverse whitens with."""

    source: str = _opt(_one_of("stream", "file", "ad_hoc"), "capture from the stream, load a file, or diagonal", "stream")
    seconds: float = _opt(_between(0.1, 600.0, "s", why="longer captures add nothing to a covariance and hold GBs of samples in memory"), "calibration length when capturing from the stream", 20.0)
    path: str = _opt(None, "covariance file (.npz, or an MNE -cov.fif) when source = 'file'", "")
    file: str = _opt(None, "source = 'stream' without a stream: a rest / empty-room recording, or an MNE -cov.fif (with its projectors)", "")
    method: str = _opt(_one_of("shrunk", "empirical"), "estimator", "shrunk")
    ad_hoc_std_uv: float = _opt(_between(1e-6, 1e6, "uV"), "per-channel noise std for source = 'ad_hoc'", 0.2)


@dataclass(frozen=True)
class DataCovSettings:
    """[data_cov]: the data covariance an LCMV beamformer is built from."""

    source: str = _opt(_one_of("stream", "file"), "capture from the stream (with the activity of interest) or load a file", "stream")
    seconds: float = _opt(_between(0.1, 600.0, "s", why="longer captures add nothing to a covariance and hold GBs of samples in memory"), "length of the capture", 60.0)
    path: str = _opt(None, "covariance file (.npz) when source = 'file'", "")
    method: str = _opt(_one_of("empirical", "shrunk"), "estimator", "empirical")


@dataclass(frozen=True)
class StreamSettings:
    """[stream]: which LSL stream to read."""

    name: str = _opt(None, "LSL stream name (empty: any)", "")
    type: str = _opt(None, "LSL stream type (empty: any; 'auto': EEG, MEG or either, as the operator's modality implies)", "auto")
    source_id: str = _opt(None, "LSL source_id (empty: any)", "")
    sfreq: float = _opt(lambda v: None if v == 0 or 1.0 <= v <= 100000.0 else "must be 0 or between 1 and 100000 Hz", "expected sampling rate in Hz (0: take it from the stream at setup)", 0.0)
    resolve_timeout: float = _opt(_between(0.01, 86400.0, "s"), "seconds to wait for the stream", 10.0)
    assume_unit: str = _opt(None, "unit for channels whose metadata has none (e.g. 'uV'); empty: refuse", "")
    max_chunk: int = _opt(lambda v: None if 1 <= v <= 65536 else "must be in 1..65536", "largest chunk processed at once (samples)", 1024)
    lost_after_s: float = _opt(_between(0.01, 3600.0, "s"), "no data for this long: report the stream as lost and wait for it", 1.0)
    latest_only: bool = _opt(None, "when behind, skip the backlog (reported) instead of processing every sample", False)
    max_backlog: int = _opt(_between(0, 10_000_000, "samples"), "latest_only: samples allowed to queue before skipping", 0)
    nonfinite_exclude_s: float = _opt(_between(0.0, 60.0, "s"), "a channel delivering only NaN/Inf this long is swapped out of the operator until it recovers (0: never)", 0.1)
    rate_tolerance: float = _opt(lambda v: None if 0 < v < 1 else "must be in (0, 1)", "effective sampling rate off the declared one by more than this fraction: an event", 0.02)
    rate_window_s: float = _opt(_between(1.0, 3600.0, "s"), "timestamp span over which the effective rate is measured", 10.0)
    rate_startup_s: float = _opt(_between(0.0, 60.0, "s"), "a rate clearly off (10 %) over the first seconds refuses the stream (0: no check)", 2.0)
    compensation_grade: int = _opt(lambda v: None if -1 <= v <= 3 else "must be -1, 0, 1, 2 or 3", "CTF gradient compensation grade of the stream's data (-1: as the stream declares, else the bundle's; 0: uncompensated, compensated in the operator)", -1)
    output_rate_hz: float = _opt(
        lambda v: None if v == 0 or 1.0 <= v <= 100000.0 else "must be 0 or between 1 and 100000 Hz",
        "decimate to this rate before the operator (input rate / whole number; causal anti-aliasing low-pass, >= 60 dB above the new Nyquist; 0: off)", 0.0,
    )  # fmt: skip


@dataclass(frozen=True)
class PreprocessSettings:
    """[preprocess]: causal filtering before the operator."""

    highpass_hz: float = _opt(_nonneg, "Butterworth high-pass corner (0: off)", 0.0)
    lowpass_hz: float = _opt(_nonneg, "Butterworth low-pass corner (0: off)", 0.0)
    order: int = _opt(lambda v: None if 1 <= v <= 8 else "must be in 1..8", "filter order", 2)


@dataclass(frozen=True)
class PerformanceSettings:
    """[performance]: how the kernels run."""

    threads: int = _opt(lambda v: None if 0 <= v <= 256 else "must be in 0..256", "kernel threads (0: all cores but one, leaving one for LSL's I/O and the consumers)", 0)
    low_rank: str = _opt(_one_of("auto", "on", "off"), "apply K as A(Bx) when K has low rank (auto: when cheaper)", "auto")
    operator_dtype: str = _opt(
        _one_of("float32", "int16"),
        "operator storage in the loop: int16 = per-row scaled, half the bytes per chunk; its error is measured at setup and published", "float32",
    )  # fmt: skip


@dataclass(frozen=True)
class RoiSettings:
    """One [[roi]] entry: a region given by a centre and radius, vertices, a hemisphere, or atlas regions."""

    name: str = _opt(lambda v: None if v.strip() and v.isprintable() else "must be a non-empty name", "channel label of the ROI output", "roi")
    center_mm: tuple[float, ...] = _opt(lambda v: None if len(v) in (0, 3) else "needs 3 numbers (template frame, mm)", "centre in template mm", factory=tuple)
    radius_mm: float = _opt(_between(0.1, 500.0, "mm"), "sources within this distance of the centre", 10.0)
    vertices: tuple[int, ...] = _opt(None, "explicit source indices", factory=tuple)
    hemisphere: str = _opt(_one_of("", "lh", "rh"), "a whole hemisphere", "")
    atlas: str = _opt(None, "atlas whose regions form the ROI ('aparc': Desikan-Killiany, docs/atlases.md); with label or labels", "")
    label: str = _opt(None, "one atlas region or alias, with -lh/-rh ('superiortemporal-lh', 'broca-lh')", "")
    labels: tuple[str, ...] = _opt(None, "several atlas regions or aliases, pooled into one ROI", factory=tuple)


@dataclass(frozen=True)
class RoisSettings:
    """[rois]: how ROI time courses are formed and published."""

    file: str = _opt(None, "CSV of name,x,y,z[,radius] (mm, template frame), in addition to [[roi]]", "")
    atlas: str = _opt(None, "one ROI per region of this atlas ('aparc': 68 ROIs named like the regions), in addition to [[roi]]", "")
    mode: str = _opt(_one_of("mean", "mean_flip", "pca_flip", "max"), "aggregation over the ROI's sources", "mean_flip")
    component: str = _opt(_one_of("auto", "normal", "pooled"), "what is aggregated for loose operators (auto: normal for linear modes)", "auto")
    default_radius_mm: float = _opt(_between(0.1, 500.0, "mm"), "radius for file entries without one", 10.0)
    sources_output: bool = _opt(None, "also publish the per-source stream (false: ROI outputs only)", True)


def _check_bands(v: dict) -> str | None:
    for name, edges in v.items():
        if not (isinstance(edges, list) and len(edges) == 2 and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in edges)):
            return f"band {name!r} must be [low_hz, high_hz]"
        if not 0 < edges[0] < edges[1]:
            return f"band {name!r} = {edges}: need 0 < low < high"
    return None


@dataclass(frozen=True)
class BandPowerSettings:
    """[bandpower]: per-ROI band power for neurofeedback (needs ROIs; empty bands: off)."""

    bands: dict = _opt(_check_bands, "name = [low_hz, high_hz] pairs, e.g. {alpha = [8, 12]}", factory=dict)
    rate_hz: float = _opt(_between(0.01, 100000.0, "Hz"), "output rate", 20.0)
    envelope: str = _opt(_one_of("analytic", "square", "rectify"), "envelope detector", "analytic")
    smoothing_s: float = _opt(_between(0.0, 3600.0, "s"), "extra smoothing time constant", 0.0)
    quantity: str = _opt(_one_of("amplitude", "power"), "amplitude or its square", "amplitude")
    zscore: bool = _opt(None, "z-score against the calibration (or the first baseline_s seconds)", False)
    baseline_s: float = _opt(_between(0.0, 3600.0, "s"), "baseline length when no calibration is available", 30.0)


def _check_rules(v: dict) -> str | None:
    from dataclasses import fields as _fields

    from .stream.badchannels import BadChannelRules

    known = {f.name for f in _fields(BadChannelRules)}
    unknown = sorted(set(v) - known)
    if unknown:
        return f"unknown rule(s) {unknown}; known: {', '.join(sorted(known))}"
    bad = [k for k, x in v.items() if isinstance(x, bool) or not isinstance(x, (int, float))]
    return f"rule(s) {bad} must be numbers" if bad else None


@dataclass(frozen=True)
class BadChannelSettings:
    """[badchannels]: watching the channels and swapping the operator without bad ones."""

    detect: bool = _opt(None, "run the flat / saturated / noisy detector", True)
    auto_swap: bool = _opt(None, "rebuild the operator without detected bad channels (hot swap)", False)
    ignore: tuple[str, ...] = _opt(None, "channels never marked bad", factory=tuple)
    rules: dict = _opt(_check_rules, "thresholds overriding the defaults (see rtsource.stream.badchannels)", factory=dict)
    min_channels: int = _opt(
        _nonneg, "never drop channels below this many (refused with an event); 0: half the bundle's channels, at least 16", 0
    )


@dataclass(frozen=True)
class AdaptiveSettings:
    """[adaptive]: LCMV weights recomputed from an exponentially weighted data covariance."""

    enabled: bool = _opt(None, "adapt the beamformer to the incoming data", False)
    half_life_s: float = _opt(_between(0.1, 86400.0, "s"), "half-life of the covariance's memory", 30.0)
    interval_s: float = _opt(_between(0.01, 86400.0, "s"), "seconds between weight updates", 10.0)


ARTIFACT_METHODS = ("none", "regression", "asr", "muscle", "projection")


def _check_artifact_methods(v: tuple) -> str | None:
    unknown = [m for m in v if m not in ARTIFACT_METHODS]
    if unknown:
        return f"has {unknown}; choose among {', '.join(repr(m) for m in ARTIFACT_METHODS)}"
    if len(set(v)) != len(v):
        return "names a method twice"
    if "none" in v and len(v) > 1:
        return "'none' cannot be combined with other methods"
    return None


@dataclass(frozen=True)
class ArtifactSettings:
    """[artifacts]: artifact correction, calibrated at setup and applied in the stream.

    ``method`` is a list; whatever its order, the methods run as regression -> ASR -> muscle
    (high-band ASR; both per chunk, in place, before the operator, after the projection's
    filter when there is one) -> projection (folded into the operator at setup).
    """

    method: tuple[str, ...] = _opt(
        _check_artifact_methods,
        "any of 'regression' (EOG channels regressed out), 'asr' (artifact subspace reconstruction), 'projection' "
        "(ocular/cardiac components projected out of the operator, as SSP), 'muscle' (ASR deciding in a high band where "
        "muscle dominates, reconstructing the full band); 'none' or [] for off. Order of use: regression, asr, muscle, projection",
        factory=lambda: ("none",),
    )
    calibration: str = _opt(_one_of("rest", "stream", "file"), "data to calibrate on: 'rest' (the noise calibration setup captures), 'stream' (capture seconds), 'file' (path)", "rest")
    path: str = _opt(None, "recording file (XDF, EDF/BDF, BrainVision, FIF) when calibration = 'file'; relative to the config", "")
    seconds: float = _opt(_between(15.0, 600.0, "s", why="ASR needs at least 15 clean 1 s windows"), "capture length when calibration = 'stream' (or for a live recalibration)", 60.0)
    asr_cutoff: float = _opt(_between(1.0, 100.0, why="Chang et al. 2020 recommend 20-30"), "ASR threshold in standard deviations of the calibration's component RMS", 20.0)
    asr_window_s: float = _opt(_between(0.1, 5.0, "s"), "ASR sliding covariance window (0.5 s in Mullen et al. 2015)", 0.5)
    asr_lookahead_s: float = _opt(_between(0.0, 1.0, "s"), "ASR look-ahead: output this much behind the input, counted in the latency (0: causal, repairs less)", 0.25)
    asr_update_every: int = _opt(_between(1, 10000, "samples"), "samples between ASR eigen-updates (32 in clean_rawdata)", 32)
    asr_max_bad_channels: float = _opt(_unit_interval, "calibration: fraction of channels allowed outside the RMS z-range in a clean window", 0.075)
    asr_max_remove: float = _opt(_unit_interval, "most components ASR removes at once, as a fraction of the channels", 0.66)
    eog_channels: tuple[str, ...] = _opt(None, "EOG channels in the stream (regression needs them; projection finds ocular components with them)", factory=tuple)
    ecg_channels: tuple[str, ...] = _opt(None, "ECG channels in the stream (projection finds cardiac components with them)", factory=tuple)
    frontal_channels: tuple[str, ...] = _opt(
        None, "projection without EOG: blinks detected on the mean of these channels (empty: the Fp*/AF* channels)", factory=tuple
    )
    n_ocular: int = _opt(_between(0, 10, "components"), "ocular components projected out (MNE's compute_proj_eog uses 1-2 for EEG)", 2)
    n_cardiac: int = _opt(_between(0, 10, "components"), "cardiac components projected out (needs ECG channels)", 1)
    muscle_band_hz: float = _opt(_between(20.0, 200.0, "Hz"), "method 'muscle': ASR decides on the data high-passed here (4th-order Butterworth), where EMG dominates EEG", 60.0)
    muscle_cutoff: float = _opt(_between(1.0, 100.0), "method 'muscle': threshold in standard deviations of the high band's component RMS", 5.0)
    n_muscle: int = _opt(_between(0, 20, "components"), "muscle components projected out (from high-frequency bursts in the calibration; 0: off, leave muscle to ASR)", 0)


@dataclass(frozen=True)
class HeadposSettings:
    """[headpos]: MEG head tracking from cHPI coils, and a forward that follows the head."""

    enabled: bool = _opt(None, "track the head (MEG with cHPI coils); the lines are removed before the operator", False)
    recording: str = _opt(None, "FIF file whose info gives coil frequencies, digitised coils and dev->head (relative to the config)", "")
    coil_freqs_hz: tuple[float, ...] = _opt(None, "one frequency per coil (empty: from the recording)", factory=tuple)
    coil_positions_mm: tuple[float, ...] = _opt(None, "digitised coils, HEAD frame, x y z per coil in mm (empty: from the recording)", factory=tuple)
    window_s: float = _opt(_between(0.02, 10.0, "s"), "least-squares window of the coil fit", 0.2)
    step_s: float = _opt(_between(0.01, 60.0, "s"), "a head pose every this long (NAME-headpos)", 0.1)
    gof_limit: float = _opt(_unit_interval, "coils fitted worse are not used", 0.98)
    dist_limit_mm: float = _opt(_positive, "coils further from their digitised position after the fit are dropped", 5.0)
    update_mm: float = _opt(_nonneg, "recompute lead field and operator when the head moved this far from the operator's pose (0: never)", 3.0)


@dataclass(frozen=True)
class OutputSettings:
    """[output]: the LSL outlet of source time courses."""

    name: str = _opt(None, "outlet name", "rtsource-sources")
    type: str = _opt(None, "outlet type", "Sources")
    source_id: str = _opt(None, "outlet source_id (empty: derived from the bundle)", "")
    max_buffered_s: float = _opt(_between(1.0, 360.0, "s"), "most output LSL keeps per consumer: a stalled consumer cannot grow memory beyond it (raise it for replays faster than real time)", 10.0)


@dataclass(frozen=True)
class ControlSettings:
    """[control]: commands to a running loop (``rtsource mark-bad``) on ``NAME-control``."""

    enabled: bool = _opt(None, "listen for commands; false: the loop takes no commands from other processes", True)
    key_file: str = _opt(
        None,
        "the shared secret commands are signed with (mode 0600, created by `rtsource run` if missing; relative to the config); "
        "empty: one per output name in $XDG_RUNTIME_DIR/rtsource or ~/.config/rtsource/control",
        "",
    )


@dataclass(frozen=True)
class BundleSettings:
    """[bundle]: where the operator bundle is written / read."""

    path: str = _opt(None, "bundle file (.npz); relative to the config file", "rtsource_bundle.npz")


def _check_markers(v: dict) -> str | None:
    for name, raws in v.items():
        items = raws if isinstance(raws, list) else [raws]
        if not items or not all((isinstance(x, str) and x.strip()) or (isinstance(x, (int, float)) and not isinstance(x, bool)) for x in items):
            return f"event {name!r} = {raws!r} must be a marker value (string or number) or a list of them"
    return None


def _check_windows(v: dict) -> str | None:
    for name, edges in v.items():
        if not (isinstance(edges, list) and len(edges) == 2 and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in edges) and edges[0] < edges[1]):
            return f"window {name!r} = {edges!r} must be [start_s, stop_s] with start < stop"
    return None


@dataclass(frozen=True)
class EventsSettings:
    """[events]: the LSL marker stream the loop reads (no markers: no marker input, no epochs)."""

    stream: str = _opt(None, "name of the marker stream (empty: any name; give stream, type or source_id)", "")
    type: str = _opt(None, "type of the marker stream", "Markers")
    source_id: str = _opt(None, "source_id of the marker stream (empty: any)", "")
    markers: dict = _opt(_check_markers, "event name = marker value(s), strings or numbers, e.g. {target = [\"S  1\", 11], standard = \"S  2\"}", factory=dict)
    retry_s: float = _opt(_between(0.1, 3600.0, "s"), "look for the marker stream again this often while it is missing (it may start late or vanish)", 2.0)


@dataclass(frozen=True)
class EpochsSettings:
    """[epochs]: marker-locked epochs, averages and per-epoch features on NAME-epochs / NAME-evoked (needs [events] markers)."""

    tmin: float = _opt(_between(-60.0, 60.0, "s"), "epoch start relative to the marker", -0.2)
    tmax: float = _opt(_between(-60.0, 60.0, "s"), "epoch end relative to the marker (inclusive)", 0.8)
    baseline: tuple[float, ...] = _opt(lambda v: None if len(v) in (0, 2) else "needs [start_s, stop_s] or [] (none)", "interval whose mean is subtracted ([] : none)", factory=lambda: (-0.2, 0.0))
    reject_flagged: bool = _opt(None, "drop epochs with a sample the artifact stage flagged (when one runs)", True)
    average: str = _opt(_one_of("running", "ewma"), "NAME-evoked: running mean of all epochs or exponentially weighted", "running")
    ewma_alpha: float = _opt(lambda v: None if 0 < v <= 1 else "must be in (0, 1]", "weight of the newest epoch in the exponentially weighted average", 0.1)
    features: dict = _opt(_check_windows, "per-epoch BCI features: name = [start_s, stop_s], mean amplitude per channel", factory=dict)
    space: str = _opt(_one_of("roi", "sources"), "epoch the ROI time courses or the per-source output", "roi")
    data: bool = _opt(None, "publish the epoch's samples on NAME-epochs (false: only the features)", True)
    buffer_s: float = _opt(_between(1.0, 600.0, "s"), "data kept for markers that arrive late (the oldest a marker can refer to)", 10.0)


@dataclass(frozen=True)
class ConnectivitySettings:
    """[connectivity]: ROI coupling on sliding windows on NAME-connectivity (needs ROIs; no measures: off)."""

    measures: tuple[str, ...] = _opt(
        lambda v: None if set(v) <= {"coh", "imcoh", "plv", "wpli", "aec"} else "must be among coh, imcoh, plv, wpli, aec",
        "any of coh, imcoh, plv, wpli, aec (empty: off)", factory=tuple,
    )
    bands: dict = _opt(_check_bands, "name = [low_hz, high_hz]", factory=lambda: {"alpha": [8.0, 12.0], "beta": [13.0, 30.0]})
    window_s: float = _opt(_between(0.01, 600.0, "s"), "window length (a multiple of step_s)", 1.0)
    step_s: float = _opt(_between(0.001, 600.0, "s"), "output interval (the stream's rate is 1 / step_s)", 0.1)
    segment_s: float = _opt(_between(0.01, 600.0, "s"), "spectral segment length (resolution 1 / segment_s)", 0.5)
    rois: tuple[str, ...] = _opt(None, "the ROIs whose pairs are measured (empty: all)", factory=tuple)
    zscore: bool = _opt(None, "z-score against the calibration (or the first baseline_s seconds of the stream)", False)
    baseline_s: float = _opt(_between(1.0, 3600.0, "s"), "baseline length when no calibration is available", 30.0)
    output: str = _opt(_one_of("all", "strongest"), "every pair, or the strongest_k edges per measure and band", "all")
    strongest_k: int = _opt(_between(1, 10000), "output = 'strongest': edges per measure and band (pair index and value)", 20)


SIM_ARTIFACTS = ("blinks", "saccades", "ecg", "emg", "pops", "drifts")


@dataclass(frozen=True)
class SimulatedEvoked:
    """One entry of [[simulate.evoked]]: a response after each marker of its event."""

    position_mm: tuple[float, ...] = _opt(lambda v: None if len(v) == 3 else "needs 3 numbers", "template-frame position in mm", factory=lambda: (-55.0, -20.0, 8.0))
    amplitude_nam: float = _opt(_between(-1e6, 1e6, "nA*m"), "peak moment along the cortical normal", 30.0)
    latency_s: float = _opt(_between(0.0, 10.0, "s"), "peak latency after the marker", 0.1)
    width_s: float = _opt(_between(0.001, 10.0, "s"), "Gaussian width (standard deviation)", 0.02)
    event: str = _opt(lambda v: None if v.strip() else "must be an event name", "the marker it responds to", "stim")


@dataclass(frozen=True)
class SimulatedCoupled:
    """One entry of [[simulate.coupled]]: two sources sharing a narrowband rhythm, b lagging a."""

    position_a_mm: tuple[float, ...] = _opt(lambda v: None if len(v) == 3 else "needs 3 numbers", "source a, template frame, mm", factory=lambda: (-40.0, -60.0, 40.0))
    position_b_mm: tuple[float, ...] = _opt(lambda v: None if len(v) == 3 else "needs 3 numbers", "source b, template frame, mm", factory=lambda: (40.0, -60.0, 40.0))
    frequency_hz: float = _opt(_between(0.1, 10000.0, "Hz"), "centre of the shared rhythm", 10.0)
    bandwidth_hz: float = _opt(_between(0.01, 1000.0, "Hz"), "its bandwidth", 2.0)
    amplitude_nam: float = _opt(_between(0.0, 1e6, "nA*m"), "rms moment of each source", 50.0)
    lag_deg: float = _opt(_between(-360.0, 360.0, "deg"), "phase lag of b behind a", 90.0)
    coupling: float = _opt(_unit_interval, "|coherency| between a and b", 0.8)


@dataclass(frozen=True)
class SimulatedSource:
    """One entry of [[simulate.sources]]."""

    position_mm: tuple[float, ...] = _opt(None, "template-frame position in mm (snapped to the simulator's cortex)", factory=lambda: (0.0, -95.0, 5.0))
    frequency_hz: float = _opt(_between(0.01, 50000.0, "Hz"), "oscillation frequency", 10.0)
    amplitude_nam: float = _opt(_between(1e-6, 1e6, "nA*m"), "peak dipole moment in nA*m", 20.0)
    modulation_hz: float = _opt(_between(0.0, 1000.0, "Hz"), "amplitude modulation frequency (0: constant)", 0.2)
    orientation: str = _opt(_one_of("normal"), "dipole orientation", "normal")


@dataclass(frozen=True)
class SimulateSettings:
    """[simulate]: the simulated EEG stream (``rtsource simulate`` and the demo)."""

    sfreq: float = _opt(lambda v: None if 1.0 <= v <= 100000.0 else "must be between 1 and 100000 Hz", "sampling rate in Hz", 500.0)
    chunk_size: int = _opt(lambda v: None if 1 <= v <= 4096 else "must be in 1..4096", "samples per pushed chunk", 10)
    unit: str = _opt(_one_of("uV", "V"), "unit the samples are published in", "uV")
    spacing: str = _opt(_one_of("ico4", "ico5"), "simulator cortex density (ico5: not the inverse's grid)", "ico5")
    surface: str = _opt(_one_of("white", "mid", "pial"), "simulator cortex depth", "mid")
    relative_radii: tuple[float, ...] = _opt(None, "simulator's own head model (differs from the inverse's)", factory=lambda: (0.91, 0.95, 1.0))
    conductivities: tuple[float, ...] = _opt(None, "simulator's shell conductivities (S/m)", factory=lambda: (0.33, 0.0042, 0.33))
    brain_noise_nam: float = _opt(_between(0.0, 1e6, "nA*m"), "rms of each random background dipole, nA*m", 5.0)
    n_noise_sources: int = _opt(_between(0, 20000, why="the simulator's cortex has about 20000 positions"), "number of background dipoles (1000 x 5 nAm: ~8 uV rms EEG)", 1000)
    sensor_noise_uv: float = _opt(_between(0.0, 1e6, "uV"), "white sensor noise std in uV", 1.0)
    baseline_seconds: float = _opt(_between(0.0, 86400.0, "s"), "noise only at the start (for the calibration)", 0.0)
    seed: int = _opt(_between(0, 2**63 - 1), "random seed", 0)
    sources: tuple[SimulatedSource, ...] = _opt(
        None,
        "the oscillating sources",
        factory=lambda: (
            SimulatedSource((20.0, -92.0, 2.0), 10.0, 150.0, 0.2),
            SimulatedSource((-38.0, -22.0, 58.0), 20.0, 100.0, 0.3),
        ),
    )
    meg_accuracy: str = _opt(_one_of("point", "normal", "accurate"), "simulator's coil model (differs from the inverse's)", "accurate")
    meg_noise_ft: float = _opt(_between(0.0, 1e9, "fT"), "white magnetometer noise std in fT", 50.0)
    grad_noise_ft_cm: float = _opt(_between(0.0, 1e9, "fT/cm"), "white gradiometer noise std in fT/cm", 50.0)
    stream_name: str = _opt(None, "LSL name of the simulated stream", "rtsource-sim-eeg")
    source_id: str = _opt(None, "LSL source_id of the simulated stream", "rtsource-sim-eeg-0")
    truth_stream: bool = _opt(None, "also publish the true source amplitudes", True)
    artifacts: tuple[str, ...] = _opt(
        lambda v: None if set(v) <= set(SIM_ARTIFACTS) else f"must be among {', '.join(SIM_ARTIFACTS)}",
        "artifacts added to the EEG (the artifact-free signal stays the ground truth)",
        factory=tuple,
    )
    blink_uv: float = _opt(_nonneg, "blink peak at the strongest frontal electrode, uV (every 3-6 s, 200-400 ms)", 150.0)
    saccade_uv: float = _opt(_nonneg, "horizontal eye movement at full gaze, strongest channel, uV", 40.0)
    ecg_uv: float = _opt(_nonneg, "heartbeat R peak at the strongest channel, uV", 8.0)
    emg_uv: float = _opt(_nonneg, "muscle burst rms at the channel nearest the temporal muscle, uV", 30.0)
    pop_uv: float = _opt(_nonneg, "electrode pop step, uV", 300.0)
    drift_uv: float = _opt(_nonneg, "slow electrode drift rms, uV", 30.0)
    evoked: tuple[SimulatedEvoked, ...] = _opt(None, "event-locked sources (their markers on NAME-markers)", factory=tuple)
    coupled: tuple[SimulatedCoupled, ...] = _opt(None, "coupled source pairs with a known phase lag", factory=tuple)
    event_interval_s: float = _opt(_between(0.01, 3600.0, "s"), "evoked: seconds between markers (plus jitter)", 1.0)
    event_jitter_s: float = _opt(_between(0.0, 3600.0, "s"), "evoked: uniform jitter added to each interval", 0.2)


@dataclass(frozen=True)
class Settings:
    """All settings of one rtsource configuration."""

    head: HeadSettings = field(default_factory=HeadSettings)
    sensors: SensorSettings = field(default_factory=SensorSettings)
    coreg: CoregSettings = field(default_factory=CoregSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    source_space: SourceSpaceSettings = field(default_factory=SourceSpaceSettings)
    forward: ForwardSettings = field(default_factory=ForwardSettings)
    inverse: InverseSettings = field(default_factory=InverseSettings)
    noise_cov: NoiseCovSettings = field(default_factory=NoiseCovSettings)
    data_cov: DataCovSettings = field(default_factory=DataCovSettings)
    stream: StreamSettings = field(default_factory=StreamSettings)
    preprocess: PreprocessSettings = field(default_factory=PreprocessSettings)
    performance: PerformanceSettings = field(default_factory=PerformanceSettings)
    roi: tuple[RoiSettings, ...] = ()
    rois: RoisSettings = field(default_factory=RoisSettings)
    bandpower: BandPowerSettings = field(default_factory=BandPowerSettings)
    badchannels: BadChannelSettings = field(default_factory=BadChannelSettings)
    adaptive: AdaptiveSettings = field(default_factory=AdaptiveSettings)
    headpos: HeadposSettings = field(default_factory=HeadposSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    control: ControlSettings = field(default_factory=ControlSettings)
    events: EventsSettings = field(default_factory=EventsSettings)
    epochs: EpochsSettings = field(default_factory=EpochsSettings)
    connectivity: ConnectivitySettings = field(default_factory=ConnectivitySettings)
    artifacts: ArtifactSettings = field(default_factory=ArtifactSettings)
    bundle: BundleSettings = field(default_factory=BundleSettings)
    simulate: SimulateSettings = field(default_factory=SimulateSettings)
    base_dir: str = "."  # directory relative paths are resolved against (the config's folder)

    def resolve_path(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p


# ---- loading ---------------------------------------------------------------------------

_SECTIONS = {f.name: f.type for f in dataclasses.fields(Settings) if f.name != "base_dir"}


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a field annotation and convert it (lists -> tuples)."""
    origin = typing.get_origin(annotation)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r}: must be true or false")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} = {value!r}: must be an integer")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} = {value!r}: must be a number")
        if not math.isfinite(value):
            raise ConfigError(f"{where} = {value!r}: must be finite")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} = {value!r}: must be a string (in quotes)")
        return value
    if annotation is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{where} = {value!r}: must be a table (name = value pairs)")
        return dict(value)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(annotation) if a is not Ellipsis}
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} = {value!r}: must be a list")
        if dataclasses.is_dataclass(item):
            return tuple(_build(item, v, f"{where}[{i}]") for i, v in enumerate(value))
        return tuple(_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    raise ConfigError(f"{where}: unsupported setting type {annotation!r}")  # pragma: no cover


def _build(cls, table: Any, where: str):
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table ([section] or {{key = value}}), got {table!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)}; allowed keys are "
            f"{', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in table.items():
        key = f"{where}.{name}" if where.startswith("[") is False else f"{where} {name}"
        kwargs[name] = _checked(fields[name], hints[name], value, key)
    return cls(**kwargs)


def _checked(f: dataclasses.Field, annotation: Any, value: Any, key: str) -> Any:
    """One key's value converted and range-checked (the file and the command line share this)."""
    converted = _convert(value, annotation, key)
    check = f.metadata.get("check")
    if check is not None:
        problem = check(converted)
        if problem:
            doc = f.metadata.get("doc", "")
            raise ConfigError(f"{key} = {value!r}: {problem}" + (f" ({doc})" if doc else ""))
    return converted


def _check_atlas_name(name: str, where: str, subject: bool = False) -> None:
    from .anatomy.atlas import ATLASES

    if subject:  # a subject's own label/?h.NAME.annot, read at setup
        if not name.replace(".", "").replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"{where} = {name!r}: not an annotation name; use the NAME of label/lh.NAME.annot, e.g. 'aparc' or 'aparc.a2009s'")
        return
    if name not in ATLASES:
        raise ConfigError(f"{where} = {name!r}: not a known atlas; use one of {', '.join(sorted(ATLASES))}")


def _check_atlas_roi(r: RoiSettings, where: str, subject: bool = False) -> None:
    """Atlas keys of one [[roi]]: atlas with exactly one of label / labels, names that resolve
    (a subject's annotation is read at setup, where its names are checked)."""
    if not r.atlas:
        if r.label or r.labels:
            raise ConfigError(f"{where} [[roi]] {r.name!r}: label/labels need atlas = 'aparc'")
        return
    _check_atlas_name(r.atlas, f"{where} [[roi]] {r.name!r} atlas", subject)
    if bool(r.label) == bool(r.labels):
        raise ConfigError(
            f"{where} [[roi]] {r.name!r}: atlas = {r.atlas!r} needs exactly one of label = 'region-lh' or labels = [...]"
        )
    if subject:
        return
    from .anatomy.atlas import load_atlas

    try:
        load_atlas(r.atlas).resolve(r.labels or r.label)
    except ConfigError as exc:
        raise ConfigError(f"{where} [[roi]] {r.name!r}: {exc}") from None


def _check_head(s: Settings, where: str) -> None:
    """[head] model = 'freesurfer' needs a subject; the template has only ico4/ico5 sources."""
    h = s.head
    if h.model == "template":
        given = [k for k in ("subjects_dir", "subject", "trans", "bem", "fiducials") if getattr(h, k)]
        if given:
            raise ConfigError(f"{where} [head] {', '.join(given)}: used with model = 'freesurfer' only (model is 'template')")
        if s.source_space.kind == "cortex" and s.source_space.spacing not in ("ico4", "ico5"):
            raise ConfigError(f"{where} [source_space] spacing = {s.source_space.spacing!r}: the template has 'ico4' and 'ico5'; other spacings need a FreeSurfer subject")
        return
    if not h.subject:
        raise ConfigError(f"{where} [head] model = 'freesurfer' needs subject = 'NAME' (the folder in subjects_dir)")
    if s.source_space.kind == "cortex" and s.source_space.surface == "mid":
        raise ConfigError(f"{where} [source_space] surface = 'mid' is the template's; a subject's sources sit on 'white' or 'pial'")


def _check_bem_conductivities(s: Settings, where: str) -> None:
    """One positive S/m value per BEM compartment, outermost first, neighbours different."""
    bc = s.forward.bem_conductivities
    key = f"{where} [forward] bem_conductivities = {list(bc)}"
    if not 1 <= len(bc) <= 8:
        raise ConfigError(f"{key}: give one S/m value per BEM layer, outermost first (1 to 8 layers)")
    for k, c in enumerate(bc):
        if not (c > 0 and math.isfinite(c)):
            raise ConfigError(f"{key}: value {k} ({c!r}) must be a positive conductivity in S/m, e.g. 0.33 (scalp, brain), 0.0042 (skull)")
    for k in range(1, len(bc)):
        if bc[k] == bc[k - 1]:
            raise ConfigError(f"{key}: layers {k - 1} and {k} have the same conductivity, so the surface between them adds nothing")
    if s.head.model == "template" and len(bc) != 3:
        raise ConfigError(
            f"{key}: the template head has 3 BEM surfaces (scalp, outer skull, inner skull), so give 3 values, "
            "outermost first: scalp, skull, brain"
        )


def _check_artifacts(s: Settings, where: str) -> None:
    a = s.artifacts
    methods = set(a.method) - {"none"}
    if a.calibration == "file" and methods and not a.path:
        raise ConfigError(f"{where} [artifacts]: calibration = 'file' needs path = '...' (a rest recording)")
    if "regression" in methods and not a.eog_channels:
        raise ConfigError(f"{where} [artifacts] method has 'regression', which needs eog_channels = ['EOG1', ...] (the stream's EOG channels)")
    if ("asr" in methods or "muscle" in methods) and s.preprocess.highpass_hz < 0.1:
        raise ConfigError(
            f"{where} [artifacts] method has 'asr' or 'muscle', which need high-passed data: set [preprocess] highpass_hz = 0.5 "
            f"(it is {s.preprocess.highpass_hz:g})"
        )
    clash = set(a.eog_channels + a.ecg_channels) & set(s.sensors.channels)
    if clash:
        raise ConfigError(f"{where} [artifacts] eog_channels / ecg_channels {sorted(clash)} are operator channels ([sensors] channels); list them in one place only")


def _cross_checks(s: Settings, where: str) -> None:
    f = s.forward
    if len(f.relative_radii) != len(f.conductivities) or not 1 <= len(f.relative_radii) <= 6:
        raise ConfigError(
            f"{where} [forward]: relative_radii ({len(f.relative_radii)}) and conductivities "
            f"({len(f.conductivities)}) must have the same length, 1 to 6 shells"
        )
    for sec, radii, cond in (("forward", f.relative_radii, f.conductivities), ("simulate", s.simulate.relative_radii, s.simulate.conductivities)):
        if len(radii) != len(cond) or not 1 <= len(radii) <= 6:
            raise ConfigError(
                f"{where} [{sec}]: {len(radii)} relative_radii and {len(cond)} conductivities; "
                "give the same number of each, 1 to 6 shells"
            )
        if any(b <= a for a, b in zip(radii, radii[1:])) or radii[-1] != 1.0 or radii[0] <= 0:
            raise ConfigError(
                f"{where} [{sec}] relative_radii = {list(radii)}: must increase (innermost first, conductivities in the "
                "same order) and end at 1.0 (the scalp)"
            )
        if any(c <= 0 for c in cond):
            raise ConfigError(f"{where} [{sec}] conductivities = {list(cond)}: must all be > 0 S/m")
    if "eeg" in s.sensors.modality and len(s.sensors.channels) < 3:
        raise ConfigError(f"{where} [sensors] channels: need at least 3 channels, got {len(s.sensors.channels)}")
    if len(set(c.casefold() for c in s.sensors.channels)) != len(s.sensors.channels):
        raise ConfigError(f"{where} [sensors] channels: names repeat (case-insensitive)")
    if s.sensors.reference != "average" and s.sensors.reference not in s.sensors.channels:
        raise ConfigError(
            f"{where} [sensors] reference = {s.sensors.reference!r}: must be 'average' or one of the channels"
        )
    _check_artifacts(s, where)
    if s.noise_cov.source == "file" and not s.noise_cov.path:
        raise ConfigError(f"{where} [noise_cov]: source = 'file' needs path = '...'")
    for src in s.simulate.sources:
        if len(src.position_mm) != 3:
            raise ConfigError(f"{where} [[simulate.sources]] position_mm = {list(src.position_mm)}: needs 3 numbers")
    for r in s.roi:
        given = sum([bool(r.center_mm), bool(r.vertices), bool(r.hemisphere), bool(r.atlas)])
        if given != 1:
            raise ConfigError(f"{where} [[roi]] {r.name!r}: give exactly one of center_mm, vertices, hemisphere or atlas (got {given})")
        _check_atlas_roi(r, where, s.head.model == "freesurfer")
    if s.rois.atlas:
        _check_atlas_name(s.rois.atlas, f"{where} [rois] atlas", s.head.model == "freesurfer")
    _check_head(s, where)
    names = [r.name for r in s.roi]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where} [[roi]]: names repeat: {names}")
    if s.bandpower.bands and not (s.roi or s.rois.file or s.rois.atlas):
        raise ConfigError(f"{where} [bandpower] bands need ROIs: add [[roi]] entries, [rois] file or [rois] atlas")
    if not s.rois.sources_output and not (s.roi or s.rois.file or s.rois.atlas):
        raise ConfigError(f"{where} [rois] sources_output = false needs ROIs, otherwise nothing is published")
    ss = s.source_space
    if ss.kind == "discrete" and not ss.points:
        raise ConfigError(f"{where} [source_space] kind = 'discrete' needs points = 'file.csv'")
    if ss.kind == "surfaces" and not (ss.lh or ss.rh):
        raise ConfigError(f"{where} [source_space] kind = 'surfaces' needs lh = '...' and/or rh = '...'")
    _check_bem_conductivities(s, where)
    if s.badchannels.rules:
        from .stream.badchannels import BadChannelRules

        BadChannelRules(**{k: float(v) for k, v in s.badchannels.rules.items()})  # raises ConfigError naming the rule
    if s.bandpower.bands:
        from .stream.bandpower import BandPowerSpec

        try:
            BandPowerSpec.from_mapping(s.bandpower.bands, rate_hz=s.bandpower.rate_hz, envelope=s.bandpower.envelope)
        except ConfigError as exc:
            raise ConfigError(f"{where} {exc}") from None
    _check_event_settings(s, where)
    if s.stream.assume_unit:
        from .geometry.units import parse_signal_unit

        try:
            parse_signal_unit(s.stream.assume_unit)
        except Exception as exc:
            raise ConfigError(f"{where} [stream] assume_unit: {exc}") from None


def _check_event_settings(s: Settings, where: str) -> None:
    """[events], [epochs] and [connectivity] against each other (the stages check the rest)."""
    from .pipeline.events import check_event_settings

    try:
        check_event_settings(s)
    except ConfigError as exc:
        raise ConfigError(f"{where} {exc}") from None


def settings_from_dict(data: dict, *, where: str = "config", base_dir: str = ".") -> Settings:
    """Validate a parsed TOML document (a dict of sections) into :class:`Settings`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: top level must be a table of sections")
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown section(s) {', '.join(repr(k) for k in unknown)}; allowed sections are "
            f"{', '.join(sorted(_SECTIONS))}"
        )
    hints = typing.get_type_hints(Settings)
    sections = {
        name: _convert(table, hints[name], f"{where} [[{name}]]") if typing.get_origin(hints[name]) is tuple else _build(hints[name], table, f"{where} [{name}]")
        for name, table in data.items()
    }
    s = Settings(**sections, base_dir=str(base_dir))
    _cross_checks(s, where)
    return s


def apply_overrides(settings: Settings, overrides: Mapping[str, Any], *, labels: Mapping[str, str] | None = None) -> Settings:
    """``settings`` with single keys replaced (command-line options), validated like the file.

    Parameters
    ----------
    settings : Settings
    overrides : mapping of str to value
        ``"section.key"`` -> new value; ``None`` values are skipped (an option not given).
    labels : mapping of str to str, optional
        ``"section.key"`` -> how the value was given (``"--max-chunk"``), named in errors.

    Raises
    ------
    ConfigError
        The value's type or range is wrong, or it conflicts with another key; the message
        names the option, the key, the value and what is allowed.
    """
    labels = labels or {}
    changes: dict[str, dict[str, Any]] = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, _, name = dotted.partition(".")
        label = labels.get(dotted, dotted)
        cls = typing.get_type_hints(Settings).get(section) if section in _SECTIONS else None
        if cls is None or typing.get_origin(cls) is tuple:
            raise ConfigError(f"{label}: {dotted!r} is not a [section] key that can be overridden")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if name not in fields:
            raise ConfigError(f"{label}: [{section}] has no key {name!r}; keys are {', '.join(sorted(fields))}")
        try:
            changes.setdefault(section, {})[name] = _checked(fields[name], typing.get_type_hints(cls)[name], value, f"[{section}] {name}")
        except ConfigError as exc:
            raise ConfigError(f"{label}: {exc}") from None
    if not changes:
        return settings
    new = dataclasses.replace(
        settings, **{sec: dataclasses.replace(getattr(settings, sec), **kv) for sec, kv in changes.items()}
    )
    _cross_checks(new, "(" + ", ".join(labels.get(k, k) for k, v in overrides.items() if v is not None) + ")")
    return new


#: A configuration file is a few kB; bound what is read and how deeply it nests before
#: parsing, so that a hostile file cannot exhaust memory or the parser's recursion.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_CONFIG_DEPTH = 32


def _toml_depth(text: str) -> int:
    """Deepest nesting of arrays and inline tables in TOML text (strings and comments skipped)."""
    depth = deepest = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth = max(0, depth - 1)
        elif c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif c in "\"'":
            quote = c * 3 if text.startswith(c * 3, i) else c
            j = i + len(quote)
            while j < n and not text.startswith(quote, j):
                if c == '"' and text[j] == "\\":
                    j += 1  # basic strings have escapes; literal strings do not
                elif len(quote) == 1 and text[j] == "\n":
                    break  # an unterminated single-line string: the parser reports it
                j += 1
            i = j + len(quote)
            continue
        i += 1
    return deepest


def load_config(path: str | Path) -> Settings:
    """Read and validate a TOML configuration file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {str(path)!r} is {size / 1e6:.1f} MB; configurations are a few kB (limit {MAX_CONFIG_BYTES // (1024 * 1024)} MB): is this the right file?")
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:  # a directory, no permission, ...
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    depth = _toml_depth(text)
    if depth > MAX_CONFIG_DEPTH:
        raise ConfigError(f"config file {str(path)!r} nests arrays or tables {depth} levels deep; rtsource reads at most {MAX_CONFIG_DEPTH} (a configuration needs 3)")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    except RecursionError:  # a backstop: _toml_depth should have caught it
        raise ConfigError(f"config file {str(path)!r} nests too deeply to be a configuration") from None
    return settings_from_dict(data, where=str(path), base_dir=str(path.resolve().parent))


def settings_to_dict(s: Settings) -> dict:
    """Plain-data form of the settings (for bundles and logs)."""
    out = dataclasses.asdict(s)
    out.pop("base_dir", None)
    return out
