"""The operator type every inverse method returns, and its plain NumPy application.

A :class:`LinearInverse` is a kernel ``K`` (sources x channels, re-referencing and
whitening folded in) plus what is needed to turn ``K x`` into the method's output: a
noise normalisation per source and the number of rows per source. The streaming kernels
apply the same arithmetic to chunks (:mod:`rtsource.stream`); :func:`apply_inverse` is the
plain reference they are tested against.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..arrays import frozen as _readonly
from ..errors import InverseError
from ._checks import check_ch_types, short_list
from .params import METHODS


@dataclass(frozen=True, eq=False)  # arrays: compare fields explicitly
class LinearInverse:
    """A linear inverse operator of any method, ready to be applied to raw sensor data.

    Every builder returns this type: :func:`~.minimum_norm.make_inverse_operator` (MNE,
    dSPM, sLORETA, eLORETA) and :func:`~.beamformer.make_lcmv` (LCMV);
    :func:`~.make.make_operator` builds any of them from typed parameters.

    Attributes
    ----------
    kernel : ndarray, shape (n_sources * n_orient, n_chan)
        Applied to raw (un-referenced) data in V in the order of ``ch_names``; it already
        contains the re-referencing matrix and the whitener. Read-only.
    noise_norm : ndarray, shape (n_sources,)
        Divisors of the pooled (``n_orient == 3``) or signed (``n_orient == 1``) output.
        For dSPM and sLORETA in units of the kernel output (A*m); all ones for MNE,
        eLORETA (which, as in MNE-Python, is not noise-normalised: its weights already
        remove the depth bias) and LCMV (whose weight normalisation is in the kernel).
    n_orient : int
        3 (loose or free orientation: three rows per source, output is
        ``||K_k x|| / noise_norm_k``) or 1 (fixed, normal orientation: ``K_k x / noise_norm_k``).
    method : str
        ``"MNE"``, ``"dSPM"``, ``"sLORETA"``, ``"eLORETA"`` or ``"LCMV"``.
    lambda2 : float
        Regularisation parameter (``1 / snr**2`` unless given); 0 for LCMV (its
        regularisation is ``details["reg"]``).
    loose : float
        Tangential source variance relative to the normal one (0 for fixed orientation;
        1 for LCMV with free orientation).
    depth : float or None
        Depth weighting exponent, None if depth weighting is off (always None for
        eLORETA, whose weights compensate depth).
    rank : int
        Rank of the whitened data space.
    ch_names : tuple of str
        Channel order of the kernel's columns.
    source_rotation : ndarray, shape (n_sources, 3, 3)
        Per source, the rows are the local frame axes (tangential 1, tangential 2, normal)
        as unit vectors in the gain's frame: the kernel rows of a source for
        ``n_orient == 3`` are in that frame, so ``rot.T @ q_local`` gives x, y, z.
    singular_values : ndarray, shape (n_components,)
        Singular values of the whitened, weighted, trace-scaled gain ``Gt`` (of
        ``G R^(1/2)`` for eLORETA); for LCMV the eigenvalues of the whitened data
        covariance, descending.
    output_unit : str
        ``"A*m"`` for MNE, eLORETA and unit-gain LCMV (``"a.u."`` with LCMV depth
        weighting); ``""`` (dimensionless) for dSPM, sLORETA and the normalised LCMV
        variants.
    ch_types : tuple of str
        Channel types (``"eeg"``, ``"mag"``, ``"grad"``) if they were given, else ``()``.
    details : Mapping
        Method-specific, JSON-friendly facts: for eLORETA the convergence report
        (``iterations``, ``final_change``, ``converged``, ``eps``, ``max_iter``,
        ``force_equal``); for LCMV ``reg``, ``loading``, ``weight_norm``,
        ``orientation``, ``data_rank``, ``noise_level`` (NAI); always ``block_ranks``
        (kept whitener rank per sensor-type block).
    source_weights : ndarray or None
        eLORETA only: the fitted weights (:attr:`.eloreta.EloretaFit.weights`), kept so an
        operator for nearly the same channels can warm-start from them.
    orientations : ndarray or None, shape (n_sources, 3)
        LCMV with max-power orientation only: the chosen unit orientation per source in
        the gain's frame (sign aligned with the normal).
    """

    kernel: np.ndarray
    noise_norm: np.ndarray
    n_orient: int
    method: str
    lambda2: float
    loose: float
    depth: float | None
    rank: int
    ch_names: tuple[str, ...]
    source_rotation: np.ndarray
    singular_values: np.ndarray
    output_unit: str
    ch_types: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    source_weights: np.ndarray | None = None
    orientations: np.ndarray | None = None

    def __post_init__(self) -> None:
        kernel = _readonly(self.kernel)
        noise_norm = _readonly(self.noise_norm)
        rot = _readonly(self.source_rotation)
        names = tuple(str(c) for c in self.ch_names)
        if self.n_orient not in (1, 3):
            raise InverseError(f"n_orient is {self.n_orient!r}; it must be 1 or 3")
        if self.method not in METHODS:
            raise InverseError(f"method {self.method!r} is not one of {METHODS}")
        n_src = noise_norm.shape[0] if noise_norm.ndim == 1 else -1
        if kernel.ndim != 2 or kernel.shape != (n_src * self.n_orient, len(names)):
            raise InverseError(
                f"kernel has shape {kernel.shape}, expected ({n_src} sources x "
                f"{self.n_orient} orientations, {len(names)} channels)"
            )
        if rot.shape != (n_src, 3, 3):
            raise InverseError(
                f"source_rotation has shape {rot.shape}, expected ({n_src}, 3, 3)"
            )
        if not np.all(np.isfinite(kernel)):
            raise InverseError("kernel contains NaN or Inf; rebuild the operator")
        if not np.all(np.isfinite(noise_norm) & (noise_norm > 0)):
            raise InverseError(
                "noise_norm must be finite and positive (it divides the output); "
                "rebuild the operator"
            )
        object.__setattr__(self, "kernel", kernel)
        object.__setattr__(self, "noise_norm", noise_norm)
        object.__setattr__(self, "source_rotation", rot)
        object.__setattr__(self, "singular_values", _readonly(self.singular_values))
        object.__setattr__(self, "ch_names", names)
        ch_types = tuple(str(t) for t in self.ch_types)
        if ch_types:
            check_ch_types(ch_types, len(names))
        object.__setattr__(self, "ch_types", ch_types)
        object.__setattr__(self, "details", types.MappingProxyType(dict(self.details)))
        if self.source_weights is not None:
            object.__setattr__(self, "source_weights", _readonly(self.source_weights))
        if self.orientations is not None:
            ori = _readonly(self.orientations)
            if ori.shape != (n_src, 3):
                raise InverseError(
                    f"orientations has shape {ori.shape}, expected ({n_src}, 3)"
                )
            object.__setattr__(self, "orientations", ori)

    @property
    def n_sources(self) -> int:
        """Number of source locations."""
        return self.noise_norm.shape[0]

    @property
    def n_chan(self) -> int:
        """Number of channels the kernel expects."""
        return len(self.ch_names)


def apply_inverse(op: LinearInverse, data: np.ndarray) -> np.ndarray:
    """Apply an inverse operator to raw data (plain NumPy reference implementation).

    Parameters
    ----------
    op : LinearInverse
        The operator.
    data : ndarray, shape (n_samples, n_chan)
        Raw data in V (T for MEG) in the order of ``op.ch_names``.

    Returns
    -------
    ndarray, shape (n_samples, n_sources)
        For ``n_orient == 3`` the pooled amplitude ``||K_k x|| / noise_norm_k`` (>= 0);
        for ``n_orient == 1`` the signed ``K_k x / noise_norm_k``. In ``op.output_unit``.
    """
    if not isinstance(op, LinearInverse):
        raise InverseError(f"op is a {type(op).__name__}; pass a LinearInverse")
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != op.n_chan:
        raise InverseError(
            f"data has shape {x.shape}; expected (n_samples, {op.n_chan}) in the "
            f"operator's channel order ({short_list(op.ch_names)})"
        )
    y = x @ op.kernel.T  # (n_samples, n_sources * n_orient)
    if op.n_orient == 3:
        y = np.sqrt(np.sum(y.reshape(x.shape[0], op.n_sources, 3) ** 2, axis=2))
    return y / op.noise_norm

