"""Dispatch by shape: the own kernel or a BLAS product, whichever is faster for the chunk size.

For a few samples per chunk the operator product is memory-bound and the own kernels
(:mod:`._kernels`) read the operator at memory speed, at or near one GEMV pass. For tens of
samples it becomes compute-bound, where a vendor BLAS may run the fused multiply-adds
faster than the kernels on some CPU (on the 2-vCPU VMs this was measured on, the kernels now
win every shape of ``rtsource bench kernels``: 1.3-4.4x ahead of sgemm + pooling from 10
samples on; an apparent 2x lead of OpenBLAS at 32-64 samples was the cost of running one
kernel thread inside a parallel region, see :mod:`._kernels`). The BLAS path is ``x @ K'^T`` into a preallocated buffer by NumPy's matmul (sgemm),
with the unit factors and the noise normalisation folded into ``K'`` (for free orientation
per source, as ``c ||v|| = ||c v||`` for ``c > 0``), followed for free orientation by one
single-threaded pooling pass (:func:`._dispatch_kernels.pool3`).

Which path serves which chunk size is measured once per operator shape class when the
operator is warmed up (:func:`choose`): chunk sizes are grouped in classes ``1, 2, 3-4,
5-8, 9-12, 13-16, 17-24, 25-32, 33-48, 49-64, > 64``, each timed on both paths at its
largest size (best of a few runs each, in three alternating rounds; > 64 follows the 64
class). Every class is timed, one sample too: an operator that fits in the last-level
cache is not memory-bound there, and for fixed orientation NumPy's GEMV once beat the
kernel by 10-20 % (64 ch x 8k-20k sources, ``rtsource bench kernels``). The measurement
stops after :data:`_MEASURE_BUDGET_S`; larger classes then follow the last one measured
(both paths' cost grows about linearly with the chunk beyond a few samples). The choice
is cached by shape class (orientation, channels and sources rounded), so a hot swap that
drops a channel reuses it, and is published in the source stream's metadata and logged.
When the own kernel wins every class the BLAS copy of the operator is not kept.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

#: Upper bounds of the chunk-size classes; sizes above the last form one more class.
CLASS_BOUNDS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)
_MEASURE_BUDGET_S = 2.0  # stop timing beyond this much (larger classes follow the last measured)

_CHOICES: dict[tuple, "Dispatch"] = {}


def chunk_class(n: int) -> int:
    """Index of the class of a chunk of ``n`` samples in :data:`CLASS_BOUNDS` (len: above)."""
    for i, bound in enumerate(CLASS_BOUNDS):
        if n <= bound:
            return i
    return len(CLASS_BOUNDS)


@dataclass(frozen=True)
class Dispatch:
    """Which path serves each chunk-size class, and the times that decided it.

    Attributes
    ----------
    blas : tuple of bool
        Per class (:data:`CLASS_BOUNDS` and one above): True = BLAS + pooling.
    kernel_ms, blas_ms : tuple of float
        Measured per-chunk times (ms) per class (NaN where not measured).
    """

    blas: tuple[bool, ...]
    kernel_ms: tuple[float, ...] = ()
    blas_ms: tuple[float, ...] = ()

    @property
    def any_blas(self) -> bool:
        return any(self.blas)

    def table(self, max_chunk: int) -> np.ndarray:
        """(max_chunk + 1,) bool: use BLAS for a chunk of n samples."""
        return np.array([False] + [self.blas[chunk_class(n)] for n in range(1, max_chunk + 1)])

    def describe(self) -> str:
        """e.g. ``"kernel: 1-16; blas: 17-64, >64"``."""
        names = []
        lo = 1
        for bound in CLASS_BOUNDS:
            names.append(f"{lo}-{bound}" if bound > lo else f"{lo}")
            lo = bound + 1
        names.append(f">{CLASS_BOUNDS[-1]}")
        parts = []
        for path, flag in (("kernel", False), ("blas", True)):
            which = [name for name, b in zip(names, self.blas) if b == flag]
            if which:
                parts.append(f"{path}: {', '.join(which)}")
        return "; ".join(parts)


KERNEL_ONLY = Dispatch((False,) * (len(CLASS_BOUNDS) + 1))
BLAS_ONLY = Dispatch((True,) * (len(CLASS_BOUNDS) + 1))


class BlasPath:
    """``out = pool(x @ K'^T)`` with NumPy's sgemm into preallocated buffers.

    Parameters
    ----------
    kernel : ndarray, shape (n_sources * n_orient, n_channels)
        Operator rows (V -> output unit).
    scale : ndarray, shape (n_channels,), or None
        Unit factors of the stream's channels, folded into the columns.
    inv_norm : ndarray, shape (n_sources,)
        Noise normalisation, folded into the rows.
    n_orient : {1, 3}
    max_chunk : int
    """

    def __init__(self, kernel: np.ndarray, scale, inv_norm: np.ndarray, n_orient: int, max_chunk: int):
        from ..arrays import aligned_empty, aligned_zeros
        from ._dispatch_kernels import pool3

        rows = np.repeat(np.asarray(inv_norm, dtype=np.float64), n_orient)
        k = kernel * rows[:, None]
        if scale is not None:
            k = k * np.asarray(scale, dtype=np.float64)[None, :]
        self.kt = aligned_empty(k.shape[::-1], np.float32)  # (n_channels, n_rows): x @ kt is one sgemm
        self.kt[...] = k.T
        self.n_orient = n_orient
        self._y = aligned_zeros((max_chunk, k.shape[0]), np.float32) if n_orient == 3 else None
        self._pool3 = pool3

    def apply(self, x: np.ndarray, n: int, out: np.ndarray) -> None:
        """out[:n] = the pooled, normalised sources of x[:n] (x C-contiguous float32).

        A NaN input row gives NaN products (the caller marks the row); NumPy's warning about
        it is silenced here (a few microseconds on a path that serves chunks of ms).
        """
        with np.errstate(invalid="ignore", over="ignore"):
            if self._y is None:
                np.matmul(x[:n], self.kt, out=out[:n])
            else:
                np.matmul(x[:n], self.kt, out=self._y[:n])
        if self._y is not None:
            self._pool3(self._y, n, out)


def kernel_threads(requested: int = 0) -> int:
    """Threads of the numba kernels: ``requested``, or all cores but one (0).

    A parallel region is as slow as its slowest thread: on a machine whose cores are also
    busy with LSL's network threads, the amplifier software and the consumers, one
    descheduled worker turns a 1 ms chunk into a scheduler tick (4 ms) or more. Leaving a
    core free keeps the per-chunk time steady.
    """
    import os

    import numba

    threads = requested or max(1, (os.cpu_count() or 2) - 1)
    return min(threads, numba.config.NUMBA_NUM_THREADS)


def limit_blas_threads(threads: int):
    """Let OpenBLAS use ``threads`` threads (process-wide) as the numba kernels do.

    Both pools keep spinning after each call; with more threads than the kernels' on a
    busy 2-core machine, a threaded sgemm measured 10-50x slower than one thread. Returns
    the threadpoolctl limiter (``restore_original_limits()`` undoes it).
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")


def shape_key(n_orient: int, n_channels: int, n_sources: int, low_rank: bool, threads: int) -> tuple:
    """The shape class a choice is kept for (a hot swap that drops a channel stays in it)."""
    return (n_orient, round(n_channels / 16), round(n_sources / 1000), low_rank, threads)


def _best_ms(fn, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def cached(key: tuple) -> "Dispatch | None":
    """The choice already made for shape class ``key`` in this process, if any."""
    return _CHOICES.get(key)


def choose(key: tuple, run_kernel, run_blas, max_chunk: int) -> Dispatch:
    """Measure the two paths per chunk class (or reuse the choice made for ``key``).

    ``run_kernel(n)`` and ``run_blas(n)`` apply the operator to n samples.
    """
    if key in _CHOICES:
        return _CHOICES[key]
    n_cls = len(CLASS_BOUNDS) + 1
    blas, k_ms, b_ms = [False] * n_cls, [float("nan")] * n_cls, [float("nan")] * n_cls
    start = time.perf_counter()
    last = None  # index of the last class measured
    for i, bound in enumerate(CLASS_BOUNDS):
        if bound > max_chunk and i and CLASS_BOUNDS[i - 1] >= max_chunk:
            break  # no chunk of this size can arrive
        n = min(bound, max_chunk)
        first = _best_ms(lambda: run_kernel(n), 1)
        # best of several runs, in alternating rounds, so that a burst of load on a shared
        # machine hits both paths alike and the minimum stays near the path's real cost
        reps = int(min(10, max(2, 15.0 / max(first, 1e-3))))
        k_ms[i], b_ms[i] = first, float("inf")
        for _ in range(3):
            k_ms[i] = min(k_ms[i], _best_ms(lambda: run_kernel(n), reps))
            b_ms[i] = min(b_ms[i], _best_ms(lambda: run_blas(n), reps))
        blas[i] = b_ms[i] < k_ms[i]
        last = i
        if time.perf_counter() - start > _MEASURE_BUDGET_S:
            break
    if last is not None:  # above the last class measured the product stays compute-bound: as there
        blas[last + 1 :] = [blas[last]] * (n_cls - last - 1)
    choice = Dispatch(tuple(blas), tuple(k_ms), tuple(b_ms))
    _CHOICES[key] = choice
    logger.info("operator dispatch %s (%s)", choice.describe(), ", ".join(f"{c}: {k:.3g}/{b:.3g} ms" for c, k, b in zip(CLASS_BOUNDS, k_ms, b_ms) if k == k))
    return choice
