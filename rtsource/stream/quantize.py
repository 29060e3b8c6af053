"""Reduced-precision operator storage: per-row scaled int16 (``[performance] operator_dtype``).

Each operator row (one orientation of one source) is stored as int16 values ``q`` and one
float32 factor ``f = max_j |K[row, j]| / 32767``, ``q = round(K / f)``: uniform quantisation
with a per-row step (the scheme of per-channel weight quantisation, Jacob et al. 2018, CVPR,
"Quantization and training of neural networks for efficient integer-arithmetic-only
inference", sec. 2.1, with symmetric ranges). The rounding error of each value is at most
``f / 2``, i.e. 2^-16 of the row's largest value; what that means for the output is measured,
not assumed: :func:`output_error` applies both operators to data and reports the relative
error, at build time (kept in the bundle's provenance under ``operator_storage``) and when
the loop prepares the operator (published in the source stream's metadata).

Accumulation stays float32; only the bytes read per chunk halve, which is what limits a
chunk of one sample.
"""

from __future__ import annotations

import numpy as np

from ..arrays import aligned_empty
from ..errors import ConfigError

DTYPES = ("float32", "int16")
_QMAX = 32767.0


def quantize_tiles(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 tiles (n_tiles, n_channels, 48) -> (int16 tiles, row factors (n_tiles, 48) float32).

    Rows that are all zero (padding) get factor 0.
    """
    peak = np.abs(packed).max(axis=1)  # (n_tiles, 48): the largest value of each row
    scale = (peak / _QMAX).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = aligned_empty(packed.shape, np.int16)  # as the float32 tiles (see arrays.aligned_empty)
    np.rint(packed / safe[:, None, :], out=q, casting="unsafe")
    return q, scale


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ConfigError(f"[performance] operator_dtype = {dtype!r}: must be one of {', '.join(DTYPES)}")
    return dtype


def quantized_rows(kernel: np.ndarray) -> np.ndarray:
    """``kernel`` (n_rows, n_channels) as the int16 storage represents it (float64), for error checks."""
    k = np.asarray(kernel, dtype=np.float32)
    scale = np.abs(k).max(axis=1) / _QMAX
    safe = np.where(scale > 0, scale, 1.0)
    return np.rint(k / safe[:, None]) * safe[:, None]


def output_error(kernel: np.ndarray, noise_norm: np.ndarray, n_orient: int, x: np.ndarray) -> float:
    """Relative error ||y_int16 - y_float32||_F / ||y_float32||_F of the pooled, normalised output on ``x``.

    Parameters
    ----------
    kernel : ndarray, shape (n_sources * n_orient, n_channels)
    noise_norm : ndarray, shape (n_sources,)
    n_orient : {1, 3}
    x : ndarray, shape (n_samples, n_channels)
        Data in the kernel's input unit (e.g. drawn from the noise covariance).
    """

    def apply(k):
        y = x @ k.T
        if n_orient == 3:
            y = np.sqrt((y.reshape(len(x), -1, 3) ** 2).sum(axis=2))
        return y / noise_norm

    ref = apply(np.asarray(kernel, dtype=np.float32).astype(np.float64))
    got = apply(quantized_rows(kernel))
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-300))


def storage_record(kernel: np.ndarray, noise_norm: np.ndarray, n_orient: int, noise_cov: np.ndarray | None, n_samples: int = 2000) -> dict:
    """The build-time record of the int16 storage: its error on data drawn from ``noise_cov``
    (white data when None), for the bundle's provenance (``operator_storage``)."""
    rng = np.random.default_rng(0)
    n_chan = kernel.shape[1]
    white = rng.standard_normal((n_samples, n_chan))
    if noise_cov is not None:
        w, v = np.linalg.eigh(np.asarray(noise_cov, dtype=float))
        white = white @ (v * np.sqrt(np.clip(w, 0, None))).T
        source = f"{n_samples} samples drawn from the noise covariance"
    else:
        source = f"{n_samples} samples of white noise"
    err = output_error(kernel, noise_norm, n_orient, white)
    return {"dtype": "int16", "scheme": "per-row scaled int16 (max |row| / 32767)", "relative_error": err, "measured_on": source}
