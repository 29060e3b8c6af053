"""The prepared forward: a checked lead field in the sources' local frames.

Whatever the method, building an operator begins with the same work on the lead field:
checking it against the normals, the local frame of every source (two tangential axes and
the normal), the gain rotated into those frames, and the per-source Gram matrices the
depth prior needs. :func:`prepare_forward` does it once and every builder accepts the
result (:class:`LocalForward`) in place of a raw gain; a bad-channel rebuild prepares a
bundle's forward once and then only drops rows (:meth:`LocalForward.drop`).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..arrays import frozen as _readonly
from ..arrays import sealed
from ..errors import InverseError
from ._checks import check_ch_types, short_list
from ._linalg import apply_blocks, gram_blocks

# Normals may come from float32 files; anything further from unit length is a bug upstream.
_NORMAL_TOL = 1e-4


def local_frames(normals: np.ndarray) -> np.ndarray:
    """Right-handed orthonormal frames whose last axis is the source normal.

    Parameters
    ----------
    normals : ndarray, shape (n_sources, 3)
        Unit normals.

    Returns
    -------
    ndarray, shape (n_sources, 3, 3)
        Rows: tangential 1, tangential 2, normal. The tangential pair is taken as
        MNE-Python's surface-oriented forward takes it (``_normal_orth``: the
        eigenvectors of ``I - n n^T`` for the eigenvalue 1), with the sign of the second
        axis chosen so the frame is right-handed. The minimum-norm family and the
        rotation-invariant beamformers do not depend on this choice (their priors are
        isotropic in the tangent plane); the per-row "unit-noise-gain" LCMV with free
        orientation does, and agrees with MNE-Python because of it.
    """
    n = np.ascontiguousarray(normals / np.linalg.norm(normals, axis=1, keepdims=True))
    # 8k batched 3x3 eigendecompositions take ~35 ms; a rebuild without a channel has the
    # same normals, so remember the last few results (keyed by the normals' bytes).
    key = hashlib.sha1(n.tobytes()).hexdigest() + str(n.shape)
    with _FRAMES_LOCK:  # rebuilds run in a background thread
        cached = _FRAMES_CACHE.get(key)
    if cached is not None:
        return cached.copy()
    _, u = np.linalg.eigh(np.eye(3) - n[:, :, None] * n[:, None, :])
    t1, t2 = u[:, :, 2], u[:, :, 1]  # eigenvalue 1 (descending, as MNE-Python)
    frames = np.stack([t1, t2, n], axis=1)
    flip = np.linalg.det(frames) < 0
    frames[flip, 1] *= -1.0
    with _FRAMES_LOCK:
        if len(_FRAMES_CACHE) >= 4:
            _FRAMES_CACHE.pop(next(iter(_FRAMES_CACHE)))
        _FRAMES_CACHE[key] = frames.copy()
    return frames


_FRAMES_CACHE: dict[str, np.ndarray] = {}
_FRAMES_LOCK = threading.Lock()


def check_forward(gain, normals, n_chan: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate the lead field and the normals; returns float64 copies and n_sources."""
    g = np.asarray(gain, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] != n_chan or g.shape[1] % 3 or g.shape[1] == 0:
        raise InverseError(
            f"gain has shape {g.shape}; expected (n_chan={n_chan}, 3 * n_sources) with "
            "dipole-major x, y, z columns (transpose it, or check the channel count)"
        )
    n_src = g.shape[1] // 3
    if not np.all(np.isfinite(g)):
        bad = np.flatnonzero(~np.all(np.isfinite(g.reshape(n_chan, n_src, 3)), axis=(0, 2)))
        raise InverseError(
            f"gain contains NaN or Inf for {bad.size} source(s) (indices "
            f"{short_list(bad)}); fix the forward model or drop those sources"
        )
    nrm = np.asarray(normals, dtype=np.float64)
    if nrm.shape != (n_src, 3):
        raise InverseError(
            f"normals has shape {nrm.shape}; expected ({n_src}, 3) for a gain with "
            f"{n_src} sources"
        )
    lengths = np.linalg.norm(nrm, axis=1)
    bad = np.flatnonzero(~(np.abs(lengths - 1.0) <= _NORMAL_TOL))
    if bad.size:
        raise InverseError(
            f"normals must be unit vectors, but {bad.size} are not (source {bad[0]} has "
            f"length {lengths[bad[0]]:.6g}); normalise them "
            "(normals / np.linalg.norm(normals, axis=1, keepdims=True))"
        )
    return g, nrm, n_src


def _depth_rows(ch_types: tuple[str, ...] | None, n_chan: int) -> np.ndarray:
    """Channels the depth prior is computed from: gradiometers if any, else magnetometers,
    else EEG (MNE-Python's ``limit_depth_chs=True``, ``_restrict_gain_matrix``)."""
    if ch_types is None:
        return np.arange(n_chan)
    t = np.array(ch_types)
    for kind in ("grad", "mag", "eeg"):
        idx = np.flatnonzero(t == kind)
        if idx.size:
            return idx
    return np.arange(n_chan)


