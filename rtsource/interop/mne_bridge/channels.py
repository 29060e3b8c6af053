"""Channels between MNE and rtsource: picking by name and type, SSP projectors as a
re-referencing matrix, the noise covariance, sensor positions."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from ...errors import ChannelError, ConfigError
from ...geometry import Frame
from ...inverse.covariance import METHODS as COV_METHODS
from ...inverse.covariance import NoiseCovariance
from ...inverse.reference import average_reference_matrix, reference_to_channel_matrix
from ._common import CHANNEL_KINDS, import_mne, short_list, square_cov

logger = logging.getLogger(__name__)


def _channel_kind(info, name: str) -> str:
    mne = import_mne()
    return mne.channel_type(info, info["ch_names"].index(name))


def pick_names(fwd_info, info, cov, ch_type: str) -> list[str]:
    """The forward's channels of ``ch_type`` that are good in ``info`` and ``cov``, forward order."""
    if ch_type not in CHANNEL_KINDS:
        raise ConfigError(f"ch_type {ch_type!r} is not one of {', '.join(CHANNEL_KINDS)}; rtsource whitens one sensor type per operator")
    names = [c for c in fwd_info["ch_names"] if _channel_kind(fwd_info, c) == ch_type]
    if not names:
        raise ChannelError(f"the forward solution has no {ch_type!r} channels (it has {short_list(fwd_info['ch_names'])}); pass the ch_type it was computed for")
    bads = set(info["bads"]) | set(cov["bads"]) | set(fwd_info["bads"])
    dropped = [c for c in names if c in bads]
    if dropped:
        logger.info("leaving out %d bad channel(s): %s", len(dropped), short_list(dropped))
    names = [c for c in names if c not in bads]
    missing_info = [c for c in names if c not in info["ch_names"]]
    if missing_info:
        raise ChannelError(
            f"{len(missing_info)} channel(s) of the forward are not in the Info ({short_list(missing_info)}); "
            "pass the Info of the recording the forward was computed for, or mark them bad"
        )
    missing_cov = [c for c in names if c not in cov.ch_names]
    if missing_cov:
        raise ChannelError(
            f"{len(missing_cov)} channel(s) of the forward are not in the noise covariance ({short_list(missing_cov)}); "
            "estimate the covariance on the same channels, or mark them bad in the Info"
        )
    if len(names) < 2:
        raise ChannelError(f"only {len(names)} good {ch_type!r} channel(s) remain; an inverse needs several")
    return names


def projector_matrix(projs, ch_names: Sequence[str]) -> tuple[np.ndarray, int]:
    """The SSP projector ``I - U U^T`` of ``projs`` on ``ch_names``, matched by name.

    As MNE-Python's ``make_projector``: each projection vector is restricted to the named
    channels (entries of other channels are dropped), rescaled to unit norm, and the set is
    re-orthogonalised, dropping vectors with a relative singular value below 1e-2.

    Returns
    -------
    matrix : ndarray, shape (n_chan, n_chan)
    n_components : int
        Number of directions projected out.
    """
    names = list(ch_names)
    where = {c: i for i, c in enumerate(names)}
    vecs = []
    for p in projs:
        data = p["data"]
        cols = list(data["col_names"])
        rows = np.atleast_2d(np.asarray(data["data"], dtype=np.float64))
        for row in rows:
            v = np.zeros(len(names))
            for j, c in enumerate(cols):
                if c in where:
                    v[where[c]] = row[j]
            norm = np.linalg.norm(v)
            if norm > 0:
                vecs.append(v / norm)
    if not vecs:
        return np.eye(len(names)), 0
    u, s, _ = np.linalg.svd(np.column_stack(vecs), full_matrices=False)
    k = int(np.sum(s / s[0] > 1e-2))
    u = u[:, :k]
    return np.eye(len(names)) - u @ u.T, k


def reference_from_projectors(info, cov, names: list[str], reference: str | None) -> tuple[np.ndarray, str, list[str]]:
    """The re-referencing matrix M and the bundle's reference label."""
    n = len(names)
    if reference is not None:
        if reference == "average":
            return average_reference_matrix(n), "average", []
        if reference == "none":
            return np.eye(n), "none", []
        if reference in names:
            return reference_to_channel_matrix(names, reference), reference, []
        raise ConfigError(f"reference {reference!r} is not 'average', 'none' or one of the channels ({short_list(names)})")
    projs = list(info["projs"]) + [p for p in cov["projs"] if p["desc"] not in {q["desc"] for q in info["projs"]}]
    m, k = projector_matrix(projs, names)
    descs = [p["desc"] for p in projs]
    if k == 0:
        return np.eye(n), "none", []
    avg = average_reference_matrix(n)
    if k == 1 and np.allclose(m, avg, atol=1e-10):
        return avg, "average", descs
    return m, "projectors", descs


def noise_covariance_from_mne(cov, ch_names: Sequence[str], *, apply_projectors: bool = True) -> NoiseCovariance:
    """An MNE ``Covariance`` on ``ch_names`` (picked and ordered by name) as a NoiseCovariance.

    The covariance's own SSP projectors (``cov['projs']``, restricted to ``ch_names``) are
    applied, ``P C P^T``, as MNE-Python does before whitening: a covariance estimated with
    projectors is meant to be used with them (without, an empty-room projector's patterns
    keep their full variance and the whitener divides the rest by nearly nothing). Pass
    ``apply_projectors=False`` for the stored matrix as it is.
    """
    names = list(ch_names)
    missing = [c for c in names if c not in cov.ch_names]
    if missing:
        raise ChannelError(f"the noise covariance lacks {len(missing)} channel(s): {short_list(missing)}")
    idx = [cov.ch_names.index(c) for c in names]
    data = np.asarray(cov.data, dtype=np.float64)
    full = square_cov(cov)
    method = cov.get("method") if hasattr(cov, "get") else None
    if data.ndim == 1:
        ours = "diagonal"
    else:
        ours = method if method in COV_METHODS else "empirical"
    picked = full[np.ix_(idx, idx)]
    projs = cov["projs"] if apply_projectors else []
    if projs:
        m, k = projector_matrix(projs, names)
        if k:
            logger.info("applying the covariance's %d projector(s) (%d direction(s)): %s", len(projs), k, short_list([p["desc"] for p in projs]))
            picked = m @ picked @ m.T
            picked = 0.5 * (picked + picked.T)
    return NoiseCovariance(picked, tuple(names), int(cov["nfree"] or 0), ours, 0.0)


def channel_positions(info, names: list[str], frame: Frame) -> np.ndarray:
    """Sensor positions (m) in ``frame``: EEG locations are head-frame; MEG coils device-frame."""
    out = np.zeros((len(names), 3))
    dev_head = info.get("dev_head_t")
    for i, c in enumerate(names):
        ch = info["chs"][info["ch_names"].index(c)]
        loc = np.asarray(ch["loc"][:3], dtype=np.float64)
        if ch["coord_frame"] == 1 and dev_head is not None:  # FIFFV_COORD_DEVICE
            t = np.asarray(dev_head["trans"])
            loc = t[:3, :3] @ loc + t[:3, 3]
        out[i] = loc
    if frame == Frame.MRI and info.get("dev_head_t") is not None:
        logger.info("channel positions are recorded in the head frame while the sources are in MRI coordinates")
    return np.nan_to_num(out)


__all__ = ["channel_positions", "noise_covariance_from_mne", "pick_names", "projector_matrix", "reference_from_projectors"]
