"""The artifact calibration a bundle carries: which methods, their fitted data, provenance.

:class:`ArtifactCalibration` is data (arrays and JSON), saved in the operator bundle
(:func:`to_bundle` / :func:`from_bundle` give the bundle's optional ``artifact_*`` arrays and
its ``artifacts`` header entry) and read back with the same checks as any untrusted input.
The stream never imports this package: it asks the bundle's calibration for a per-chunk
stage (:meth:`ArtifactCalibration.stage`).

Order of use, whatever the order in ``[artifacts] method``: EOG regression, then ASR, then
the muscle ASR (ASR deciding in a high band, :func:`~.asr.calibrate_asr`'s ``band_hz``; all
per chunk, in place, on the operator's filtered channels; each ASR adds its look-ahead to
the delay), then the projection (folded into the operator when the bundle is built, so the
operator is consistent with it).

With both ASR and the projection (``asr_space = "projected"``, what setup calibrates now)
ASR (and the muscle ASR) works in the subspace the projection leaves: per chunk the data go through
``Q = (I - U U^T) M`` (the projection times the operator's reference) before ASR, and ASR
is calibrated on ``Q``-projected calibration data. The operator ``K P M`` gives the same
output for ``Q x`` as for ``x`` (``P M Q = P M``: ``Q`` is idempotent), so ASR adds only its
own repair; and its repair, rebuilt through a covariance that has no blink in it, cannot
smear a blink's residue into directions the projection does not remove (which made ASR
before the projection worse than the projection alone on frontal theta). Bundles made
before (``asr_space = "channels"``) keep ASR on the raw channels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np

from .asr import AsrCalibration
from .projection import ArtifactProjection, subspace_projector
from .regression import EogRegression

#: Methods in their order of use.
METHOD_ORDER = ("regression", "asr", "muscle", "projection")
SCHEMA = 1
#: Where ASR runs: on the channels, or after the projection (see the module docstring).
ASR_SPACES = ("channels", "projected")
#: Bundle array name -> (part, array name in the part's to_arrays()).
BUNDLE_ARRAYS = {
    "artifact_asr_mixing": ("asr", "mixing"),
    "artifact_asr_thresholds": ("asr", "thresholds"),
    "artifact_asr_filter_b": ("asr", "filter_b"),
    "artifact_asr_filter_a": ("asr", "filter_a"),
    "artifact_muscle_mixing": ("muscle", "mixing"),
    "artifact_muscle_thresholds": ("muscle", "thresholds"),
    "artifact_muscle_filter_b": ("muscle", "filter_b"),
    "artifact_muscle_filter_a": ("muscle", "filter_a"),
    "artifact_regression_coefficients": ("regression", "coefficients"),
    "artifact_projection_vectors": ("projection", "vectors"),
    "artifact_projection_explained": ("projection", "explained"),
}
_PARTS = {"asr": AsrCalibration, "muscle": AsrCalibration, "regression": EogRegression, "projection": ArtifactProjection}


@dataclass(frozen=True)
class ArtifactCalibration:
    """What the artifact stage needs, fitted on calibration data.

    Attributes
    ----------
    methods : tuple of str
        Methods on, in :data:`METHOD_ORDER`.
    asr : AsrCalibration or None
        On the operator's channels, SI units.
    regression : EogRegression or None
        EOG (stream channels, SI) into the operator's EEG channels.
    projection : ArtifactProjection or None
        Ocular/cardiac patterns on the operator's channels (already folded into the kernel).
    lookahead_s : float
        ASR look-ahead (the output's delay), s.
    update_every : int
        Samples between ASR eigen-updates.
    recalibrate_s : float
        Seconds recorded for a live recalibration.
    provenance : str
        JSON text: where the calibration data came from.
    muscle : AsrCalibration or None
        The muscle ASR (decides in a high band), on the operator's channels, SI units.
    asr_space : {"channels", "projected"}
        Whether ASR runs on the channels or after the projection (:meth:`asr_projector`).
    reference : str
        The operator's EEG reference ("average", a channel name, "none"), for
        :meth:`asr_projector`.
    """

    methods: tuple[str, ...]
    asr: AsrCalibration | None = None
    regression: EogRegression | None = None
    projection: ArtifactProjection | None = None
    lookahead_s: float = 0.25
    update_every: int = 32
    recalibrate_s: float = 60.0
    provenance: str = "{}"
    asr_space: str = "channels"
    reference: str = "none"
    muscle: AsrCalibration | None = None

    def __post_init__(self):
        methods = tuple(m for m in METHOD_ORDER if m in self.methods)
        unknown = sorted(set(self.methods) - set(METHOD_ORDER))
        if unknown:
            raise ValueError(f"ArtifactCalibration methods {unknown} unknown; use {list(METHOD_ORDER)}")
        object.__setattr__(self, "methods", methods)
        for m in methods:
            if getattr(self, m) is None:
                raise ValueError(f"ArtifactCalibration: method {m!r} is on but has no calibration; calibrate it (rtsource setup)")
        if self.asr_space not in ASR_SPACES or (self.asr_space == "projected" and self.projection is None):
            raise ValueError(f"ArtifactCalibration asr_space = {self.asr_space!r}; use one of {list(ASR_SPACES)} ('projected' needs a projection)")
        if not 0.0 <= self.lookahead_s <= 1.0 or int(self.update_every) < 1 or not 1.0 <= self.recalibrate_s <= 600.0:
            raise ValueError(
                f"ArtifactCalibration lookahead_s = {self.lookahead_s!r} (0-1 s), update_every = {self.update_every!r} (>= 1), "
                f"recalibrate_s = {self.recalibrate_s!r} (1-600 s)"
            )

    @property
    def per_chunk(self) -> bool:
        """Whether anything runs per chunk (regression or ASR)."""
        return "asr" in self.methods or "muscle" in self.methods or "regression" in self.methods

    @property
    def delay_samples(self) -> int:
        one = int(round(self.lookahead_s * self.sfreq)) if self.sfreq else 0
        return one * (("asr" in self.methods) + ("muscle" in self.methods))

    @property
    def sfreq(self) -> float:
        """Sampling rate of the per-chunk parts, Hz (0 without any)."""
        for part in (self.asr, self.muscle, self.regression):
            if part is not None:
                return float(part.sfreq)
        return 0.0

    def projector(self, ch_names) -> np.ndarray | None:
        """The projection on ``ch_names`` (``I - U U^T``), or None without projection."""
        return self.projection.projector(ch_names) if "projection" in self.methods else None

    def asr_projector(self, ch_names, scale=None) -> np.ndarray | None:
        """``Q = (I - U U^T) M`` on ``ch_names``, the spatial filter before ASR, or None.

        None unless ASR runs after the projection (``asr_space = "projected"``). Built as
        the operator is built on these channels (:meth:`projector`, and the reference on
        the projection's channels, which are the EEG ones), so a rebuild without a bad
        channel gets its own.

        Parameters
        ----------
        ch_names : sequence of str
        scale : array_like, shape (n_ch,), optional
            Per-channel factor from the data's unit to SI: ``Q`` in that unit is
            ``D^-1 Q D``, D = diag(scale).
        """
        if self.asr_space != "projected" or not {"asr", "muscle"} & set(self.methods):
            return None
        return subspace_projector(self.projection, self.reference, ch_names, scale)

    def describe(self) -> dict:
        """What is applied, for the output streams' metadata and the CLI."""
        out: dict = {"methods": list(self.methods), "delay_s": round(self.delay_samples / self.sfreq, 6) if self.delay_samples else 0.0}
        if self.asr is not None and "asr" in self.methods:
            out["asr"] = {"cutoff": self.asr.cutoff, "window_s": self.asr.window_s, "lookahead_s": self.lookahead_s, "n_channels": len(self.asr.ch_names),
                          "space": self.asr_space}  # fmt: skip
        if self.muscle is not None and "muscle" in self.methods:
            band = json.loads(self.muscle.provenance).get("band_hz")
            out["muscle"] = {"cutoff": self.muscle.cutoff, "band_hz": band, "lookahead_s": self.lookahead_s, "space": self.asr_space}
        if self.regression is not None and "regression" in self.methods:
            out["regression"] = {"eog": list(self.regression.eog_names)}
        if self.projection is not None and "projection" in self.methods:
            out["projection"] = {"kinds": list(self.projection.kinds)}
        return out

    def with_asr(self, asr: AsrCalibration) -> "ArtifactCalibration":
        return replace(self, asr=asr)

    def stage(self, ch_names, scale, max_chunk: int, *, eog_index=None, eog_scale=None, sos=None):
        """A per-chunk :class:`~.stage.ArtifactStage` for an operator's channels.

        Parameters
        ----------
        ch_names : sequence of str
            The operator's channels, in its column order.
        scale : array_like, shape (n_ch,)
            Stream unit -> SI factor per channel (``ChannelMap.scale``).
        max_chunk : int
        eog_index, eog_scale : array_like, optional
            Stream columns of the EOG channels and their unit factors (regression).
        sos : ndarray, shape (n_sections, 6), optional
            The operator's causal filter, applied to the EOG channels too.
        """
        from .stage import ArtifactStage

        return ArtifactStage(self, ch_names, scale, max_chunk, eog_index=eog_index, eog_scale=eog_scale, sos=sos)

    def refit(self, data, sfreq: float, ch_names, **kwargs):
        """``(calibration, changes)`` refitted on samples the loop recorded (live recalibration;
        :func:`~.refit.refit_calibration` documents the arguments)."""
        from .refit import refit_calibration

        return refit_calibration(self, data, sfreq, ch_names, **kwargs)


def to_bundle(cal: ArtifactCalibration) -> tuple[dict[str, np.ndarray], dict]:
    """``(arrays, header_entry)``: the bundle's ``artifact_*`` arrays and its ``artifacts`` header."""
    arrays: dict[str, np.ndarray] = {}
    header = {
        "schema": SCHEMA, "methods": list(cal.methods), "lookahead_s": cal.lookahead_s, "update_every": int(cal.update_every),
        "recalibrate_s": cal.recalibrate_s, "provenance": cal.provenance, "asr_space": cal.asr_space, "reference": cal.reference,
    }  # fmt: skip
    for part in _PARTS:
        obj = getattr(cal, part)
        if obj is None:
            continue
        part_arrays, text = obj.to_arrays()
        header[part] = text
        for bundle_name, (p, name) in BUNDLE_ARRAYS.items():
            if p == part:
                arrays[bundle_name] = part_arrays[name]
    return arrays, header


def from_bundle(header: dict, arrays: dict) -> ArtifactCalibration:
    """Inverse of :func:`to_bundle`; raises ValueError naming what is wrong."""
    if not isinstance(header, dict) or header.get("schema") != SCHEMA:
        raise ValueError(f"artifact calibration schema {header.get('schema') if isinstance(header, dict) else header!r} is not {SCHEMA}; recalibrate (rtsource setup)")
    parts = {}
    for part, cls in _PARTS.items():
        text = header.get(part)
        if text is None:
            continue
        if not isinstance(text, str):
            raise ValueError(f"artifact calibration {part!r} is not JSON text")
        part_arrays = {name: arrays[b] for b, (p, name) in BUNDLE_ARRAYS.items() if p == part and b in arrays}
        parts[part] = cls.from_arrays(part_arrays, text)
    stray = [b for b, (p, _) in BUNDLE_ARRAYS.items() if b in arrays and p not in parts]
    if stray:
        raise ValueError(f"arrays {stray} belong to no artifact calibration in the header")
    methods = header.get("methods")
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        raise ValueError("artifact calibration 'methods' is not a list of names")
    return ArtifactCalibration(
        tuple(methods), parts.get("asr"), parts.get("regression"), parts.get("projection"), float(header["lookahead_s"]),
        int(header["update_every"]), float(header["recalibrate_s"]), str(header.get("provenance", "{}")),
        str(header.get("asr_space", "channels")), str(header.get("reference", "none")),  # absent before: ASR on the channels
        parts.get("muscle"),
    )  # fmt: skip


def describe_provenance(cal: ArtifactCalibration) -> dict:
    """The provenance JSON texts of the calibration and its parts, parsed."""
    out = {"calibration": json.loads(cal.provenance)}
    for part in _PARTS:
        obj = getattr(cal, part)
        if obj is not None:
            out[part] = json.loads(obj.provenance)
    return out
