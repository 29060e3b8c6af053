"""Plain NumPy twins of the ASR kernels (rtsource/artifacts/_kernels.py), written the direct way.

The update uses clean_rawdata's formula ``R = M pinv(diag(keep) V^T M) V^T`` rather than the
kernel's Cholesky form, so the two derivations check each other.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter


def ingest(x_all: np.ndarray, b, a, n_win: int, n_delay: int):
    """Over the whole record: (filtered, cov_sum of the last n_win filtered rows, delayed raw)."""
    y = lfilter(b, a, x_all, axis=0)
    last = y[-n_win:]
    delayed = np.vstack([np.zeros((n_delay, x_all.shape[1])), x_all])[: len(x_all)]
    return y, last.T @ last, min(len(x_all), n_win), delayed


def update(cov_sum_full: np.ndarray, n_fill: int, thresholds, mixing, max_remove: int):
    """(R, n_removed) by clean_rawdata's pinv formula."""
    n = cov_sum_full.shape[0]
    cov = cov_sum_full / max(n_fill, 1)
    evals, v = np.linalg.eigh(cov)
    thr = np.sum((thresholds @ v) ** 2, axis=0)
    keep = (evals < thr) | (np.arange(n) < n - max_remove)
    if keep.all():
        return np.eye(n), 0
    r = mixing @ np.linalg.pinv(keep[:, None] * (v.T @ mixing)) @ v.T
    return r, int(n - keep.sum())


def reconstruct(xd: np.ndarray, r_old, r_new, blend: bool):
    n = len(xd)
    w = 0.5 * (1 - np.cos(np.pi * (np.arange(n) + 1) / n)) if blend else np.ones(n)
    return w[:, None] * (xd @ r_new.T) + (1 - w)[:, None] * (xd @ r_old.T)


def process(cal, x_all: np.ndarray, chunks, lookahead_samples: int = 0, update_every: int = 32):
    """The whole processor, chunk by chunk, from the twins above (recomputing everything)."""
    n_ch = x_all.shape[1]
    n_win = int(round(cal.window_s * cal.sfreq))
    max_remove = int(np.floor(cal.max_remove_fraction * n_ch))
    r_cur = np.eye(n_ch)
    out = []
    since = 0
    pos = 0
    for n in chunks:
        seen = x_all[: pos + n]
        _, cov_sum, n_fill, delayed = ingest(seen, cal.filter_b, cal.filter_a, n_win, lookahead_samples)
        xd = delayed[pos : pos + n]
        since += n
        if since >= update_every:
            r_new, _ = update(cov_sum, n_fill, cal.thresholds, cal.mixing, max_remove)
            out.append(reconstruct(xd, r_cur, r_new, True))
            r_cur = r_new
            since = 0
        else:
            out.append(reconstruct(xd, r_cur, r_cur, False))
        pos += n
    return np.vstack(out)
