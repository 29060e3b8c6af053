"""EOG regression: propagation factors from calibration data, subtracted per chunk.

For streams that carry EOG channels, as the alternative to spatial methods that does not
cost rank: each EEG channel is modelled as brain + sum_e b_ec * EOG_e, with the factors b
from least squares on the calibration data (Gratton, Coles & Donchin 1983,
Electroencephalogr Clin Neurophysiol 55:468; Croft & Barry 2000, Neurophysiol Clin 30:5,
who fit them on all the data, blinks and saccades together, as here). Online the EEG
minus the EOG times b is published (:func:`._kernels.regress_out`); causal, no delay.
Both EEG and EOG must be high-passed alike (the stream's filters) before fitting and use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

SCHEMA = 1


@dataclass(frozen=True)
class EogRegression:
    """Propagation factors of EOG into EEG: data, not code.

    Attributes
    ----------
    eeg_names, eog_names : tuple of str
    coefficients : ndarray, shape (n_eog, n_eeg)
        EEG unit per EOG unit.
    sfreq : float
    provenance : str
        JSON text: the data's source and the fit's residual.
    """

    eeg_names: tuple[str, ...]
    eog_names: tuple[str, ...]
    coefficients: np.ndarray
    sfreq: float
    provenance: str = "{}"

    def __post_init__(self):
        c = np.array(self.coefficients, dtype=float)
        c.flags.writeable = False
        object.__setattr__(self, "coefficients", c)
        object.__setattr__(self, "eeg_names", tuple(self.eeg_names))
        object.__setattr__(self, "eog_names", tuple(self.eog_names))
        if c.shape != (len(self.eog_names), len(self.eeg_names)):
            raise ValueError(f"EogRegression.coefficients has shape {c.shape}; expected ({len(self.eog_names)}, {len(self.eeg_names)}) (EOG x EEG)")
        if not np.all(np.isfinite(c)):
            raise ValueError("EogRegression.coefficients contain NaN or inf; refit on finite data")

    def to_arrays(self) -> tuple[dict[str, np.ndarray], str]:
        """``(arrays, json_text)`` for a bundle."""
        meta = {"schema": SCHEMA, "eeg_names": list(self.eeg_names), "eog_names": list(self.eog_names), "sfreq": self.sfreq, "provenance": self.provenance}
        return {"coefficients": np.array(self.coefficients)}, json.dumps(meta)

    @classmethod
    def from_arrays(cls, arrays: dict, json_text: str) -> "EogRegression":
        meta = json.loads(json_text)
        if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
            raise ValueError(f"EOG regression schema {meta.get('schema') if isinstance(meta, dict) else meta!r} is not {SCHEMA}; refit")
        if "coefficients" not in arrays:
            raise ValueError("EOG regression arrays lack 'coefficients'; refit")
        return cls(tuple(meta["eeg_names"]), tuple(meta["eog_names"]), arrays["coefficients"], float(meta["sfreq"]), str(meta["provenance"]))


def fit_eog_regression(eeg, eog, sfreq: float, eeg_names, eog_names, source: str = "") -> EogRegression:
    """Least-squares propagation factors of ``eog`` (n_times, n_eog) into ``eeg`` (n_times, n_eeg).

    Both high-passed alike, in the units the regressor will see; the EOG should contain
    blinks and eye movements (a calibration with the eyes still has nothing to fit).
    """
    y = np.asarray(eeg, dtype=float)
    e = np.asarray(eog, dtype=float)
    if y.ndim != 2 or e.ndim != 2 or len(y) != len(e) or y.shape[1] != len(eeg_names) or e.shape[1] != len(eog_names):
        raise ValueError(
            f"fit_eog_regression: eeg {y.shape} and eog {e.shape} need the same n_times and "
            f"{len(eeg_names)} / {len(eog_names)} columns (eeg_names / eog_names)"
        )
    if not (np.isfinite(y).all() and np.isfinite(e).all()):
        raise ValueError("fit_eog_regression data contain NaN or inf; drop those samples first")
    gram = e.T @ e
    if np.linalg.cond(gram) > 1e10:
        raise ValueError(f"fit_eog_regression: the EOG channels {list(eog_names)} are flat or collinear; drop one or record eye movements")
    coef = np.linalg.solve(gram, e.T @ y)
    explained = 1.0 - np.var(y - e @ coef) / np.var(y)
    prov = json.dumps({"source": source, "seconds": round(len(y) / sfreq, 3), "variance_explained": round(float(explained), 4)})
    return EogRegression(tuple(eeg_names), tuple(eog_names), coef, float(sfreq), prov)


class EogRegressor:
    """Subtracts the regressed EOG from EEG chunk by chunk (no delay, no allocation)."""

    def __init__(self, regression: EogRegression, max_chunk: int):
        from . import _kernels

        if not isinstance(regression, EogRegression):
            raise TypeError(f"EogRegressor regression is {type(regression).__name__}; pass an EogRegression (fit_eog_regression)")
        if int(max_chunk) < 1:
            raise ValueError(f"EogRegressor max_chunk = {max_chunk!r}; pass the largest chunk in samples (>= 1)")
        self._kernel = _kernels.regress_out
        self.regression = regression
        self.max_chunk = int(max_chunk)
        self._coef = np.ascontiguousarray(regression.coefficients)

    def process(self, eeg: np.ndarray, eog: np.ndarray, out: np.ndarray) -> int:
        """``out[:n] = eeg - eog @ coefficients``; returns n. Arrays float64, (n, n_eeg) / (n, n_eog)."""
        n_eeg, n_eog = self._coef.shape[1], self._coef.shape[0]
        for name, a, width in (("eeg", eeg, n_eeg), ("eog", eog, n_eog)):
            if not isinstance(a, np.ndarray) or a.ndim != 2 or a.shape[1] != width or a.dtype != np.float64:
                raise ValueError(f"EogRegressor.process {name} is {getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}; pass float64 (n, {width})")
        n = eeg.shape[0]
        if eog.shape[0] != n or n > self.max_chunk:
            raise ValueError(f"EogRegressor.process: eeg has {n} samples, eog {eog.shape[0]}, max_chunk {self.max_chunk}; pass equal chunks <= max_chunk")
        if out.shape[0] < n or out.shape[1] != n_eeg or out.dtype != np.float64:
            raise ValueError(f"EogRegressor.process out is {out.dtype} {out.shape}; pass float64 (>= {n}, {n_eeg})")
        if not (np.isfinite(eeg).all() and np.isfinite(eog).all()):
            raise ValueError("EogRegressor.process input contains NaN or inf; repair or drop the samples first")
        self._kernel(eeg, eog, n, self._coef, out)
        return n
