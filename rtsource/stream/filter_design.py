"""Butterworth filters for the streaming side, designed without importing scipy.signal.

Importing ``scipy.signal`` takes about a second (it parses docstrings at import), a third
of the time from ``rtsource run`` to the first published sample; the loop only needs
Butterworth designs and the steady state of their sections. The steps are the textbook
ones (Oppenheim & Schafer, *Discrete-Time Signal Processing*, 3rd ed., sec. 7.2-7.3;
Parks & Burrus, *Digital Filter Design*, 1987, ch. 7), in the same conventions as
``scipy.signal.butter`` so that the tests can compare the two:

1. analog prototype: ``N`` poles ``-exp(i pi m / 2N)``, ``m = -N+1, -N+3, ..., N-1``,
   cutoff 1 rad/s, no zeros;
2. band edges pre-warped for the bilinear transform, ``w = 2 fs' tan(pi Wn / fs')`` with
   ``Wn`` the edge as a fraction of Nyquist and ``fs' = 2``;
3. frequency transformation: low-pass ``p w``; high-pass ``w / p`` with ``N`` zeros at 0;
   band-pass ``p bw/2 +- sqrt((p bw/2)^2 - w0^2)`` with ``w0^2 = w1 w2``, ``bw = w2 - w1``
   and ``N`` zeros at 0;
4. bilinear transform ``z = (2 fs' + s) / (2 fs' - s)``; zeros at infinity go to -1;
5. second-order sections: each conjugate pole pair (real poles two by two, one alone for
   an odd count) with as many of the zeros, which for a Butterworth all lie at +1 or -1, the pairs farthest
   from the unit circle first and the overall gain in the first section.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

_BTYPES = ("lowpass", "highpass", "bandpass")


def butter_zpk(order: int, freq_hz, btype: str, fs: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Zeros, poles and gain of a digital Butterworth filter (as ``scipy.signal.butter``).

    Parameters
    ----------
    order : int
        Filter order ``N`` (a band-pass has ``2 N`` poles).
    freq_hz : float or (float, float)
        Cutoff (low-/high-pass) or band edges (band-pass), in Hz, below ``fs / 2``.
    btype : {"lowpass", "highpass", "bandpass"}
    fs : float
        Sampling rate (Hz).

    Returns
    -------
    z, p : ndarray of complex
    k : float
    """
    n = int(order)
    if n < 1 or n != order:
        raise ConfigError(f"filter order {order!r} must be a whole number >= 1")
    if btype not in _BTYPES:
        raise ConfigError(f"filter type {btype!r} must be one of {', '.join(_BTYPES)}")
    edges = np.atleast_1d(np.asarray(freq_hz, dtype=float))
    if edges.shape != ((2,) if btype == "bandpass" else (1,)):
        raise ConfigError(f"a {btype} filter takes {'two band edges' if btype == 'bandpass' else 'one cutoff'} in Hz, got {freq_hz!r}")
    wn = 2.0 * edges / fs  # fraction of the Nyquist frequency
    if not np.all((wn > 0) & (wn < 1)) or (btype == "bandpass" and not wn[0] < wn[1]):
        raise ConfigError(f"filter edges {freq_hz!r} Hz must be increasing and between 0 and the Nyquist frequency {fs / 2:g} Hz")
    fs2 = 4.0  # 2 fs' with fs' = 2: the normalised rate of the pre-warping
    warped = fs2 * np.tan(np.pi * wn / 2.0)

    m = np.arange(-n + 1, n, 2)
    p = -np.exp(1j * np.pi * m / (2 * n))  # analog prototype (step 1)
    z = np.zeros(0, dtype=complex)
    k = 1.0
    if btype == "lowpass":
        p = warped[0] * p
        k = k * warped[0] ** n
    elif btype == "highpass":
        k = k * float(np.real(1.0 / np.prod(-p)))
        p = warped[0] / p
        z = np.zeros(n, dtype=complex)
    else:
        w0, bw = np.sqrt(warped[0] * warped[1]), warped[1] - warped[0]
        half = p * bw / 2.0
        root = np.sqrt(half**2 - w0**2)
        p = np.concatenate([half + root, half - root])
        z = np.zeros(n, dtype=complex)
        k = k * bw**n
    # bilinear transform (step 4)
    degree = len(p) - len(z)
    k = k * float(np.real(np.prod(fs2 - z) / np.prod(fs2 - p)))
    z = np.append((fs2 + z) / (fs2 - z), -np.ones(degree))
    p = (fs2 + p) / (fs2 - p)
    return z, p, k


def butter_sos(order: int, freq_hz, btype: str, fs: float) -> np.ndarray:
    """Second-order sections of a digital Butterworth filter, shape (n_sections, 6).

    Rows ``[b0, b1, b2, 1, a1, a2]`` as ``scipy.signal.butter(..., output="sos")`` gives
    them (the same transfer function; sections may be paired differently). Parameters as
    :func:`butter_zpk`.
    """
    z, p, k = butter_zpk(order, freq_hz, btype, fs)
    upper = p[p.imag > 1e-12 * np.abs(p)]  # one pole of each conjugate pair
    real = np.real(p[np.abs(p.imag) <= 1e-12 * np.abs(p)])
    real = np.sort(real)
    groups = [np.array([q, np.conj(q)]) for q in upper]
    groups += [real[i : i + 2].astype(complex) for i in range(0, len(real), 2)]  # real poles two by two
    groups.sort(key=lambda g: -(1.0 - np.abs(g[0])))  # farthest from the unit circle first
    zeros = list(np.sort(np.real(z)))  # all at +1 or -1
    plus = [x for x in zeros if x > 0]
    minus = [x for x in zeros if x < 0]
    sos = np.zeros((len(groups), 6))
    for i, g in enumerate(groups):
        a = np.real(np.poly(g))
        take = []
        for _ in range(len(g)):  # alternate +1 / -1 zeros, so a band-pass section gets one of each
            src = plus if (len(plus) >= len(minus)) else minus
            if src:
                take.append(src.pop())
        b = np.real(np.poly(take)) if take else np.ones(1)
        sos[i, : len(b)] = b
        sos[i, 3 : 3 + len(a)] = a
    sos[0, :3] *= k
    return sos


def sosfilt_zi(sos: np.ndarray) -> np.ndarray:
    """Initial state of each section for a unit step that has lasted forever (n_sections, 2).

    As ``scipy.signal.sosfilt_zi``: for a biquad in transposed direct form II, the state
    ``zi`` solves ``(I - A^T) zi = b[1:] - a[1:] b[0]`` with ``A`` the companion matrix of
    ``a``; each section's step is scaled by the DC gain of the sections before it.
    """
    sos = np.asarray(sos, dtype=float)
    zi = np.zeros((len(sos), 2))
    scale = 1.0
    for s, row in enumerate(sos):
        b, a = row[:3] / row[3], row[3:] / row[3]
        i_minus_at = np.array([[1.0 + a[1], -1.0], [a[2], 1.0]])
        zi[s] = scale * np.linalg.solve(i_minus_at, b[1:] - a[1:] * b[0])
        scale *= b.sum() / a.sum()
    return zi
