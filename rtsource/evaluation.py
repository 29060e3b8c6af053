"""Localisation sweeps: simulated single dipoles -> operator -> peak error, for every method.

A dipole is placed at a random vertex of the simulator's own cortex (denser and at another
depth than the inverse's grid, with another head model: see ``rtsource.simulator``),
oscillates at 10 Hz along the cortical normal, and is added to the simulator's background
(1/f brain noise + sensor noise) at a chosen sensor SNR (signal power / noise power over
the average-referenced channels). The noise covariance comes from a separate noise-only
segment. The error is the distance from the true position to the source with the largest
mean squared output over the segment.

Every method of :func:`rtsource.inverse.make.make_operator` can be swept: the
minimum-norm family (MNE, dSPM, sLORETA, eLORETA) is built once from the noise
covariance; an LCMV beamformer needs the data covariance, which (as in practice) is
estimated from each simulated segment itself, dipole included, so it is rebuilt per
dipole. All methods see the same simulated segments.

The mean squared output of source k over a segment X (samples x channels) is computed
from the segment's second-moment matrix ``S = X^T X / n`` as
``sum_rows(K_k S K_k^T) / noise_norm_k^2``, which equals the mean of the squared
(pooled, for three orientations) output sample by sample, at a fraction of the cost.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .build import compute_leadfield
from .config import Settings
from .inverse.covariance import estimate_data_covariance, estimate_noise_covariance
from .inverse.make import make_operator
from .inverse.operator import LinearInverse
from .inverse.params import InverseParams, LcmvParams, MinimumNormParams
from .inverse.reference import reference_matrix
from .simulator import SignalGenerator

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MethodSpec:
    """One operator to evaluate: a label, a method and its parameters.

    ``params`` are keyword arguments of :class:`~rtsource.inverse.params.MinimumNormParams`
    that override the settings' ``[inverse]`` section (snr, loose, depth, fixed), or of
    :class:`~rtsource.inverse.params.LcmvParams` (reg, weight_norm, orientation, depth);
    :meth:`inverse_params` makes the typed parameters.
    """

    label: str
    method: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def inverse_params(self, settings: Settings) -> InverseParams:
        """The typed parameters this spec stands for with ``settings``."""
        if self.method.upper() == "LCMV":
            return LcmvParams(**self.params)
        inv = settings.inverse
        base = {"snr": inv.snr, "loose": inv.loose, "depth": inv.depth or None, "fixed": inv.fixed}
        return MinimumNormParams(method=self.method, **{**base, **self.params})


_UNGI = "unit-noise-gain-invariant"

#: The methods ``tools/localisation.py`` sweeps by default: the minimum-norm family with
#: the settings' parameters, and LCMV variants at the default regularisation (0.05 of the
#: mean eigenvalue) and at 0.5, which the normalised variants need with a template head
#: model (see ``make_lcmv``: forward-model errors make a weakly regularised beamformer
#: cancel the very source it looks for).
DEFAULT_METHODS: tuple[MethodSpec, ...] = (
    MethodSpec("MNE", "MNE"),
    MethodSpec("dSPM", "dSPM"),
    MethodSpec("sLORETA", "sLORETA"),
    MethodSpec("eLORETA", "eLORETA"),
    MethodSpec("LCMV-ug-maxpower", "LCMV", {"weight_norm": None, "orientation": "max-power"}),
    MethodSpec("LCMV-ug-fixed", "LCMV", {"weight_norm": None, "orientation": "fixed"}),
    MethodSpec("LCMV-ung-free", "LCMV", {"weight_norm": "unit-noise-gain", "orientation": "free"}),
    MethodSpec("LCMV-ungi-free", "LCMV", {"weight_norm": _UNGI, "orientation": "free"}),
    MethodSpec("LCMV-ungi-maxpower", "LCMV", {"weight_norm": _UNGI, "orientation": "max-power"}),
    MethodSpec("LCMV-nai-maxpower", "LCMV", {"weight_norm": "nai", "orientation": "max-power"}),
    MethodSpec("LCMV-ung-fixed-reg0.5", "LCMV", {"weight_norm": "unit-noise-gain", "orientation": "fixed", "reg": 0.5}),
    MethodSpec("LCMV-ungi-free-reg0.5", "LCMV", {"weight_norm": _UNGI, "orientation": "free", "reg": 0.5}),
    MethodSpec("LCMV-ungi-maxpower-reg0.5", "LCMV", {"weight_norm": _UNGI, "orientation": "max-power", "reg": 0.5}),
)


def method_spec(name: str) -> MethodSpec:
    """A :data:`DEFAULT_METHODS` entry by label (case-insensitive), or a bare method name."""
    for spec in DEFAULT_METHODS:
        if spec.label.lower() == name.lower():
            return spec
    if name.lower() == "lcmv":
        return MethodSpec("LCMV", "LCMV")
    return MethodSpec(name, name)


@dataclass(frozen=True)
class SweepResult:
    """Per-dipole results of a sweep for one method (distances in mm)."""

    errors_mm: np.ndarray
    true_positions_m: np.ndarray
    found_positions_m: np.ndarray
    snr_db: float
    method: str

    def summary(self) -> dict:
        e = self.errors_mm
        return {
            "method": self.method,
            "n_dipoles": len(e),
            "snr_db": self.snr_db,
            "median_mm": round(float(np.median(e)), 1),
            "p25_mm": round(float(np.percentile(e, 25)), 1),
            "p75_mm": round(float(np.percentile(e, 75)), 1),
            "p90_mm": round(float(np.percentile(e, 90)), 1),
            "max_mm": round(float(e.max()), 1),
            "within_10mm": round(float(np.mean(e <= 10)), 3),
            "within_20mm": round(float(np.mean(e <= 20)), 3),
        }


def mean_power(op: LinearInverse, second_moment: np.ndarray) -> np.ndarray:
    """Mean squared output per source for data with second-moment matrix ``X^T X / n``.

    Parameters
    ----------
    op : LinearInverse
    second_moment : ndarray, shape (n_chan, n_chan)
        ``X^T X / n`` of raw data in the operator's channel order (V^2).

    Returns
    -------
    ndarray, shape (n_sources,)
        ``mean_t(y_k(t)^2)`` of :func:`~rtsource.inverse.operator.apply_inverse`'s
        output, in ``op.output_unit`` squared.
    """
    k = op.kernel
    rows = np.einsum("rc,rc->r", k @ second_moment, k)
    return rows.reshape(op.n_sources, op.n_orient).sum(axis=1) / op.noise_norm**2


def localisation_sweep(
    settings: Settings,
    methods: Sequence[MethodSpec | str] = DEFAULT_METHODS,
    *,
    n_dipoles: int = 30,
    snr_db: float = 10.0,
    seed: int = 0,
    seconds: float = 4.0,
    data_cov_method: str = "empirical",
) -> dict[str, SweepResult]:
    """Localise ``n_dipoles`` random single dipoles with each method on the same data.

    Parameters
    ----------
    settings : Settings
        Head, sensors, sources, forward, noise-covariance estimator, simulator and the
        default minimum-norm parameters (``[inverse]``).
    methods : sequence of MethodSpec or str
        What to evaluate (labels of :data:`DEFAULT_METHODS` or method names).
    n_dipoles : int
        Number of random dipoles (distinct simulator vertices).
    snr_db : float
        Sensor SNR: signal power over noise power on average-referenced channels.
    seed : int
        Seeds the simulator and the dipole draw.
    seconds : float
        Length of each simulated segment (and, times five, of the noise calibration).
    data_cov_method : str
        Estimator of the LCMV data covariance (``"empirical"`` or ``"shrunk"``).

    Returns
    -------
    dict
        ``label -> SweepResult``, in the order of ``methods``.
    """
    specs = [m if isinstance(m, MethodSpec) else method_spec(m) for m in methods]
    sfreq = settings.simulate.sfreq
    sim = dataclasses.replace(settings.simulate, sources=(), seed=seed)
    ch = tuple(settings.sensors.channels)
    gen = SignalGenerator(sim, ch)
    n_block = int(seconds * sfreq)
    calibration, _ = gen.next(5 * n_block)
    ref = settings.sensors.reference
    m = reference_matrix(ch, ref)
    cov = estimate_noise_covariance(calibration, ch, method=settings.noise_cov.method, reference=m)
    lf = compute_leadfield(settings).leadfield
    positions = lf.sources.positions_m
    normals = lf.sources.normals
    fixed_ops: dict[str, LinearInverse] = {}
    for spec in specs:
        if spec.method.upper() != "LCMV":
            fixed_ops[spec.label] = make_operator(
                spec.inverse_params(settings), lf.gain, normals, cov, reference=ref, ch_names=ch,
            )

    rng = np.random.default_rng(seed + 1)
    picks = rng.choice(gen.usable, size=n_dipoles, replace=False)
    gains = gen._normal_gains(picks)  # (n_chan, n_dipoles)
    t = np.arange(n_block) / sfreq
    wave = np.sin(2 * np.pi * 10.0 * t)
    avg = reference_matrix(ch, "average")  # SNR is measured on average-referenced channels
    found = {s.label: [] for s in specs}
    for j in range(n_dipoles):
        noise, _ = gen.next(n_block)
        signal = np.outer(wave, gains[:, j])
        p_sig = np.mean((signal @ avg) ** 2)
        p_noise = np.mean((noise @ avg) ** 2)
        data = signal * np.sqrt(10 ** (snr_db / 10) * p_noise / p_sig) + noise
        second = data.T @ data / n_block
        dcov = None
        for spec in specs:
            op = fixed_ops.get(spec.label)
            if op is None:
                if dcov is None:
                    dcov = estimate_data_covariance(data, ch, method=data_cov_method, reference=m)
                op = make_operator(
                    spec.inverse_params(settings), lf.gain, normals, cov, reference=ref,
                    ch_names=ch, data_cov=dcov,
                )
            found[spec.label].append(int(np.argmax(mean_power(op, second))))
    truth = gen.cortex.positions_m[picks]
    out = {}
    for spec in specs:
        f = positions[np.array(found[spec.label])]
        err = np.linalg.norm(f - truth, axis=1) * 1e3
        out[spec.label] = SweepResult(err, truth, f, snr_db, spec.label)
        logger.info("localisation %s: %s", spec.label, out[spec.label].summary())
    return out


def single_dipole_sweep(
    settings: Settings,
    *,
    n_dipoles: int = 30,
    snr_db: float = 10.0,
    seed: int = 0,
    seconds: float = 4.0,
    method: str | MethodSpec | None = None,
) -> SweepResult:
    """Localise ``n_dipoles`` random single dipoles with one method.

    ``method`` defaults to ``settings.inverse.method`` with the settings' parameters;
    see :func:`localisation_sweep` for the rest.
    """
    spec = method if isinstance(method, MethodSpec) else method_spec(method or settings.inverse.method)
    res = localisation_sweep(settings, [spec], n_dipoles=n_dipoles, snr_db=snr_db, seed=seed, seconds=seconds)
    return res[spec.label]
