"""The ROI operator: regions of interest (ROIs) aggregated into one time course each and
folded with an inverse operator. Offline and online both use it (the stream applies it).

An ROI (:class:`~rtsource.anatomy.regions.Roi`) is a named set of sources of a
:class:`~rtsource.anatomy.source_space.SourceSpace`; the builders that make one from a
template coordinate and a radius, a vertex list, a hemisphere or a coordinate file are
offline, in :mod:`rtsource.inverse.roi`. An aggregation *mode* turns the ROI's per-source
values into one number per sample (``reference/forward_inverse.md`` section 7, following MNE-Python's
``extract_label_time_course``):

``mean``
    mean of the per-source values.
``mean_flip``
    mean of ``flip * value``, where ``flip`` is the sign of each source normal's projection
    on the first right singular vector of the ROI's normals, oriented so that the mean
    projection is positive (MNE-Python ``label_sign_flip``). Stops opposite walls of a
    sulcus from cancelling.
``pca_flip``
    the first principal component of the ROI's source time courses over a *calibration*
    block, sign-aligned with the flip and scaled by ``||s|| / sqrt(n_vertices)``
    (MNE-Python ``_pca_flip``). In MNE it is re-estimated for every block of data; here the
    spatial component is estimated once from calibration data and then frozen, so that it
    is a fixed linear combination a stream can apply sample by sample (see
    :func:`pca_flip_weights`).
``max``
    ``max |value|`` over the ROI's sources (non-linear, non-negative).

What "per-source value" means depends on the operator's orientation (``component``):

=================  ==========================  ===============================================
operator           component                   per-source value
=================  ==========================  ===============================================
fixed (n_orient 1) ``signed`` (``auto``)       ``K_k x / noise_norm_k``, signed (the source
                                               outlet's value). ``normal`` is accepted as a
                                               synonym: a fixed row *is* the source's value
                                               along its orientation.
fixed              ``pooled``                  ``|K_k x| / noise_norm_k`` (non-linear)
loose/free (3)     ``normal`` (``auto`` for    the normal component ``n_k . q_k`` divided by
                   mean, mean_flip, pca_flip)  the source's pooled ``noise_norm_k``: MNE-
                                               Python's ``apply_inverse(pick_ori="normal")``
                                               convention, signed.
loose/free         ``pooled`` (``auto`` for    ``||K_k x|| / noise_norm_k``, the source
                   max)                        outlet's value (MNE-Python's default, a non-
                                               vector estimate of pooled magnitudes).
=================  ==========================  ===============================================

Modes on signed values (``mean``, ``mean_flip``, ``pca_flip`` with ``signed``/``normal``) are
linear in the data, so they are folded with the operator into one small matrix
``R = A_roi @ K_signed`` of shape (n_roi, n_channels) (:class:`RoiOperator`); an ROI-only
output then costs ``n_roi x n_channels`` multiply-adds per sample. ``max`` and ``mean`` of
pooled magnitudes are non-linear: they run on the per-source output through a compressed
index (CSR) of each ROI's sources. MNE-Python applies ``mean_flip`` and ``pca_flip`` to
pooled magnitudes too when given a loose/free non-vector estimate; the magnitudes are all
positive, so the flip only makes them cancel. That combination is refused here with an
explanation rather than reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .anatomy.regions import Roi
from .anatomy.source_space import SourceSpace
from .arrays import frozen as _readonly
from .errors import ConfigError, InverseError

ROI_MODES = ("mean", "mean_flip", "pca_flip", "max")
COMPONENTS = ("auto", "signed", "normal", "pooled")
LINEAR_MODES = ("mean", "mean_flip", "pca_flip")

def check_unique_names(rois: Sequence[Roi]) -> None:
    """Raise ConfigError if two ROIs share a name (they would share a channel label)."""
    seen: set[str] = set()
    for r in rois:
        if r.name in seen:
            raise ConfigError(f"ROI name {r.name!r} is used twice; ROI names must be unique (they label the output channels)")
        seen.add(r.name)


# ---- sign flip and per-source signed rows ------------------------------------------------------

def sign_flip(orientations: np.ndarray) -> np.ndarray:
    """MNE-Python's ``label_sign_flip`` for one ROI.

    ``v1`` = first right singular vector of the (n_vertices, 3) orientations; ``d = n . v1``,
    negated if ``mean(d) < 0``; ``flip = sign(d)`` (0 where a normal is orthogonal to v1).

    Returns
    -------
    ndarray, shape (n_vertices,)
    """
    ori = np.asarray(orientations, dtype=np.float64)
    _, _, vh = np.linalg.svd(ori, full_matrices=False)
    d = ori @ vh[0]
    if np.mean(d) < 0:
        d = -d
    return np.sign(d)


def signed_rows(
    kernel: np.ndarray,
    noise_norm: np.ndarray,
    n_orient: int,
    normals: np.ndarray,
    index: np.ndarray | None = None,
    source_rotation: np.ndarray | None = None,
) -> np.ndarray:
    """Per-source signed operator rows with the noise normalisation folded in.

    Parameters
    ----------
    kernel : ndarray, shape (n_sources * n_orient, n_channels)
    noise_norm : ndarray, shape (n_sources,)
    n_orient : {1, 3}
    normals : ndarray, shape (n_sources, 3)
        Unit normals in the frame of ``source_rotation``.
    index : ndarray of int, optional
        Sources to return (default all).
    source_rotation : ndarray, shape (n_sources, 3, 3), optional
        For ``n_orient == 3``: per source, the rows are the local axes of the kernel's three
        rows (unit vectors). The normal component is ``(R n) . q_local``. Without it the
        third row is taken as the normal (rtsource's minimum-norm layout: two tangential
        directions then the normal).

    Returns
    -------
    ndarray, shape (len(index), n_channels)
        ``K_k / noise_norm_k`` (fixed) or the normal-component row ``/ noise_norm_k``.
    """
    idx = np.arange(len(noise_norm)) if index is None else np.asarray(index, dtype=np.int64)
    kernel = np.asarray(kernel, dtype=np.float64)
    nn = np.asarray(noise_norm, dtype=np.float64)[idx]
    if n_orient == 1:
        return kernel[idx] / nn[:, None]
    if n_orient != 3:
        raise InverseError(f"n_orient = {n_orient!r} must be 1 or 3")
    k3 = kernel.reshape(-1, 3, kernel.shape[1])[idx]
    if source_rotation is None:
        rows = k3[:, 2, :]
    else:
        c = np.einsum("sij,sj->si", np.asarray(source_rotation, dtype=np.float64)[idx], np.asarray(normals, dtype=np.float64)[idx])
        rows = np.einsum("si,sic->sc", c, k3)
    return rows / nn[:, None]


def resolve_component(mode: str, component: str, n_orient: int) -> str:
    """The concrete component (``signed``, ``normal`` or ``pooled``) for a mode and operator.

    Raises
    ------
    ConfigError
        An unknown mode or component, or a combination that is not meaningful (see the
        module docstring).
    """
    if mode not in ROI_MODES:
        raise ConfigError(f"ROI mode {mode!r} is not one of {', '.join(ROI_MODES)}")
    if component not in COMPONENTS:
        raise ConfigError(f"ROI component {component!r} is not one of {', '.join(COMPONENTS)}")
    if n_orient == 1:
        if component in ("auto", "signed", "normal"):
            return "pooled" if mode == "max" else "signed"
        if mode in ("mean_flip", "pca_flip"):
            raise ConfigError(f"ROI mode {mode!r} needs signed values; component 'pooled' (absolute values) would cancel under the flip. Use component = 'auto'")
        return "pooled"
    if component == "auto":
        return "pooled" if mode == "max" else "normal"
    if component == "signed":
        raise ConfigError("ROI component 'signed' is for fixed-orientation operators; this operator is loose/free (3 orientations): use 'normal' or 'pooled'")
    if mode == "max" and component == "normal":
        raise ConfigError(
            "ROI mode 'max' runs on the per-source output, which for a loose/free operator holds pooled "
            "magnitudes; use component = 'pooled' (or 'auto')"
        )
    if mode in ("mean_flip", "pca_flip") and component == "pooled":
        raise ConfigError(
            f"ROI mode {mode!r} on pooled magnitudes: MNE-Python does this for loose/free estimates, but the "
            "magnitudes are all positive so the sign flip only makes them cancel. Use component = 'normal' "
            "(the signed normal component, MNE's pick_ori='normal'), or mode 'mean' / 'max' on 'pooled'"
        )
    return component


def pca_flip_weights(values: np.ndarray, flip: np.ndarray, *, demean: bool = True) -> np.ndarray:
    """Frozen spatial weights that reproduce MNE-Python's ``pca_flip`` on a calibration block.

    MNE computes, for the ROI's (n_vertices, n_times) data ``D = U S V^T``:
    ``sign(U_0 . flip) * ||s|| / sqrt(n_vertices) * V_0``. Because ``V_0 = U_0^T D / s_0``
    this equals ``w^T D`` with ``w = sign(U_0 . flip) * ||s|| / (s_0 sqrt(n_vertices)) * U_0``,
    a fixed spatial filter. Applied to the calibration block it gives MNE's output exactly;
    applied to later data it keeps the calibration's spatial pattern and scaling.

    Parameters
    ----------
    values : ndarray, shape (n_samples, n_vertices)
        The ROI's signed per-source values over the calibration block.
    flip : ndarray, shape (n_vertices,)
    demean : bool
        Remove each source's mean over the block first (raw EEG carries DC offsets that
        would otherwise dominate the first component). False reproduces MNE exactly.

    Returns
    -------
    ndarray, shape (n_vertices,)
    """
    d = np.asarray(values, dtype=np.float64).T
    if demean:
        d = d - d.mean(axis=1, keepdims=True)
    # U_0 and s_0 from the small (n_vertices x n_vertices) Gram matrix D D^T = U S^2 U^T, and
    # ||s|| = ||D||_F: the same numbers as the SVD of D at a fraction of the cost for long blocks.
    gram = d @ d.T
    evals, evecs = np.linalg.eigh(gram)
    s0_sq = evals[-1]
    if not (np.isfinite(s0_sq) and s0_sq > 0):
        raise InverseError("pca_flip: the calibration block has no variance in this ROI (all zeros or constant); record calibration data with signal")
    u0 = evecs[:, -1]
    sign = np.sign(u0 @ flip)
    if sign == 0:
        sign = 1.0
    return sign * np.sqrt(np.trace(gram) / s0_sq / d.shape[0]) * u0


# ---- the aggregation and the folded operator --------------------------------------------------

@dataclass(frozen=True, eq=False)
class RoiWeights:
    """How each ROI combines its sources: a compressed sparse row (CSR) structure.

    ROI ``r`` uses sources ``indices[indptr[r]:indptr[r + 1]]`` with ``weights`` at the same
    positions. Linear modes: ``roi_r = sum_i weights_i * value_i``. ``mean`` of pooled
    magnitudes: the same sum over ``|value_i|``. ``max``: ``max_i |value_i|`` (weights unused).

    Attributes
    ----------
    names : tuple of str
    mode : str
        One of :data:`ROI_MODES`.
    component : str
        ``signed``, ``normal`` or ``pooled`` (see module docstring).
    indptr : ndarray of int64, shape (n_roi + 1,)
    indices : ndarray of int64, shape (nnz,)
    weights : ndarray of float64, shape (nnz,)
    centres_m : ndarray, shape (n_roi, 3)
        Mean source position of each ROI, metres, in the source space's frame.
    n_sources : int
        Size of the source space the indices refer to.
    descriptions : tuple of str
    """

    names: tuple[str, ...]
    mode: str
    component: str
    indptr: np.ndarray
    indices: np.ndarray
    weights: np.ndarray
    centres_m: np.ndarray
    n_sources: int
    descriptions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "indptr", _readonly(self.indptr, np.int64))
        object.__setattr__(self, "indices", _readonly(self.indices, np.int64))
        object.__setattr__(self, "weights", _readonly(self.weights, np.float64))
        object.__setattr__(self, "centres_m", _readonly(self.centres_m, np.float64))
        object.__setattr__(self, "names", tuple(self.names))
        if len(self.indptr) != len(self.names) + 1 or self.indptr[-1] != len(self.indices) or len(self.weights) != len(self.indices):
            raise InverseError("inconsistent ROI weights (indptr / indices / weights lengths)")

    @property
    def n_roi(self) -> int:
        return len(self.names)

    @property
    def linear(self) -> bool:
        """True if the mode is linear in the data (foldable into the operator)."""
        return self.mode in LINEAR_MODES and self.component in ("signed", "normal")

    def counts(self) -> np.ndarray:
        """Number of sources per ROI, shape (n_roi,)."""
        return np.diff(self.indptr)

    def dense(self) -> np.ndarray:
        """``A_roi`` as a dense (n_roi, n_sources) matrix."""
        a = np.zeros((self.n_roi, self.n_sources))
        for r in range(self.n_roi):
            sl = slice(self.indptr[r], self.indptr[r + 1])
            a[r, self.indices[sl]] = self.weights[sl]
        return a

    def reduce(self, values: np.ndarray) -> np.ndarray:
        """Apply the aggregation to per-source values (offline; the NumPy reference).

        Parameters
        ----------
        values : ndarray, shape (n_samples, n_sources)
            Signed / normal values for linear modes, the per-source output otherwise.

        Returns
        -------
        ndarray, shape (n_samples, n_roi)
        """
        v = np.asarray(values, dtype=np.float64)
        out = np.empty((v.shape[0], self.n_roi))
        for r in range(self.n_roi):
            sl = slice(self.indptr[r], self.indptr[r + 1])
            block = v[:, self.indices[sl]]
            if self.mode == "max":
                out[:, r] = np.abs(block).max(axis=1)
            elif self.linear:
                out[:, r] = block @ self.weights[sl]
            else:
                out[:, r] = np.abs(block) @ self.weights[sl]
        return out


def make_roi_weights(
    rois: Sequence[Roi],
    sources: SourceSpace,
    mode: str,
    *,
    n_orient: int,
    component: str = "auto",
    orientations: np.ndarray | None = None,
    calibration_values: Sequence[np.ndarray] | None = None,
    demean: bool = True,
) -> RoiWeights:
    """The aggregation weights of ``rois`` for one mode.

    Parameters
    ----------
    rois : sequence of Roi
    sources : SourceSpace
    mode : str
        One of :data:`ROI_MODES`.
    n_orient : {1, 3}
        Orientations per source of the operator the weights will be used with.
    component : str
        See the module docstring; ``auto`` picks ``signed``/``normal`` for linear modes and
        ``pooled`` for ``max``.
    orientations : ndarray, shape (n_sources, 3), optional
        The orientation each signed value is along, for the sign flip (default: the source
        normals; pass the chosen orientations of a max-power beamformer, for instance).
    calibration_values : sequence of ndarray, optional
        For ``pca_flip``: per ROI, its signed per-source values over a calibration block,
        shape (n_samples, roi.n_sources) (see :meth:`RoiOperator.from_operator`, which
        computes them from channel data).
    demean : bool
        ``pca_flip``: remove each source's mean over the calibration block first.
    """
    rois = tuple(rois)
    if not rois:
        raise ConfigError("no ROI given; define at least one ([[roi]] entries or [roi] file)")
    check_unique_names(rois)
    comp = resolve_component(mode, component, n_orient)
    for r in rois:
        r.check_fits(sources)
    ori = sources.normals if orientations is None else np.asarray(orientations, dtype=np.float64)
    if ori.shape != (sources.n_sources, 3):
        raise InverseError(f"orientations have shape {ori.shape}, expected ({sources.n_sources}, 3)")
    if mode == "pca_flip":
        if calibration_values is None:
            raise ConfigError("ROI mode 'pca_flip' needs calibration data to estimate each ROI's spatial component; record a calibration or use 'mean_flip'")
        if len(calibration_values) != len(rois):
            raise InverseError(f"{len(calibration_values)} calibration blocks for {len(rois)} ROIs")
    indptr = [0]
    indices, weights = [], []
    for i, r in enumerate(rois):
        v = r.vertices
        n = len(v)
        if mode in ("mean", "max"):
            w = np.full(n, 1.0 / n)
        elif mode == "mean_flip":
            w = sign_flip(ori[v]) / n
        else:
            cal = np.asarray(calibration_values[i], dtype=np.float64)
            if cal.ndim != 2 or cal.shape[1] != n or cal.shape[0] < 2:
                raise InverseError(f"ROI {r.name!r}: calibration values have shape {cal.shape}, expected (n_samples >= 2, {n})")
            w = pca_flip_weights(cal, sign_flip(ori[v]), demean=demean)
        indices.append(v)
        weights.append(w)
        indptr.append(indptr[-1] + n)
    return RoiWeights(
        names=tuple(r.name for r in rois),
        mode=mode,
        component=comp,
        indptr=np.asarray(indptr),
        indices=np.concatenate(indices),
        weights=np.concatenate(weights),
        centres_m=np.array([r.centre_m(sources) for r in rois]),
        n_sources=sources.n_sources,
        descriptions=tuple(r.description for r in rois),
    )


@dataclass(frozen=True, eq=False)
class RoiOperator:
    """ROI aggregation prepared for one inverse operator.

    Attributes
    ----------
    weights : RoiWeights
    matrix : ndarray, shape (n_roi, n_channels), or None
        For linear modes, ``A_roi @ K_signed`` with the noise normalisation folded in,
        applied to data in V in ``ch_names`` order: ``roi = matrix @ x``. None for
        non-linear modes (they need the per-source output).
    ch_names : tuple of str
        Channel order of ``matrix``'s columns.
    unit : str
        Unit of the ROI values ("A*m", "" for dimensionless noise-normalised estimates).
    n_orient : int
    source_frame : str
        Frame of ``weights.centres_m``.
    """

    weights: RoiWeights
    matrix: np.ndarray | None
    ch_names: tuple[str, ...]
    unit: str
    n_orient: int
    source_frame: str = "template"

    def __post_init__(self) -> None:
        if self.matrix is not None:
            m = _readonly(self.matrix, np.float64)
            if m.shape != (self.weights.n_roi, len(self.ch_names)):
                raise InverseError(f"ROI matrix shape {m.shape} != ({self.weights.n_roi} ROIs, {len(self.ch_names)} channels)")
            object.__setattr__(self, "matrix", m)
        object.__setattr__(self, "ch_names", tuple(self.ch_names))

    @property
    def names(self) -> tuple[str, ...]:
        return self.weights.names

    @property
    def n_roi(self) -> int:
        return self.weights.n_roi

    @property
    def linear(self) -> bool:
        return self.weights.linear

    @property
    def mode(self) -> str:
        return self.weights.mode

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Offline: ROI time courses from channel data (linear modes only).

        Parameters
        ----------
        data : ndarray, shape (n_samples, n_channels)
            In V, columns in ``ch_names`` order.

        Returns
        -------
        ndarray, shape (n_samples, n_roi)
        """
        if self.matrix is None:
            raise InverseError(f"ROI mode {self.mode!r} with component {self.weights.component!r} is non-linear; use weights.reduce on the per-source output")
        return np.asarray(data, dtype=np.float64) @ self.matrix.T

    # ---- construction ----
    @classmethod
    def from_operator(
        cls,
        rois: Sequence[Roi],
        *,
        kernel: np.ndarray,
        noise_norm: np.ndarray,
        n_orient: int,
        sources: SourceSpace,
        ch_names: Sequence[str],
        mode: str = "mean_flip",
        component: str = "auto",
        unit: str = "",
        source_rotation: np.ndarray | None = None,
        orientations: np.ndarray | None = None,
        calibration: np.ndarray | None = None,
        demean: bool = True,
    ) -> "RoiOperator":
        """Aggregation weights and (for linear modes) the folded matrix for an operator.

        Parameters
        ----------
        kernel : ndarray, shape (n_sources * n_orient, n_channels)
            Applied to data in V (an :class:`~rtsource.bundle.OperatorBundle` kernel or an
            LCMV weight matrix).
        noise_norm : ndarray, shape (n_sources,)
        calibration : ndarray, shape (n_samples, n_channels), optional
            Channel data in V (operator channel order) for ``pca_flip``; preprocess it as
            the stream is preprocessed (the same filters).
        """
        kernel = np.asarray(kernel, dtype=np.float64)
        ch_names = tuple(ch_names)
        if kernel.shape != (sources.n_sources * n_orient, len(ch_names)):
            raise InverseError(f"kernel shape {kernel.shape} != ({sources.n_sources} sources x {n_orient}, {len(ch_names)} channels)")
        cal_values = None
        if mode == "pca_flip":
            if calibration is None:
                raise ConfigError("ROI mode 'pca_flip' needs calibration data (n_samples, n_channels) in V; record a calibration or use 'mean_flip'")
            cal = np.asarray(calibration, dtype=np.float64)
            if cal.ndim != 2 or cal.shape[1] != len(ch_names):
                raise InverseError(f"calibration data have shape {cal.shape}, expected (n_samples, {len(ch_names)} channels)")
            resolve_component(mode, component, n_orient)
            cal_values = [cal @ signed_rows(kernel, noise_norm, n_orient, sources.normals, r.vertices, source_rotation).T for r in rois]
        weights = make_roi_weights(rois, sources, mode, n_orient=n_orient, component=component, orientations=orientations,
                                   calibration_values=cal_values, demean=demean)  # fmt: skip
        matrix = fold(weights, kernel, noise_norm, n_orient, sources.normals, source_rotation) if weights.linear else None
        return cls(weights, matrix, ch_names, unit, n_orient, sources.frame.value)

    @classmethod
    def from_bundle(cls, bundle, rois: Sequence[Roi], mode: str = "mean_flip", component: str = "auto", *,
                    orientations: np.ndarray | None = None, calibration: np.ndarray | None = None, demean: bool = True) -> "RoiOperator":  # fmt: skip
        """:meth:`from_operator` with everything taken from an OperatorBundle."""
        return cls.from_operator(
            rois, kernel=bundle.kernel, noise_norm=bundle.noise_norm, n_orient=bundle.n_orient, sources=bundle.sources,
            ch_names=bundle.ch_names, mode=mode, component=component, unit=bundle.output_unit,
            source_rotation=bundle.source_rotation, orientations=orientations, calibration=calibration, demean=demean,
        )  # fmt: skip

    def refold(self, *, kernel: np.ndarray, noise_norm: np.ndarray, ch_names: Sequence[str], normals: np.ndarray,
               source_rotation: np.ndarray | None = None, unit: str | None = None) -> "RoiOperator":  # fmt: skip
        """The same ROIs and weights folded with a new operator (after a hot swap).

        The weights (and a ``pca_flip`` spatial component) stay frozen; only
        ``A_roi @ K_signed`` is recomputed. ``kernel`` may have other channels (a bad
        channel removed) but must cover the same sources with the same ``n_orient``.
        """
        kernel = np.asarray(kernel, dtype=np.float64)
        ch_names = tuple(ch_names)
        if kernel.shape != (self.weights.n_sources * self.n_orient, len(ch_names)):
            raise InverseError(
                f"new kernel shape {kernel.shape} != ({self.weights.n_sources} sources x {self.n_orient}, {len(ch_names)} channels); "
                "an ROI operator can only be refolded with an operator over the same sources and orientations"
            )
        matrix = fold(self.weights, kernel, noise_norm, self.n_orient, normals, source_rotation) if self.linear else None
        return RoiOperator(self.weights, matrix, ch_names, self.unit if unit is None else unit, self.n_orient, self.source_frame)


def fold(weights: RoiWeights, kernel: np.ndarray, noise_norm: np.ndarray, n_orient: int, normals: np.ndarray,
         source_rotation: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """``A_roi @ K_signed``: shape (n_roi, n_channels), noise normalisation included.

    Only the ROIs' own rows of the kernel are touched (cost: nnz x n_channels).
    """
    if not weights.linear:
        raise InverseError(f"ROI mode {weights.mode!r} with component {weights.component!r} is non-linear and cannot be folded")
    rows = signed_rows(kernel, noise_norm, n_orient, normals, weights.indices, source_rotation)
    out = np.zeros((weights.n_roi, rows.shape[1]))
    for r in range(weights.n_roi):
        sl = slice(weights.indptr[r], weights.indptr[r + 1])
        out[r] = weights.weights[sl] @ rows[sl]
    return out
