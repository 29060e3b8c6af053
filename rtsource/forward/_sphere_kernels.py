"""numba kernels of the EEG concentric-sphere forward model (exact series).

Plain functions over arrays and scalars that write into preallocated outputs. They do no
validation: :mod:`rtsource.forward.sphere` checks every input before calling them, and the
tests check each kernel against a NumPy/SciPy twin.

The series is the one of Zhang (1995, Phys Med Biol 40:335) and de Munck &
Peters (1993, IEEE TBME 40:1166). With beta = b/R, K = 1/(4 pi s_N R^2):

    V = K sum_n (2n+1)/n beta^(n-1) f_n [n (Q.r_q^) P_n(x) + (Q.t) P_n^1(x)]

Because P_n^1(x) = sin(g) P_n'(x) (no Condon-Shortley sign) and sin(g) t = e^ - x r_q^,
the tangential term is (Q.e^ - x Q.r_q^) P_n'(x). Summing P_n' instead of P_n^1 / sin g
removes the 0/0 at collinear electrodes (sin g = 0, where Q.e^ - x Q.r_q^ = 0 too), so
the lead field row of one electrode is

    L = K [(A - x D) r_q^ + D e^],   A = sum_n n w_n P_n,   D = sum_n w_n P_n'
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def sphere_coefficients(rel_radii, cond_ratios, f_out, ratio_sup_out):
    """Fill the layer factors f_n of the concentric-sphere series.

    Parameters
    ----------
    rel_radii : ndarray, shape (n_layers - 1,)
        p_k = r_k / R of the inner interfaces, ascending, all < 1.
    cond_ratios : ndarray, shape (n_layers - 1,)
        c_k = s_k / s_{k+1}.
    f_out : ndarray, shape (n_max + 1,)
        Output: ``f_out[n]`` = f_n for n = 1..n_max; ``f_out[0]`` is set to 0.
    ratio_sup_out : ndarray, shape (n_max + 1,)
        Output: ``ratio_sup_out[n]`` = max over m >= n of |f_{m+1} / f_m| (beyond n_max
        assumed <= 1 or the last ratio, since f_n tends to a constant). Used to bound the
        series tail.
    """
    n_max = f_out.shape[0] - 1
    n_if = rel_radii.shape[0]
    f_out[0] = 0.0
    for n in range(1, n_max + 1):
        m = 2.0 * n + 1.0
        n1 = n + 1.0
        # Row 2 of M = A_1 A_2 ... A_{N-1} (Zhang 1995; each A_k divided by 2n+1,
        # which cancels the (2n+1)^(N-1) of the numerator). The (1,2) entry of A_k holds
        # 1/p_k^(2n+1) and the (2,1) entry p_k^(2n+1); carrying the first component as
        # u1 = v1 / p_k^(2n+1) leaves only ratios (p_{k-1}/p_k)^(2n+1) < 1, so nothing
        # overflows for any n or radius (underflow to 0 is the correct limit).
        u1 = 0.0
        u2 = 1.0
        p_prev = 0.0
        for k in range(n_if):
            p = rel_radii[k]
            c = cond_ratios[k]
            v1 = 0.0
            if k > 0:
                v1 = u1 * (p_prev / p) ** m
            a11 = (n + n1 * c) / m
            a12 = n1 * (c - 1.0) / m
            a21 = n * (c - 1.0) / m
            a22 = (n1 + n * c) / m
            u1 = v1 * a11 + u2 * a21
            u2 = v1 * a12 + u2 * a22
            p_prev = p
        m21 = 0.0
        if n_if > 0:
            m21 = u1 * p_prev**m
        f_out[n] = n / (n * u2 + n1 * m21)
    # Suffix maximum of the ratios f_{m+1}/f_m (for the geometric tail bound).
    last = 1.0
    if n_max >= 2:
        last = max(1.0, abs(f_out[n_max] / f_out[n_max - 1]))
    ratio_sup_out[0] = 0.0
    ratio_sup_out[n_max] = last
    for n in range(n_max - 1, 0, -1):
        r = abs(f_out[n + 1] / f_out[n])
        ratio_sup_out[n] = max(r, ratio_sup_out[n + 1])


@numba.njit(cache=True, parallel=True)
def eeg_sphere_series(
    elec_dirs,
    dipoles_rel,
    outer_radius,
    gain,
    f,
    ratio_sup,
    rtol,
    max_terms,
    out,
    n_terms_out,
    tail_out,
):
    """Potential lead field of dipoles in concentric spheres (exact series, raw potentials).

    Parameters
    ----------
    elec_dirs : ndarray, shape (n_electrodes, 3)
        Unit vectors from the sphere centre to the electrodes (electrodes sit on the outer
        sphere of radius ``outer_radius``).
    dipoles_rel : ndarray, shape (n_dipoles, 3)
        Dipole positions relative to the centre, metres, all inside the innermost sphere.
    outer_radius : float
        R, metres.
    gain : float
        1 / (4 pi s_N R^2), V per A*m.
    f : ndarray, shape (>= max_terms + 3,)
        Layer factors from :func:`sphere_coefficients` (``f[n]`` = f_n).
    ratio_sup : ndarray, shape like ``f``
        Suffix maxima of |f_{n+1}/f_n| from :func:`sphere_coefficients`.
    rtol : float
        Stop when the bound on the remaining terms is <= rtol times the dipole's scale.
    max_terms : int
        Upper limit of terms per dipole.
    out : ndarray, shape (n_electrodes, 3 * n_dipoles)
        Output lead field, columns dipole-major [x, y, z].
    n_terms_out : ndarray of int64, shape (n_dipoles,)
        Output: terms summed per dipole.
    tail_out : ndarray, shape (n_dipoles,)
        Output: bound on the omitted terms relative to the dipole's scale (max over
        electrodes and unit orientations of |V|).
    """
    n_e = elec_dirs.shape[0]
    n_d = dipoles_rel.shape[0]
    for j in numba.prange(n_d):
        work = np.empty((6, n_e))
        xs = work[0]  # cos g per electrode
        pm1 = work[1]  # P_{n-1}
        pm2 = work[2]  # P_{n-2}
        dpm1 = work[3]  # P'_{n-1}
        acc_a = work[4]  # sum n w_n P_n
        acc_d = work[5]  # sum w_n P_n'
        qx = dipoles_rel[j, 0]
        qy = dipoles_rel[j, 1]
        qz = dipoles_rel[j, 2]
        b = math.sqrt(qx * qx + qy * qy + qz * qz)
        if b > 0.0:
            rx = qx / b
            ry = qy / b
            rz = qz / b
        else:
            # Any axis works at the centre: only n = 1 contributes and there the radial and
            # tangential parts recombine to Q.e^ (see module docstring).
            rx = 0.0
            ry = 0.0
            rz = 1.0
        beta = b / outer_radius
        for e in range(n_e):
            x = elec_dirs[e, 0] * rx + elec_dirs[e, 1] * ry + elec_dirs[e, 2] * rz
            xs[e] = min(1.0, max(-1.0, x))
            pm1[e] = 1.0
            pm2[e] = 0.0
            dpm1[e] = 0.0
            acc_a[e] = 0.0
            acc_d[e] = 0.0
        bpow = 1.0  # beta^(n-1)
        tail = math.inf
        scale2 = 0.0
        n_used = 0
        for n in range(1, max_terms + 1):
            w = (2.0 * n + 1.0) / n * bpow * f[n]
            wn = w * n
            inv_n = 1.0 / n
            c_a = (2.0 * n - 1.0) * inv_n
            c_b = (n - 1.0) * inv_n
            scale2 = 0.0
            for e in range(n_e):
                x = xs[e]
                # Bonnet's recurrence (DLMF 14.10.3 with mu = 0) and the Legendre identity
                # P_n' = x P_{n-1}' + n P_{n-1}: both stable on [-1, 1], finite at x = +-1.
                p = c_a * x * pm1[e] - c_b * pm2[e]
                dp = x * dpm1[e] + n * pm1[e]
                pm2[e] = pm1[e]
                pm1[e] = p
                dpm1[e] = dp
                a = acc_a[e] + wn * p
                d = acc_d[e] + w * dp
                acc_a[e] = a
                acc_d[e] = d
                # |L|^2 / gain^2 = A^2 + (sin g D)^2: max |V| over unit orientations.
                s2 = a * a + (1.0 - x * x) * d * d
                if s2 > scale2:
                    scale2 = s2
            n_used = n
            # Every later term is bounded, at every electrode and unit orientation, by
            # B_m = (2m+1) beta^(m-1) |f_m| because n^2 P_n^2 + (P_n^1)^2 <= n^2 (Unsoeld's
            # addition theorem). Their ratio is <= rho for m > n, hence a geometric bound.
            b_next = (2.0 * n + 3.0) * bpow * beta * abs(f[n + 1])
            if b_next == 0.0:
                tail = 0.0
            else:
                rho = beta * (2.0 * n + 5.0) / (2.0 * n + 3.0) * ratio_sup[n + 1]
                if rho < 1.0:
                    tail = b_next / (1.0 - rho)
                else:
                    tail = math.inf
            if tail <= rtol * math.sqrt(scale2):
                break
            bpow *= beta
        scale = math.sqrt(scale2)
        if tail == 0.0:
            tail_out[j] = 0.0
        elif scale > 0.0:
            tail_out[j] = tail / scale
        else:
            tail_out[j] = math.inf
        n_terms_out[j] = n_used
        for e in range(n_e):
            d = acc_d[e]
            c_r = gain * (acc_a[e] - xs[e] * d)
            c_e = gain * d
            out[e, 3 * j] = c_r * rx + c_e * elec_dirs[e, 0]
            out[e, 3 * j + 1] = c_r * ry + c_e * elec_dirs[e, 1]
            out[e, 3 * j + 2] = c_r * rz + c_e * elec_dirs[e, 2]
