"""numba kernels of the cHPI head tracker (:mod:`rtsource.stream.chpi`).

Plain functions over arrays that write into preallocated outputs; no validation (the
wrappers in :mod:`rtsource.stream.chpi` and :mod:`rtsource.stream.headpose` do it); each is
checked against a NumPy twin in ``tests/stream/test_chpi.py``.

The field of a magnetic dipole m at r0 in free space (an HPI coil is a small current loop;
MNE-Python fits it the same way, Hamalainen et al. 1993, Rev Mod Phys 65:413, eq. 3)::

    B(p) = mu0/(4 pi) [3 (m.r) r - |r|^2 m] / |r|^5,   r = p - r0

so B(p).n = m.g with g = mu0/(4 pi) [3 (r.n) r - |r|^2 n] / |r|^5.
"""

from __future__ import annotations

import math

import numba

MU0_OVER_4PI = 1e-7  # T m / A


@numba.njit(cache=True)
def magnetic_dipole_gain(points, normals, weights, point_channel, pos, out):
    """Channel gain of a magnetic dipole at ``pos`` (free space).

    Parameters
    ----------
    points, normals : ndarray, shape (k, 3)
        Coil integration points (m) and their unit normals, in the frame of ``pos``.
    weights : ndarray, shape (k,)
    point_channel : ndarray of int64, shape (k,)
        Channel of each point, in [0, n_channels).
    pos : ndarray, shape (3,)
        Dipole position, m.
    out : ndarray, shape (n_channels, 3)
        Overwritten: T (or T/m) per A*m^2 for the moment's x, y, z.
    """
    for row in range(out.shape[0]):
        out[row, 0] = 0.0
        out[row, 1] = 0.0
        out[row, 2] = 0.0
    for i in range(points.shape[0]):
        rx = points[i, 0] - pos[0]
        ry = points[i, 1] - pos[1]
        rz = points[i, 2] - pos[2]
        nx = normals[i, 0]
        ny = normals[i, 1]
        nz = normals[i, 2]
        r2 = rx * rx + ry * ry + rz * rz
        s = MU0_OVER_4PI * weights[i] / (r2 * r2 * math.sqrt(r2))
        rn3 = 3.0 * (rx * nx + ry * ny + rz * nz)
        c = int(point_channel[i])
        out[c, 0] += s * (rn3 * rx - r2 * nx)
        out[c, 1] += s * (rn3 * ry - r2 * ny)
        out[c, 2] += s * (rn3 * rz - r2 * nz)


@numba.njit(cache=True)
def subtract_lines(buf, n, columns, coef_cos, coef_sin, omega, phase0):
    """Remove fitted sinusoids from the first ``n`` rows of a stream buffer, in place.

    Row j (0 <= j < n) gets ``sum_f coef_cos[f, q] cos(phase0[f] + omega[f] j) +
    coef_sin[f, q] sin(phase0[f] + omega[f] j)`` subtracted in column ``columns[q]``.

    Parameters
    ----------
    buf : ndarray, shape (rows, n_stream_channels)
        The stream's pull buffer (any float dtype), stream units.
    n : int
    columns : ndarray of int64, shape (n_q,)
    coef_cos, coef_sin : ndarray, shape (n_freqs, n_q)
        Amplitudes in stream units, referred to the absolute phase.
    omega : ndarray, shape (n_freqs,)
        Angular frequency per sample (rad).
    phase0 : ndarray, shape (n_freqs,)
        Phase of the first row, rad (reduced modulo 2 pi by the caller).
    """
    n_f = omega.shape[0]
    n_q = columns.shape[0]
    for j in range(n):
        for f in range(n_f):
            ph = phase0[f] + omega[f] * j
            c = math.cos(ph)
            s = math.sin(ph)
            for q in range(n_q):
                buf[j, columns[q]] -= coef_cos[f, q] * c + coef_sin[f, q] * s


@numba.njit(cache=True)
def store_ring(buf, n, columns, scale, ring, write):
    """Copy the first ``n`` rows of ``buf``'s ``columns`` (times ``scale``) into a ring.

    Parameters
    ----------
    buf : ndarray, shape (rows, n_stream_channels)
    n : int
    columns : ndarray of int64, shape (n_q,)
    scale : ndarray, shape (n_q,)
        Stream unit -> SI.
    ring : ndarray, shape (w, n_q)
        The ring (float64), written from row ``write`` on, wrapping.
    write : int
        Next row of the ring to write.

    Returns
    -------
    int
        The new write index.
    """
    w = ring.shape[0]
    start = 0
    if n > w:  # only the newest w rows can stay
        start = n - w
        write = (write + start) % w
    for j in range(start, n):
        for q in range(columns.shape[0]):
            ring[write, q] = buf[j, columns[q]] * scale[q]
        write += 1
        if write == w:
            write = 0
    return write