def _rotate_to_local(g: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Gain columns in the local frames: (n_chan, 3 n_src) -> (n_chan, n_src, 3)."""
    n_chan = g.shape[0]
    return apply_blocks(rot, g.reshape(n_chan, -1, 3))


@dataclass(frozen=True, eq=False)
class LocalForward:
    """A checked lead field in the sources' local frames: the start of every operator.

    Whatever the method, building an operator begins with the same work on the lead
    field: checking it, the local frames of the normals, the gain rotated into them and
    the per-source Gram matrices of the depth prior. :func:`prepare_forward` does it once;
    :func:`~.minimum_norm.make_inverse_operator` and :func:`~.beamformer.make_lcmv` accept
    the result in place of the gain. A bad-channel rebuild (:mod:`.rebuild`) prepares a bundle's forward
    once and then only drops rows (:meth:`drop`): the rotation acts on each channel's row
    alone, and a Gram matrix loses the outer products of the dropped rows.

    Attributes
    ----------
    gain : ndarray, shape (n_chan, 3 * n_sources)
        Raw lead field, dipole-major x, y, z (float64, read-only).
    local : ndarray, shape (n_chan, n_sources, 3)
        The gain in the local frames (tangential 1, tangential 2, normal), read-only.
    rotation : ndarray, shape (n_sources, 3, 3)
        The local frames (:func:`local_frames`), read-only.
    depth_rows : ndarray of int
        Channels the depth prior uses (:func:`_depth_rows`).
    depth_gram : ndarray, shape (n_sources, 3, 3)
        ``sum over depth_rows of local_k^T local_k`` (its largest eigenvalue is that of the
        raw ``G_k^T G_k``), read-only.
    ch_types : tuple of str or None
        The channel types the depth rows were chosen by.
    """

    gain: np.ndarray
    local: np.ndarray
    rotation: np.ndarray
    depth_rows: np.ndarray
    depth_gram: np.ndarray
    ch_types: tuple[str, ...] | None = None

    @property
    def n_chan(self) -> int:
        return self.gain.shape[0]

    @property
    def n_sources(self) -> int:
        return self.rotation.shape[0]

    def drop(self, channels: Sequence[int]) -> "LocalForward":
        """The same forward without the rows ``channels`` (indices), exactly as a fresh
        :func:`prepare_forward` of the remaining rows would give it (up to rounding)."""
        drop = np.unique(np.asarray(channels, dtype=int))
        keep = np.setdiff1d(np.arange(self.n_chan), drop)
        types_ = None if self.ch_types is None else tuple(self.ch_types[i] for i in keep)
        rows = _depth_rows(types_, len(keep))
        old_rows = keep[rows]  # the new depth rows, as indices of the old channels
        gone = np.setdiff1d(self.depth_rows, old_rows)
        if np.setdiff1d(old_rows, self.depth_rows).size or gone.size * 2 > len(self.depth_rows):
            # another sensor type now leads the depth prior (or most rows went): recompute
            sub = self.local[old_rows]
            gram = gram_blocks(sub, sub)
        else:
            sub = self.local[gone]
            gram = self.depth_gram - gram_blocks(sub, sub)
        return LocalForward(
            gain=sealed(self.gain[keep]), local=sealed(self.local[keep]),
            rotation=self.rotation, depth_rows=rows, depth_gram=sealed(gram),
            ch_types=types_,
        )


def prepare_forward(gain, normals, ch_types: Sequence[str] | None = None) -> LocalForward:
    """Check a lead field and bring it into the sources' local frames (see :class:`LocalForward`).

    Parameters
    ----------
    gain : ndarray, shape (n_chan, 3 * n_sources)
        Raw lead field, dipole-major x, y, z columns in the frame of ``normals``.
    normals : ndarray, shape (n_sources, 3)
        Unit source normals.
    ch_types : sequence of {"eeg", "mag", "grad"}, optional
        Channel types (they choose the depth prior's channels).
    """
    g = np.asarray(gain, dtype=np.float64)
    if g.ndim != 2:
        raise InverseError(f"gain has shape {g.shape}; expected (n_chan, 3 * n_sources)")
    n_chan = g.shape[0]
    g, nrm, _ = check_forward(g, normals, n_chan)
    types_ = check_ch_types(ch_types, n_chan)
    rot = local_frames(nrm)
    local = _rotate_to_local(g, rot)
    rows = _depth_rows(types_, n_chan)
    sub = local[rows]
    return LocalForward(
        gain=_readonly(g), local=sealed(local), rotation=_readonly(rot), depth_rows=rows,
        depth_gram=sealed(gram_blocks(sub, sub)), ch_types=types_,
    )


def as_forward(gain, normals, n_chan: int, ch_types) -> LocalForward:
    """``gain`` as a :class:`LocalForward` (prepared now unless it already is one)."""
    if isinstance(gain, LocalForward):
        if gain.n_chan != n_chan:
            raise InverseError(
                f"the prepared forward has {gain.n_chan} channels but the covariance has "
                f"{n_chan}; prepare it for the same channels (LocalForward.drop)"
            )
        types_ = check_ch_types(ch_types, n_chan)
        if types_ != gain.ch_types:
            raise InverseError(
                "the prepared forward was made for other channel types; pass the same "
                "ch_types to prepare_forward"
            )
        return gain
    g = np.asarray(gain, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] != n_chan:
        check_forward(g, normals, n_chan)  # raises with the shapes and the fix
    return prepare_forward(g, normals, ch_types)

