"""Sensor noise covariance: estimation from a baseline recording, ad hoc, save and load.

The noise covariance C is what the inverse operator whitens with, and what dSPM measures
source activity against. It is estimated from a stretch of data without the activity of
interest (an eyes-open baseline, empty room for MEG), laid out like an LSL chunk:
``(n_samples, n_chan)`` in V.

Three estimators are offered:

- ``"empirical"``: the sample covariance (divided by ``n - 1``).
- ``"shrunk"`` (default): Ledoit & Wolf (2004, J Multivar Anal 88:365) optimal shrinkage
  of the sample covariance towards a scaled identity. It is well conditioned even when a
  short baseline gives barely more samples than channels.
- ``"diagonal"``: only the channel variances.

If the data are re-referenced (average reference, a reference channel), the covariance is
rank deficient: there is no variance along the reference's null direction. Shrinking towards
the full identity would invent variance there, so shrinkage and the diagonal estimate are
done inside the range of the re-referencing matrix, and the result keeps its rank.
"""

from __future__ import annotations

import logging
import os
import zipfile
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InverseError
from ._checks import check_reference_matrix

logger = logging.getLogger(__name__)

METHODS = ("empirical", "shrunk", "diagonal", "ad_hoc")

#: Marker and version written into every saved covariance file.
FILE_FORMAT = "rtsource.noise_covariance"
FILE_VERSION = 1

#: Marker written into data covariance files (same layout as noise covariance files).
DATA_FILE_FORMAT = "rtsource.data_covariance"

# Relative tolerance for the symmetry check of a covariance matrix.
_SYMMETRY_RTOL = 1e-8


@dataclass(frozen=True, eq=False)  # arrays: compare fields explicitly
class NoiseCovariance:
    """A sensor noise covariance matrix with the channels it belongs to.

    Attributes
    ----------
    data : ndarray, shape (n_chan, n_chan)
        Covariance in V^2 (SI), symmetric, read-only.
    ch_names : tuple of str
        Channel names in the order of the rows of ``data``.
    n_samples : int
        Number of samples it was estimated from (0 for an ad hoc covariance).
    method : str
        ``"empirical"``, ``"shrunk"``, ``"diagonal"`` or ``"ad_hoc"``.
    shrinkage : float
        The Ledoit-Wolf shrinkage coefficient in [0, 1] that was used (0 unless
        ``method == "shrunk"``).
    """

    data: np.ndarray
    ch_names: tuple[str, ...]
    n_samples: int
    method: str
    shrinkage: float

    def __post_init__(self) -> None:
        data = np.array(self.data, dtype=np.float64)  # own copy
        names = tuple(str(c) for c in self.ch_names)
        n = len(names)
        if data.ndim != 2 or data.shape != (n, n):
            raise InverseError(
                f"covariance data has shape {data.shape} but there are {n} channel names; "
                f"pass a ({n}, {n}) matrix"
            )
        if n == 0:
            raise InverseError("covariance has no channels; pass at least one channel name")
        if len(set(names)) != n:
            dup = sorted({c for c in names if names.count(c) > 1})
            raise InverseError(
                f"covariance ch_names contain duplicates ({', '.join(dup)}); "
                "channel names must be unique"
            )
        if not np.all(np.isfinite(data)):
            raise InverseError(
                f"covariance data contain {int(np.sum(~np.isfinite(data)))} non-finite "
                "entries; re-estimate it from finite data"
            )
        scale = float(np.max(np.abs(data))) if data.size else 0.0
        if np.max(np.abs(data - data.T), initial=0.0) > _SYMMETRY_RTOL * max(scale, 1e-300):
            raise InverseError(
                "covariance data are not symmetric (max |C - C^T| = "
                f"{np.max(np.abs(data - data.T)):.3g}, max |C| = {scale:.3g}); "
                "pass (C + C.T) / 2 if this is rounding"
            )
        data = 0.5 * (data + data.T)
        if np.any(np.diag(data) < 0):
            raise InverseError(
                "covariance has negative variances on the diagonal; it is not a covariance"
            )
        if self.method not in METHODS:
            raise InverseError(
                f"covariance method {self.method!r} is not known; use one of {METHODS}"
            )
        n_samples = int(self.n_samples)
        if n_samples < 0:
            raise InverseError(f"covariance n_samples is {n_samples}; it must be >= 0")
        shrinkage = float(self.shrinkage)
        if not (0.0 <= shrinkage <= 1.0):
            raise InverseError(
                f"covariance shrinkage is {shrinkage}; it must lie in [0, 1]"
            )
        data.flags.writeable = False
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "ch_names", names)
        object.__setattr__(self, "n_samples", n_samples)
        object.__setattr__(self, "shrinkage", shrinkage)

    @property
    def n_chan(self) -> int:
        """Number of channels."""
        return len(self.ch_names)


