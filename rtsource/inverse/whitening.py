"""The noise whitener (reference section 5, step 1), one block per sensor type.

Every operator starts from ``W M``: re-reference with ``M``, then whiten with the noise
covariance's top eigenpairs so that the noise becomes white on the kept subspace. EEG
and MEG channels get separate blocks, each from its own eigendecomposition and rank, as
MNE-Python's ``compute_whitener`` does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..errors import InverseError
from ._checks import check_ch_types, check_reference_matrix
from .covariance import DataCovariance, NoiseCovariance

logger = logging.getLogger(__name__)

@dataclass(frozen=True, eq=False)
class Whitener:
    """The noise whitener of an inverse operator, re-referencing included.

    Attributes
    ----------
    matrix : ndarray, shape (rank, n_chan)
        ``W M`` in 1/V (1/T, m/T for MEG rows): applied to raw data in the covariance's
        channel order it re-references and whitens, so that the noise covariance becomes
        the identity on the kept subspace. Rows are grouped by block (EEG, then MEG),
        each block's rows are zero outside its channels. Read-only.
    rank : int
        Kept rank in total (the sum of ``block_ranks``).
    block_ranks : Mapping[str, int]
        Kept rank per whitening block: ``"eeg"`` and ``"meg"`` (magnetometers and
        gradiometers together, as MNE-Python), or ``"all"`` when no ``ch_types`` were given.
    eigenvalues : ndarray, shape (rank,)
        The kept noise eigenvalues, block by block in the order of ``matrix``'s rows,
        descending inside a block, in the block's unit squared.
    blocks : Mapping[str, tuple of int]
        Channel indices of each block.
    """

    matrix: np.ndarray
    rank: int
    block_ranks: Mapping[str, int]
    eigenvalues: np.ndarray
    blocks: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("matrix", "eigenvalues"):
            a = np.array(getattr(self, name), dtype=np.float64)
            a.flags.writeable = False
            object.__setattr__(self, name, a)
        object.__setattr__(self, "block_ranks", dict(self.block_ranks))
        object.__setattr__(self, "blocks", {k: tuple(v) for k, v in self.blocks.items()})


def whitening_blocks(ch_types: Sequence[str] | None, n_chan: int) -> dict[str, np.ndarray]:
    """Channel indices of each whitening block.

    Like MNE-Python's ``compute_whitener`` (``_smart_eigh`` with ``meg_combined=True``):
    EEG channels form one block, MEG channels (magnetometers and gradiometers) another.
    Without ``ch_types`` every channel is in the single block ``"all"``.
    """
    types = check_ch_types(ch_types, n_chan)
    if types is None:
        return {"all": np.arange(n_chan)}
    t = np.array(types)
    blocks = {}
    eeg = np.flatnonzero(t == "eeg")
    meg = np.flatnonzero((t == "mag") | (t == "grad"))
    if eeg.size:
        blocks["eeg"] = eeg
    if meg.size:
        blocks["meg"] = meg
    return blocks


def _block_whitener(
    cov_ref: np.ndarray, rank: int | None, rank_m: int, block: str = "all"
) -> tuple[np.ndarray, int, np.ndarray]:
    """Whitener on the top ``rank`` eigenpairs of one block of the re-referenced covariance.

    Parameters
    ----------
    cov_ref : ndarray, shape (n, n)
        ``M C M^T`` restricted to the block, in the block's unit squared.
    rank : int or None
        Requested rank; None for the numerical rank (capped by ``rank_m``).
    rank_m : int
        Rank of the block of the re-referencing matrix.
    block : str
        Block name for messages.

    Returns
    -------
    w : ndarray, shape (rank, n)
        ``diag(1/sqrt(e)) E^T``.
    rank : int
    eig : ndarray, shape (rank,)
        The kept eigenvalues, descending.
    """
    n_chan = cov_ref.shape[0]
    where = "" if block == "all" else f" {block.upper()} block of the"
    eig, vec = np.linalg.eigh(cov_ref)
    eig, vec = eig[::-1], vec[:, ::-1]  # descending
    if not eig[0] > 0:
        raise InverseError(
            f"the{where} re-referenced noise covariance is zero; estimate it from real "
            "data or use ad_hoc_noise_covariance"
        )
    # numpy.linalg.matrix_rank's tolerance; also never more than M lets through.
    numerical = min(int(np.sum(eig > eig[0] * n_chan * np.finfo(float).eps)), rank_m)
    if rank is None:
        rank = numerical
    else:
        is_int = isinstance(rank, (int, np.integer)) and not isinstance(rank, bool)
        if not is_int or not 1 <= rank <= numerical:
            name = "rank" if block == "all" else f"rank[{block!r}]"
            raise InverseError(
                f"{name} is {rank!r} but the{where} re-referenced noise covariance has "
                f"numerical rank {numerical}; pass an integer in [1, {numerical}] or "
                f"rank=None"
            )
        rank = int(rank)
    w = vec[:, :rank].T / np.sqrt(eig[:rank])[:, None]
    return w, rank, eig[:rank]


def _check_reference_blocks(m: np.ndarray, blocks: Mapping[str, np.ndarray], ch_names) -> None:
    """The reference must not mix sensor types (it re-references EEG only)."""
    if len(blocks) < 2:
        return
    names = list(blocks)
    for a in names:
        for b in names:
            if a == b:
                continue
            sub = m[np.ix_(blocks[a], blocks[b])]
            if np.any(sub != 0):
                i, j = np.unravel_index(np.argmax(np.abs(sub)), sub.shape)
                row, col = blocks[a][i], blocks[b][j]
                if ch_names is not None:
                    row, col = repr(ch_names[row]), repr(ch_names[col])
                raise InverseError(
                    f"reference mixes sensor types: entry (row {row}, column {col}) links "
                    f"a {a.upper()} channel to a {b.upper()} channel; re-reference EEG "
                    "only, e.g. reference_matrix(ch_names, 'average', ch_types=ch_types)"
                )


def make_whitener(
    noise_cov: NoiseCovariance,
    *,
    reference: np.ndarray,
    ch_types: Sequence[str] | None = None,
    rank: int | Mapping[str, int] | None = None,
) -> Whitener:
    """The noise whitener ``W M``, one eigendecomposition per sensor type.

    Section 5 step 1 (Hamalainen & Ilmoniemi 1994, Med Biol Eng Comput 32:35; per-type
    blocks as MNE-Python's ``compute_whitener``): re-reference the covariance,
    ``C_r = M C M^T``; for each block (EEG; MEG = magnetometers and gradiometers) take
    the eigendecomposition ``C_r[b, b] = E e E^T`` and keep the top ``rank_b`` pairs:
    ``W_b = diag(1/sqrt(e)) E^T``. Covariances between blocks are ignored, so EEG in V^2
    (~1e-12) next to MEG in T^2 (~1e-26) whitens without either dropping out as
    numerically zero.

    Parameters
    ----------
    noise_cov : NoiseCovariance
        Noise covariance in SI units squared.
    reference : ndarray, shape (n_chan, n_chan)
        Re-referencing matrix ``M``. With ``ch_types`` it must not mix EEG and MEG
        channels (see ``reference_matrix(..., ch_types=...)``).
    ch_types : sequence of {"eeg", "mag", "grad"}, optional
        Type of each channel. None: one block for all channels (right for one type).
    rank : int, mapping or None
        Kept rank: None for the numerical rank of each block (an average reference
        removes one from the EEG block); an int when there is one block; a mapping such
        as ``{"eeg": 59, "meg": 102}`` (missing keys: numerical).

    Returns
    -------
    Whitener
    """
    if not isinstance(noise_cov, NoiseCovariance) or isinstance(noise_cov, DataCovariance):
        what = type(noise_cov).__name__
        raise InverseError(
            f"noise_cov is a {what}; pass a NoiseCovariance (estimate_noise_covariance or "
            "ad_hoc_noise_covariance)"
            + (" -- the data covariance belongs to the beamformer's data_cov" if what == "DataCovariance" else "")
        )
    n_chan = noise_cov.n_chan
    m = check_reference_matrix(reference, n_chan)
    blocks = whitening_blocks(ch_types, n_chan)
    _check_reference_blocks(m, blocks, noise_cov.ch_names)
    if rank is None or isinstance(rank, Mapping):
        ranks = dict(rank or {})
        unknown = sorted(set(ranks) - set(blocks))
        if unknown:
            raise InverseError(
                f"rank has key(s) {', '.join(map(repr, unknown))} but the whitening blocks "
                f"are {', '.join(map(repr, blocks))}; use those keys"
            )
    elif len(blocks) == 1:
        ranks = {next(iter(blocks)): rank}
    else:
        raise InverseError(
            f"rank is {rank!r} but the channels form {len(blocks)} whitening blocks "
            f"({', '.join(blocks)}); pass a mapping such as "
            + "{" + ", ".join(f"'{b}': ..." for b in blocks) + "} or rank=None"
        )

    cov_ref = m @ noise_cov.data @ m.T
    cov_ref = 0.5 * (cov_ref + cov_ref.T)
    rows, eigs, block_ranks = [], [], {}
    for name, idx in blocks.items():
        c_b = cov_ref[np.ix_(idx, idx)]
        var = np.diag(c_b)
        if var.min() > 0 and var.max() > 1e10 * var.min():
            # EEG (V^2 ~ 1e-12) next to MEG (T^2 ~ 1e-26) in one eigendecomposition drops
            # the small-unit channels as numerically zero.
            logger.warning(
                "noise covariance variances span %.1e (%.3g to %.3g)%s: this looks like "
                "mixed sensor types, which need one whitener per type; pass ch_types or "
                "check the units",
                var.max() / var.min(), var.min(), var.max(),
                "" if name == "all" else f" inside the {name.upper()} block",
            )
        rank_m = int(np.linalg.matrix_rank(m[np.ix_(idx, idx)]))
        w_b, r_b, e_b = _block_whitener(c_b, ranks.get(name), rank_m, name)
        w_full = np.zeros((r_b, n_chan))
        w_full[:, idx] = w_b
        rows.append(w_full)
        eigs.append(e_b)
        block_ranks[name] = r_b
    w = np.vstack(rows)
    return Whitener(
        matrix=w @ m,
        rank=int(sum(block_ranks.values())),
        block_ranks=block_ranks,
        eigenvalues=np.concatenate(eigs),
        blocks={k: tuple(int(i) for i in v) for k, v in blocks.items()},
    )
