"""numba kernel of the decimation stage (see :mod:`rtsource.stream.decimation`).

Allocation-free, validated by the caller (:class:`rtsource.stream.operator.StreamOperator`).
"""

from __future__ import annotations

import numba


@numba.njit(cache=True, nogil=True)
def keep_every(x, n, factor, skip, bad_rows, kept):
    """Keep every ``factor``-th of the first ``n`` rows of ``x``, in place; returns (m, skip').

    Rows ``skip, skip + factor, ...`` (< n) move to rows ``0, 1, ..., m - 1`` of ``x`` (and
    of ``bad_rows``); ``kept[i]`` receives the input row that output row ``i`` came from, so
    the caller can stamp it with that sample's timestamp. ``skip`` is how many input rows
    remain to be dropped before the next kept one (0 <= skip < factor); the returned
    ``skip'`` is the same for the next chunk, so the phase runs on across chunks.
    Moving rows forward in place is safe because an output row is never after its input row.
    """
    n_col = x.shape[1]
    m = 0
    t = skip
    while t < n:
        if m != t:
            for c in range(n_col):
                x[m, c] = x[t, c]
            bad_rows[m] = bad_rows[t]
        kept[m] = t
        m += 1
        t += factor
    return m, t - n