@dataclass(frozen=True, eq=False)
class DataCovariance(NoiseCovariance):
    """A sensor covariance of the data themselves, activity included (for beamformers).

    Same fields and checks as :class:`NoiseCovariance`; a separate type so that the data
    and the noise covariance of an LCMV beamformer cannot be swapped by accident. Estimate
    it with :func:`estimate_data_covariance` from a calibration recording that contains
    the activity of interest.
    """


# --------------------------------------------------------------------------------------
# Estimation
# --------------------------------------------------------------------------------------


def ledoit_wolf_shrinkage(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrunk covariance of zero-mean samples.

    Ledoit & Wolf (2004, J Multivar Anal 88:365), Lemma 3.2 and Theorem 3.1, with their
    scaled Frobenius norm ``||A||^2 = tr(A A^T) / p``::

        S   = X^T X / n                      sample covariance (zero-mean rows)
        m   = tr(S) / p                      target scale: F = m I
        d2  = ||S - m I||^2
        b2  = min(d2, 1/n^2 sum_k ||x_k x_k^T - S||^2)
        S*  = (b2 / d2) m I + (1 - b2 / d2) S

    Parameters
    ----------
    x : ndarray, shape (n_samples, p)
        Zero-mean samples (the caller subtracts the mean), any unit.

    Returns
    -------
    cov : ndarray, shape (p, p)
        The shrunk covariance, in the unit of ``x`` squared.
    shrinkage : float
        ``b2 / d2`` in [0, 1].
    """
    n, p = x.shape
    # The estimator is scale equivariant; work at unit scale so that fourth powers of
    # volts (1e-20 and below) stay far from underflow.
    scale = float(np.sqrt(np.mean(x * x)))
    if scale == 0.0:
        return np.zeros((p, p)), 0.0
    xs = x / scale
    s = xs.T @ xs / n
    m = np.trace(s) / p
    d2 = (np.sum(s * s) - 2 * m * np.trace(s) + m * m * p) / p  # ||S - mI||^2
    # sum_k ||x_k x_k^T - S||_F^2 = sum_k |x_k|^4 - n ||S||_F^2, because
    # sum_k x_k^T S x_k = n tr(S S).
    row_sq = np.sum(xs * xs, axis=1)
    bbar2 = (np.sum(row_sq**2) - n * np.sum(s * s)) / (n * n * p)
    b2 = min(max(bbar2, 0.0), d2)
    shrinkage = 0.0 if d2 <= 0.0 else float(b2 / d2)
    cov = (1.0 - shrinkage) * s
    cov[np.diag_indices(p)] += shrinkage * m
    return cov * scale**2, shrinkage


def _range_basis(reference: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the column space (range) of a re-referencing matrix.

    Returns
    -------
    ndarray, shape (n_chan, r)
    """
    u, s, _ = np.linalg.svd(reference)
    tol = s[0] * max(reference.shape) * np.finfo(float).eps if s.size and s[0] > 0 else 0.0
    r = int(np.sum(s > tol))
    return u[:, :r]


def estimate_noise_covariance(
    data: np.ndarray,
    ch_names: Sequence[str],
    *,
    method: str = "shrunk",
    reference: np.ndarray | None = None,
) -> NoiseCovariance:
    """Estimate the sensor noise covariance from a baseline recording.

    Parameters
    ----------
    data : ndarray, shape (n_samples, n_chan)
        Baseline data in V (samples by channels, the LSL chunk layout). The mean of each
        channel is subtracted. Rows containing NaN or Inf are dropped with a warning.
    ch_names : sequence of str, length n_chan
        Channel names in the column order of ``data``.
    method : {"shrunk", "empirical", "diagonal"}
        ``"shrunk"``: Ledoit-Wolf shrinkage towards a scaled identity (default);
        ``"empirical"``: sample covariance divided by ``n - 1``;
        ``"diagonal"``: channel variances only.
    reference : ndarray, shape (n_chan, n_chan), optional
        Re-referencing matrix ``M`` (e.g. :func:`average_reference_matrix`). The data are
        re-referenced (``x -> M x``) before estimation, and shrinkage (or the diagonal
        estimate) is done inside the range of ``M``, so the result keeps the rank of ``M``
        (``n_chan - 1`` for an average reference) and has no variance along its null
        direction.

    Returns
    -------
    NoiseCovariance
        Covariance in V^2.

    Raises
    ------
    InverseError
        If the shapes disagree, the method is unknown, or fewer than ``n_chan + 1`` finite
        samples remain.
    """
    names = tuple(str(c) for c in ch_names)
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2:
        raise InverseError(
            f"data has {x.ndim} dimension(s) (shape {x.shape}); pass an array of shape "
            "(n_samples, n_chan)"
        )
    n_chan = len(names)
    if x.shape[1] != n_chan:
        hint = " (transpose it?)" if x.shape[0] == n_chan else ""
        raise InverseError(
            f"data has shape {x.shape} but {n_chan} channel names were given; pass data as "
            f"(n_samples, n_chan){hint}"
        )
    if method not in ("shrunk", "empirical", "diagonal"):
        raise InverseError(
            f"method {method!r} is not known; use 'shrunk', 'empirical' or 'diagonal' "
            "(or ad_hoc_noise_covariance for a covariance without data)"
        )

    finite = np.all(np.isfinite(x), axis=1)
    n_bad = int(np.sum(~finite))
    if n_bad:
        logger.warning(
            "dropped %d of %d samples containing NaN or Inf before estimating the noise "
            "covariance",
            n_bad,
            x.shape[0],
        )
        x = x[finite]
    n = x.shape[0]
    if n < n_chan + 1:
        raise InverseError(
            f"only {n} finite samples ({n_bad} dropped for NaN/Inf) for {n_chan} channels; "
            f"the covariance needs at least {n_chan + 1}: record longer (minutes of "
            "baseline are typical)"
        )

    x = x - x.mean(axis=0)
    if reference is not None:
        ref = check_reference_matrix(reference, n_chan)
        basis = _range_basis(ref)  # (n_chan, r)
        # Coordinates of the re-referenced samples inside range(M): estimation there
        # cannot put variance into the null direction.
        z = (x @ ref.T) @ basis
    else:
        basis = None
        z = x

    shrinkage = 0.0
    if method == "shrunk":
        cz, shrinkage = ledoit_wolf_shrinkage(z)
    elif method == "empirical":
        cz = z.T @ z / (n - 1)
    else:  # diagonal
        # Channel variances; with a reference, those of the re-referenced channels,
        # projected back into range(M) so that the null direction stays empty.
        y = z if basis is None else z @ basis.T
        variances = np.diag(np.sum(y * y, axis=0) / (n - 1))
        cz = variances if basis is None else basis.T @ variances @ basis

    cov = cz if basis is None else basis @ cz @ basis.T
    logger.info(
        "noise covariance: %s from %d samples x %d channels%s (shrinkage %.3g)",
        method,
        n,
        n_chan,
        "" if basis is None else f", re-referenced, rank {basis.shape[1]}",
        shrinkage,
    )
    return NoiseCovariance(
        data=0.5 * (cov + cov.T),
        ch_names=names,
        n_samples=n,
        method=method,
        shrinkage=shrinkage,
    )


def estimate_data_covariance(
    data: np.ndarray,
    ch_names: Sequence[str],
    *,
    method: str = "empirical",
    reference: np.ndarray | None = None,
) -> DataCovariance:
    """Estimate the data covariance of a calibration recording (for LCMV beamformers).

    The same estimators as :func:`estimate_noise_covariance`, applied to data that contain
    the activity of interest (Van Veen et al. 1997, IEEE TBME 44:867: the beamformer
    minimises the output power under this covariance).

    Parameters
    ----------
    data : ndarray, shape (n_samples, n_chan)
        Calibration data in V (T for MEG), samples by channels. Channel means are removed.
    ch_names : sequence of str, length n_chan
        Channel names in the column order of ``data``.
    method : {"empirical", "shrunk", "diagonal"}
        Estimator; the default is the sample covariance, since the beamformer adds its own
        diagonal loading (``reg``).
    reference : ndarray, shape (n_chan, n_chan), optional
        Re-referencing matrix applied first (see :func:`estimate_noise_covariance`).

    Returns
    -------
    DataCovariance
        Covariance in V^2.
    """
    cov = estimate_noise_covariance(data, ch_names, method=method, reference=reference)
    return DataCovariance(cov.data, cov.ch_names, cov.n_samples, cov.method, cov.shrinkage)


def ad_hoc_noise_covariance(
    ch_names: Sequence[str], *, std_v: float = 0.2e-6
) -> NoiseCovariance:
    """A diagonal covariance with the same noise level on every channel.

    For use when no baseline was recorded, like MNE-Python's ``make_ad_hoc_cov``
    (0.2 uV for EEG).

    Parameters
    ----------
    ch_names : sequence of str
        Channel names.
    std_v : float
        Noise standard deviation per channel in V (SI), e.g. 0.2e-6 for EEG. For MEG use
        the field unit (e.g. 5e-15 T for magnetometers).

    Returns
    -------
    NoiseCovariance
        ``std_v**2 * I`` with ``method="ad_hoc"`` and ``n_samples=0``.
    """
    std = float(std_v)
    if not (np.isfinite(std) and std > 0):
        raise InverseError(
            f"std_v is {std_v!r}; pass a positive noise standard deviation in V "
            "(e.g. 0.2e-6 for EEG)"
        )
    names = tuple(str(c) for c in ch_names)
    return NoiseCovariance(
        data=np.eye(len(names)) * std**2,
        ch_names=names,
        n_samples=0,
        method="ad_hoc",
        shrinkage=0.0,
    )


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


def save_noise_covariance(cov: NoiseCovariance, path: str | os.PathLike) -> None:
    """Save a covariance as an ``.npz`` file (no pickle).

    A :class:`DataCovariance` is written with the data covariance marker, so that it loads
    back only through :func:`load_data_covariance`.

    Parameters
    ----------
    cov : NoiseCovariance or DataCovariance
        The covariance to save.
    path : str or path-like
        Output file. NumPy appends ``.npz`` if the name has no such suffix.
    """
    if not isinstance(cov, NoiseCovariance):
        raise InverseError(
            f"cov is a {type(cov).__name__}; pass a NoiseCovariance"
        )
    np.savez(
        path,
        format=np.array(DATA_FILE_FORMAT if isinstance(cov, DataCovariance) else FILE_FORMAT),
        version=np.array(FILE_VERSION, dtype=np.int64),
        data=np.asarray(cov.data, dtype=np.float64),
        ch_names=np.array(cov.ch_names, dtype=str),  # fixed-width unicode, no objects
        n_samples=np.array(cov.n_samples, dtype=np.int64),
        method=np.array(cov.method),
        shrinkage=np.array(cov.shrinkage, dtype=np.float64),
    )


def save_data_covariance(cov: DataCovariance, path: str | os.PathLike) -> None:
    """Save a :class:`DataCovariance` as an ``.npz`` file (no pickle)."""
    if not isinstance(cov, DataCovariance):
        raise InverseError(
            f"cov is a {type(cov).__name__}; pass a DataCovariance "
            "(estimate_data_covariance)"
        )
    save_noise_covariance(cov, path)


_KEYS = ("format", "version", "data", "ch_names", "n_samples", "method", "shrinkage")


def load_noise_covariance(path: str | os.PathLike) -> NoiseCovariance:
    """Load a covariance saved by :func:`save_noise_covariance`.

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file.

    Returns
    -------
    NoiseCovariance

    Raises
    ------
    InverseError
        If the file is missing, not an npz archive, corrupt, of another format or version,
        or its content is not a valid covariance. Loading never unpickles.
    """
    return _load_covariance(path, FILE_FORMAT, NoiseCovariance, "noise covariance")


def load_data_covariance(path: str | os.PathLike) -> DataCovariance:
    """Load a data covariance saved by :func:`save_data_covariance` (see
    :func:`load_noise_covariance` for the checks)."""
    return _load_covariance(path, DATA_FILE_FORMAT, DataCovariance, "data covariance")


def _load_covariance(path, expected_format: str, cls, what: str):
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in _KEYS if k not in npz.files]
            if missing:
                raise InverseError(
                    f"{path!r} is not an rtsource {what} file: missing "
                    f"{', '.join(missing)} (has {', '.join(npz.files) or 'nothing'}); "
                    f"save it with save_{what.replace(' ', '_')}"
                )
            arrays = {k: npz[k] for k in _KEYS}
    except InverseError:
        raise
    except FileNotFoundError:
        raise InverseError(f"{what} file {path!r} does not exist") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise InverseError(
            f"cannot read {what} file {path!r}: {type(exc).__name__}: {exc}; "
            "the file is truncated, corrupt or not an .npz archive -- re-create it"
        ) from exc

    fmt = arrays["format"]
    if fmt.dtype.kind != "U" or fmt.shape != () or str(fmt) != expected_format:
        other = {FILE_FORMAT: "load_noise_covariance", DATA_FILE_FORMAT: "load_data_covariance"}
        hint = (
            f" (it holds a {str(fmt).split('.')[-1].replace('_', ' ')}: use "
            f"{other[str(fmt)]})"
            if fmt.dtype.kind == "U" and fmt.shape == () and str(fmt) in other
            else ""
        )
        raise InverseError(
            f"{path!r} has format marker {fmt.tolist()!r}, expected {expected_format!r}; "
            f"it is not a {what} file{hint}"
        )
    version = arrays["version"]
    if version.dtype.kind not in "iu" or version.shape != () or int(version) != FILE_VERSION:
        raise InverseError(
            f"{path!r} has version {version.tolist()!r}; this rtsource reads version "
            f"{FILE_VERSION} -- re-create the file or upgrade rtsource"
        )
    names = arrays["ch_names"]
    if names.dtype.kind != "U" or names.ndim != 1:
        raise InverseError(
            f"{path!r}: ch_names has dtype {names.dtype} and shape {names.shape}; "
            "expected a 1-d unicode array -- the file is corrupt"
        )
    data = arrays["data"]
    if data.dtype.kind != "f":
        raise InverseError(
            f"{path!r}: data has dtype {data.dtype}; expected float -- the file is corrupt"
        )
    for key, kinds in (("n_samples", "iu"), ("method", "U"), ("shrinkage", "f")):
        a = arrays[key]
        if a.shape != () or a.dtype.kind not in kinds:
            raise InverseError(
                f"{path!r}: {key} has dtype {a.dtype} and shape {a.shape}; expected a "
                "scalar -- the file is corrupt"
            )
    try:
        return cls(
            data=data,
            ch_names=tuple(str(c) for c in names),
            n_samples=int(arrays["n_samples"]),
            method=str(arrays["method"]),
            shrinkage=float(arrays["shrinkage"]),
        )
    except InverseError as exc:
        raise InverseError(f"{path!r} holds an invalid covariance: {exc}") from exc
