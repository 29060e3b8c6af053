"""numba kernels of the streaming hot path.

Plain functions over arrays and scalars; they write into preallocated outputs and allocate
nothing. No validation here: the wrappers in :mod:`rtsource.stream.operator` check shapes
and dtypes once, when the loop connects. Each kernel has a NumPy twin in the tests.

Layouts follow LSL: a chunk is (n_samples, n_channels), row-major.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..arrays import aligned_empty


@numba.njit(cache=True, nogil=True)
def gather_channels(x, index, n, out, bad_rows):
    """out[t, j] = x[t, index[j]] for t < n; flags rows with a non-finite value.

    Picks and orders the operator's channels. ``bad_rows[t]`` is set to 1 when any picked
    value of sample t is NaN or infinite (0 otherwise), and the number of such rows is
    returned, so a NaN from the amplifier never reaches the filter state or the operator.
    """
    n_chan = index.shape[0]
    n_bad = 0
    for t in range(n):
        bad = 0
        for j in range(n_chan):
            v = x[t, index[j]]
            out[t, j] = v
            if not np.isfinite(v):
                bad = 1
        bad_rows[t] = bad
        n_bad += bad
    return n_bad


@numba.njit(cache=True, nogil=True)
def sos_filter(x, n, sos, state, bad_rows):
    """Causal cascaded biquads over the first n rows of x, in place, per column.

    Transposed direct form II, the same recursion as scipy.signal.sosfilt; ``state`` has
    shape (n_sections, n_columns, 2) and carries the filter memory from chunk to chunk.
    Rows flagged in ``bad_rows`` are skipped: the filter sees them as absent, so its state
    stays finite.
    """
    n_sec = sos.shape[0]
    n_col = x.shape[1]
    for t in range(n):
        if bad_rows[t]:
            continue
        for c in range(n_col):
            v = np.float64(x[t, c])
            for s in range(n_sec):
                b0 = sos[s, 0]
                b1 = sos[s, 1]
                b2 = sos[s, 2]
                a1 = sos[s, 4]
                a2 = sos[s, 5]
                y = b0 * v + state[s, c, 0]
                state[s, c, 0] = b1 * v - a1 * y + state[s, c, 1]
                state[s, c, 1] = b2 * v - a2 * y
                v = y
            x[t, c] = v


@numba.njit(cache=True, nogil=True)
def set_filter_steady_state(x_row, sos, state, zi_unit):
    """Filter state for a signal that has been constant at ``x_row`` forever.

    ``zi_unit`` (n_sections, 2) is filter_design.sosfilt_zi(sos), the state for a unit step;
    scaling it per channel starts the filter without the transient a DC offset would cause
    (used after a gap in the input).
    """
    n_sec = sos.shape[0]
    for c in range(x_row.shape[0]):
        for s in range(n_sec):
            state[s, c, 0] = zi_unit[s, 0] * x_row[c]
            state[s, c, 1] = zi_unit[s, 1] * x_row[c]


@numba.njit(cache=True, nogil=True)
def fill_bad_rows(out, n, bad_rows, value):
    """out[t, :] = value for the flagged rows t < n (NaN output for NaN input)."""
    for t in range(n):
        if bad_rows[t]:
            for s in range(out.shape[1]):
                out[t, s] = value


# ---- the operator kernels ------------------------------------------------------------
#
# A GEMM-style micro-kernel (Goto & van de Geijn 2008, ACM TOMS 34:12): the operator is
# packed in tiles of TILE_ROWS rows (16 sources x 3 orientations, or 48 sources of a fixed
# operator), channel-major inside the tile, so that for each channel the tile's 48 values
# are contiguous. For four samples at a time, 4 x 48 accumulators live in a small stack
# array that LLVM keeps in vector registers: every operator value loaded from memory feeds
# four fused multiply-adds, the channel loop needs no horizontal sums, and each tile
# (12 KB for 64 channels) is read from memory once per chunk. The orientation pooling and
# the noise normalisation are fused into the write-out.
#
# Each kernel thread takes one contiguous block of tiles; one kernel thread (the loop's default
# on two cores: all cores but one) runs them on the calling thread with no parallel region:
# through OpenMP's one-thread region, 64 ch x 8k fixed sources took 42-56 us at chunk 4 and
# 28-34 us at chunk 1, serially 24-27 us and 22-24 us (AMD EPYC Zen 5 VM, one thread; one
# plain sgemv pass over the same operator: 29-33 us).

TILE_ROWS = 48


@intrinsic
def _stack_f32(typingctx, n):
    """A pointer to ``n`` (a literal) float32 values on the stack of the calling kernel."""
    if not isinstance(n, types.IntegerLiteral):
        return None

    def codegen(context, builder, sig, args):
        size = context.get_constant(types.intp, n.literal_value)
        return cgutils.alloca_once(builder, context.get_value_type(types.float32), size=size)

    return types.CPointer(types.float32)(n), codegen


@intrinsic
def _prefer_512_bit_vectors(typingctx):
    """Let LLVM vectorise the calling kernel with 512-bit registers where the CPU has them.

    LLVM's tuning for Intel server CPUs (Skylake-X to Emerald Rapids) prefers 256-bit
    vectors, to spare the clock drop of wide instructions in mostly scalar code. These
    tiles are nothing but fused multiply-adds, where 16 lanes beat 8: on a Sapphire/Emerald
    Rapids VM, 64 ch x 8k free sources, chunk 10: 0.62 -> 0.56 ms, chunk 32: 1.78 -> 1.35 ms
    (one thread, ``rtsource bench kernels``). Harmless without AVX-512.
    """

    def codegen(context, builder, sig, args):
        # llvmlite checks attribute names against a fixed list; a string attribute is valid IR
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return types.none(), codegen


@numba.njit(inline="always", fastmath=True)
def _accumulate_tile(packed, tile, x, t, rows, acc):
    """acc[r, :] = tile rows . x[t + r] for r < rows (<= 4), over all channels.

    One branch per row count, with constant indices, so that LLVM keeps the accumulators
    in vector registers (a runtime row index would force them back to memory). Inlined into
    the kernels at numba IR level, and compiled once per tile dtype: float32 tiles, or
    int16 ones (:mod:`.quantize`) converted to float32 on the way, the same code.

    For one sample, splitting the channels over the unused rows of ``acc`` (more
    independent accumulators) measured 6-14 % slower: the read of the operator, not the
    fused multiply-add's latency, bounds it.
    """
    n_chan = packed.shape[1]
    for q in range(48):
        acc[0, q] = 0.0
        acc[1, q] = 0.0
        acc[2, q] = 0.0
        acc[3, q] = 0.0
    if rows == 4:
        for j in range(n_chan):
            k = packed[tile, j]
            v0 = x[t, j]
            v1 = x[t + 1, j]
            v2 = x[t + 2, j]
            v3 = x[t + 3, j]
            for q in range(48):
                kq = np.float32(k[q])
                acc[0, q] += kq * v0
                acc[1, q] += kq * v1
                acc[2, q] += kq * v2
                acc[3, q] += kq * v3
    elif rows == 3:
        for j in range(n_chan):
            k = packed[tile, j]
            v0 = x[t, j]
            v1 = x[t + 1, j]
            v2 = x[t + 2, j]
            for q in range(48):
                kq = np.float32(k[q])
                acc[0, q] += kq * v0
                acc[1, q] += kq * v1
                acc[2, q] += kq * v2
    elif rows == 2:
        for j in range(n_chan):
            k = packed[tile, j]
            v0 = x[t, j]
            v1 = x[t + 1, j]
            for q in range(48):
                kq = np.float32(k[q])
                acc[0, q] += kq * v0
                acc[1, q] += kq * v1
    else:
        for j in range(n_chan):
            k = packed[tile, j]
            v0 = x[t, j]
            for q in range(48):
                acc[0, q] += np.float32(k[q]) * v0


@numba.njit(inline="always", fastmath=True)
def _scale_rows(acc, rows, f):
    """acc[r, q] *= f[q] for r < rows: the row factors of int16 tiles (:mod:`.quantize`)."""
    for r in range(rows):
        for q in range(48):
            acc[r, q] *= f[q]


@numba.njit(cache=True, nogil=True, fastmath=True)
def _pooled3_tiles(x, n, packed, inv_norm, out, row_scale, first, stop):
    """Tiles first..stop-1 of :func:`apply_pooled3`, on the calling thread."""
    _prefer_512_bit_vectors()
    acc = numba.carray(_stack_f32(192), (4, 48))
    n_src = out.shape[1]
    for tile in range(first, stop):
        base = tile * 16
        t = 0
        while t < n:
            rows = min(4, n - t)
            _accumulate_tile(packed, tile, x, t, rows, acc)
            if row_scale is not None:
                _scale_rows(acc, rows, row_scale[tile])
            for r in range(rows):
                for w in range(16):
                    s = base + w
                    if s < n_src:
                        out[t + r, s] = np.sqrt(acc[r, w] * acc[r, w] + acc[r, 16 + w] * acc[r, 16 + w] + acc[r, 32 + w] * acc[r, 32 + w]) * inv_norm[s]
            t += rows


@numba.njit(cache=True, nogil=True, fastmath=True)
def _fixed_tiles(x, n, packed, inv_norm, out, row_scale, first, stop):
    """Tiles first..stop-1 of :func:`apply_fixed`, on the calling thread."""
    _prefer_512_bit_vectors()
    acc = numba.carray(_stack_f32(192), (4, 48))
    n_src = out.shape[1]
    for tile in range(first, stop):
        base = tile * 48
        t = 0
        while t < n:
            rows = min(4, n - t)
            _accumulate_tile(packed, tile, x, t, rows, acc)
            if row_scale is not None:
                _scale_rows(acc, rows, row_scale[tile])
            m = min(48, n_src - base)
            for r in range(rows):
                if m == 48:
                    for q in range(48):
                        out[t + r, base + q] = acc[r, q] * inv_norm[base + q]
                else:
                    for q in range(m):
                        out[t + r, base + q] = acc[r, q] * inv_norm[base + q]
            t += rows


@numba.njit(cache=True, nogil=True, parallel=True)
def apply_pooled3(x, n, packed, inv_norm, out, row_scale=None, blocks=1):
    """Free/loose orientation: out[t, s] = ||K_s x_t|| * inv_norm[s].

    packed: (n_tiles, n_channels, 48), tile row o * 16 + w holds orientation o of source
    16 * tile + w (see :func:`pack_pooled3`); x (>= n, n_channels); out (>= n, n_sources).
    float32 tiles, or int16 ones with ``row_scale`` (n_tiles, 48) float32, the factor of
    each tile row (K ~ q * f; see :mod:`.quantize`). ``blocks``: contiguous blocks of tiles
    run in parallel, one per kernel thread (numba's thread count must be >= blocks to run
    them at once); 1 runs every tile on the calling thread.
    """
    n_tiles = packed.shape[0]
    blocks = min(blocks, n_tiles)
    if blocks <= 1:  # no parallel region at all for one thread (see the note above)
        _pooled3_tiles(x, n, packed, inv_norm, out, row_scale, 0, n_tiles)
        return
    for b in prange(blocks):
        _pooled3_tiles(x, n, packed, inv_norm, out, row_scale, b * n_tiles // blocks, (b + 1) * n_tiles // blocks)


@numba.njit(cache=True, nogil=True, parallel=True)
def apply_fixed(x, n, packed, inv_norm, out, row_scale=None, blocks=1):
    """Fixed orientation: out[t, s] = (K_s . x_t) * inv_norm[s] (signed).

    packed: (n_tiles, n_channels, 48), tile row q holds source 48 * tile + q (see
    :func:`pack_fixed`); x (>= n, n_channels); out (>= n, n_sources); ``row_scale`` and
    ``blocks`` as in :func:`apply_pooled3`.
    """
    n_tiles = packed.shape[0]
    blocks = min(blocks, n_tiles)
    if blocks <= 1:
        _fixed_tiles(x, n, packed, inv_norm, out, row_scale, 0, n_tiles)
        return
    for b in prange(blocks):
        _fixed_tiles(x, n, packed, inv_norm, out, row_scale, b * n_tiles // blocks, (b + 1) * n_tiles // blocks)


def pack_pooled3(kernel: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """(n_sources * 3, n_chan) operator rows -> (n_tiles, n_chan, 48) float32 tiles (zero-padded).

    ``scale`` (n_chan,), optional, multiplies the columns on the way (unit factors of the
    stream's channels): one pass over the operator, which matters for hot swaps.
    """
    n_rows, n_chan = kernel.shape
    n_src = n_rows // 3
    n_tiles = -(-n_src // 16)
    scale = np.ones(n_chan) if scale is None else np.asarray(scale, dtype=np.float64)
    out = aligned_empty((n_tiles, n_chan, 3, 16), np.float32)  # tile row o * 16 + w
    full = n_src // 16
    rows = kernel[: full * 48].reshape(full, 16, 3, n_chan).transpose(0, 3, 2, 1)
    np.multiply(rows, scale[None, :, None, None], out=out[:full], casting="unsafe")
    if full < n_tiles:
        out[full:] = 0.0
        rest = kernel[full * 48 :].reshape(-1, 3, n_chan).transpose(2, 1, 0)
        out[full, :, :, : rest.shape[2]] = rest * scale[:, None, None]
    return out.reshape(n_tiles, n_chan, 48)


def pack_fixed(kernel: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """(n_sources, n_chan) operator rows -> (n_tiles, n_chan, 48) float32 tiles (zero-padded);
    ``scale`` as in :func:`pack_pooled3`."""
    n_src, n_chan = kernel.shape
    n_tiles = -(-n_src // 48)
    scale = np.ones(n_chan) if scale is None else np.asarray(scale, dtype=np.float64)
    out = aligned_empty((n_tiles, n_chan, 48), np.float32)
    full = n_src // 48
    np.multiply(kernel[: full * 48].reshape(full, 48, n_chan).transpose(0, 2, 1), scale[None, :, None], out=out[:full], casting="unsafe")
    if full < n_tiles:
        out[full:] = 0.0
        rest = kernel[full * 48 :]
        out[full, :, : len(rest)] = (rest * scale).T
    return out
