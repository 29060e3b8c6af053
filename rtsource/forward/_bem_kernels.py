"""numba kernels of the boundary-element forward model (rtsource.forward.bem).

Plain functions over arrays and scalars that write into preallocated outputs (per-thread
work space included); no validation (the wrappers in :mod:`rtsource.forward.bem` check
every input) and no allocation inside the loops. Each kernel has a plain-NumPy twin in ``tests/forward/test_bem.py``.

Triangle integrals with linear (hat) basis functions, field point x, triangle vertices
v_0, v_1, v_2 (counter-clockwise seen from outside, unit normal n, area A), y_i = v_i - x,
l_i = |y_i|; edge e runs from v_e to v_(e+1) with unit direction u_e and length L_e, outward
in-plane normal m_e = u_e x n; lambda_k is the barycentric coordinate of vertex k and
g_k = grad lambda_k = n x (v_(k+2) - v_(k+1)) / (2A) (in-plane, constant).

* Solid angle (Van Oosterom & Strackee 1983, IEEE TBME 30:125):
  W = 2 atan2(y_0.(y_1 x y_2), l_0 l_1 l_2 + l_0 y_1.y_2 + l_1 y_0.y_2 + l_2 y_0.y_1).
* Edge integral of 1/R: I_e = int_e dl / |y - x| = ln[(l_(e+1) + y_(e+1).u_e) / (l_e + y_e.u_e)].
* Potential (double-layer) coefficients, the integral of lambda_k over the solid angle
  (de Munck 1992, IEEE TBME 39:986): with h = n.y_0 the height of the plane over x and
  x_p = x + h n the foot point, lambda_k = lambda_k(x_p) + g_k.(y - x_p), and the in-plane
  divergence theorem turns int (y - x_p)/R^3 dS into -sum_e m_e I_e, so

      c_k = lambda_k(x_p) W - h sum_e (g_k.m_e) I_e,      sum_k c_k = W.

  (The same quantity as de Munck's w_k, written with per-triangle constants so the inner
  loop needs one solid angle and the three edge integrals, which neighbouring triangles
  share. Far from the point both come from short series instead of atan2 / log.)
* Magnetic (Geselowitz) coefficients: n x int lambda_k grad'(1/R) dS keeps only the in-plane
  gradient, which the divergence theorem turns into edge integrals of lambda_k / R and
  int_T 1/R dS = sum_e (m_e.y_e) I_e - h W (Graglia 1993, IEEE TAP 41:1448).
"""

from __future__ import annotations

import math

import numba
from numba import prange

#: mu0 / (4 pi) in T m / A.
MU0_OVER_4PI = 1e-7


@numba.njit(cache=True, inline="always")
def _solid_angle(triple, den):
    """2 atan2(triple, den), with a short series for the far triangles that dominate.

    For |z| = |triple/den| <= 0.1 the odd series of atan up to z^15 is exact to 1e-17
    relative (the next term is z^17/17) and costs a few multiplications instead of a libm
    atan2 call.
    """
    if den > 0.0 and abs(triple) <= 0.1 * den:
        z = triple / den
        z2 = z * z
        s = 1.0 / 15.0
        s = 1.0 / 13.0 - z2 * s
        s = 1.0 / 11.0 - z2 * s
        s = 1.0 / 9.0 - z2 * s
        s = 1.0 / 7.0 - z2 * s
        s = 1.0 / 5.0 - z2 * s
        s = 1.0 / 3.0 - z2 * s
        s = 1.0 - z2 * s
        return 2.0 * z * s
    return 2.0 * math.atan2(triple, den)


@numba.njit(cache=True, inline="always")
def _log_ratio(q, p):
    """ln(q / p) for q, p > 0; ln = 2 atanh(r), r = (q - p)/(q + p), by series when |r| <= 0.2.

    Terms up to r^23 leave an error below 0.2^24/25 ~ 7e-19 relative.
    """
    r = (q - p) / (q + p)
    if abs(r) <= 0.2:
        r2 = r * r
        s = 1.0 / 23.0
        s = 1.0 / 21.0 + r2 * s
        s = 1.0 / 19.0 + r2 * s
        s = 1.0 / 17.0 + r2 * s
        s = 1.0 / 15.0 + r2 * s
        s = 1.0 / 13.0 + r2 * s
        s = 1.0 / 11.0 + r2 * s
        s = 1.0 / 9.0 + r2 * s
        s = 1.0 / 7.0 + r2 * s
        s = 1.0 / 5.0 + r2 * s
        s = 1.0 / 3.0 + r2 * s
        s = 1.0 + r2 * s
        return 2.0 * r * s
    return math.log(q / p)


@numba.njit(cache=True, inline="always")
def _edge_log(ya0, ya1, ya2, la, yb0, yb1, yb2, lb, u0, u1, u2):
    """I_e = ln[(l_b + y_b.u) / (l_a + y_a.u)] without cancellation.

    (l + y.u)(l - y.u) = p^2, the squared distance of x from the edge's line, so a sum that
    cancels (y.u < 0) is replaced by p^2 / (l - y.u); when both do, p^2 drops out.
    """
    sa = ya0 * u0 + ya1 * u1 + ya2 * u2
    sb = yb0 * u0 + yb1 * u1 + yb2 * u2
    if sa >= 0.0:
        return _log_ratio(lb + sb, la + sa)
    if sb <= 0.0:
        return _log_ratio(la - sa, lb - sb)
    # the foot of x lies on the segment: p^2 from the cross product (no cancellation)
    c0 = ya1 * u2 - ya2 * u1
    c1 = ya2 * u0 - ya0 * u2
    c2 = ya0 * u1 - ya1 * u0
    p2 = c0 * c0 + c1 * c1 + c2 * c2
    return math.log((lb + sb) * (la - sa) / p2)


@numba.njit(cache=True, inline="always")
def _far_edge_log(la, sa, lb, sb):
    """I_e for an edge whose ends are both more than 3 edge lengths from the point.

    Taking the (l + y.u) form on the side the point faces keeps both sums away from
    cancellation, and then |r| = |(q - p)/(q + p)| <= 1/7, where ln(q/p) = 2 atanh(r) is its
    odd series to r^23 (error below 1e-19 relative).
    """
    if sa + sb >= 0.0:
        q = lb + sb
        p = la + sa
    else:
        q = la - sa
        p = lb - sb
    r = (q - p) / (q + p)
    r2 = r * r
    s = 1.0 / 23.0
    s = 1.0 / 21.0 + r2 * s
    s = 1.0 / 19.0 + r2 * s
    s = 1.0 / 17.0 + r2 * s
    s = 1.0 / 15.0 + r2 * s
    s = 1.0 / 13.0 + r2 * s
    s = 1.0 / 11.0 + r2 * s
    s = 1.0 / 9.0 + r2 * s
    s = 1.0 / 7.0 + r2 * s
    s = 1.0 / 5.0 + r2 * s
    s = 1.0 / 3.0 + r2 * s
    s = 1.0 + r2 * s
    return 2.0 * r * s


@numba.njit(cache=True, parallel=True, fastmath={"contract"})
def potential_coefficients(points, skip, vertices, edges, edge_dir, edge_len, tri_idx, tri_edges, inv_two_area, grad, grad_dot_m, scratch_v, scratch_e, out):
    """Accumulate the linear-collocation double-layer coefficients of one surface.

    out[p, j] += sum over triangles T containing vertex j of c_k(points[p], T)
    (module docstring), i.e. the solid angle integral of the hat function of vertex j seen
    from points[p]. Triangles containing vertex ``skip[p]`` are left out (their flat
    contribution is zero; the curvature part is the "auto solid angle" the caller adds).
    Distances to the vertices and the edge integrals are computed once per point and
    shared by the triangles around them (half the logarithms of a per-triangle loop).

    Parameters
    ----------
    points : ndarray, shape (n_points, 3)
        Field points, metres.
    skip : ndarray of int64, shape (n_points,)
        Vertex index that each point is, or -1.
    vertices : ndarray, shape (n_vertices, 3)
        The surface's vertices, metres.
    edges : ndarray of int64, shape (n_edges, 2)
        Vertex indices of each (undirected) edge.
    edge_dir : ndarray, shape (n_edges, 3)
        Unit vector from ``edges[:, 0]`` to ``edges[:, 1]``.
    edge_len : ndarray, shape (n_edges,)
        Edge lengths, metres.
    tri_idx : ndarray of int64, shape (n_tri, 3)
        Vertex indices of the triangles (counter-clockwise from outside).
    tri_edges : ndarray of int64, shape (n_tri, 3)
        Index of edge k (v_k -> v_(k+1)) of each triangle in ``edges``.
    inv_two_area : ndarray, shape (n_tri,)
        1 / (2 A), 1/m^2.
    grad : ndarray, shape (n_tri, 3, 3)
        g_k, gradient of the barycentric coordinate of vertex k, 1/m.
    grad_dot_m : ndarray, shape (n_tri, 3, 3)
        [T, k, e] = g_k . m_e, 1/m.
    scratch_v : ndarray, shape (n_threads, 4, n_vertices)
        Per-thread work space (numba.get_num_threads() rows), overwritten.
    scratch_e : ndarray, shape (n_threads, n_edges)
        Per-thread work space, overwritten.
    out : ndarray, shape (n_points, n_vertices)
        Accumulated into (not zeroed), dimensionless (steradians).
    """
    n_p = points.shape[0]
    n_t = tri_idx.shape[0]
    n_v = vertices.shape[0]
    n_e = edges.shape[0]
    for p in prange(n_p):
        x0 = points[p, 0]
        x1 = points[p, 1]
        x2 = points[p, 2]
        sk = skip[p]
        tid = numba.get_thread_id()
        rx = scratch_v[tid, 0]
        ry = scratch_v[tid, 1]
        rz = scratch_v[tid, 2]
        dist = scratch_v[tid, 3]
        elog = scratch_e[tid]
        for v in range(n_v):
            d0 = vertices[v, 0] - x0
            d1 = vertices[v, 1] - x1
            d2 = vertices[v, 2] - x2
            rx[v] = d0
            ry[v] = d1
            rz[v] = d2
            dist[v] = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
        for e in range(n_e):
            ia = edges[e, 0]
            ib = edges[e, 1]
            la = dist[ia]
            lb = dist[ib]
            ux = edge_dir[e, 0]
            uy = edge_dir[e, 1]
            uz = edge_dir[e, 2]
            far = 3.0 * edge_len[e]
            if la > far and lb > far:
                sa = rx[ia] * ux + ry[ia] * uy + rz[ia] * uz
                sb = rx[ib] * ux + ry[ib] * uy + rz[ib] * uz
                elog[e] = _far_edge_log(la, sa, lb, sb)
            elif ia == sk or ib == sk:
                elog[e] = 0.0  # only in skipped triangles
            else:
                elog[e] = _edge_log(rx[ia], ry[ia], rz[ia], la, rx[ib], ry[ib], rz[ib], lb, ux, uy, uz)
        for t in range(n_t):
            i0 = tri_idx[t, 0]
            i1 = tri_idx[t, 1]
            i2 = tri_idx[t, 2]
            if i0 == sk or i1 == sk or i2 == sk:
                continue
            a0 = rx[i0]
            a1 = ry[i0]
            a2 = rz[i0]
            b0 = rx[i1]
            b1 = ry[i1]
            b2 = rz[i1]
            c0 = rx[i2]
            c1 = ry[i2]
            c2 = rz[i2]
            la = dist[i0]
            lb = dist[i1]
            lc = dist[i2]
            # y_0 . (y_1 x y_2) = 2 A h
            triple = a0 * (b1 * c2 - b2 * c1) + a1 * (b2 * c0 - b0 * c2) + a2 * (b0 * c1 - b1 * c0)
            den = la * lb * lc + la * (b0 * c0 + b1 * c1 + b2 * c2) + lb * (a0 * c0 + a1 * c1 + a2 * c2) + lc * (a0 * b0 + a1 * b1 + a2 * b2)
            w = _solid_angle(triple, den)
            h = triple * inv_two_area[t]
            e0 = elog[tri_edges[t, 0]]
            e1 = elog[tri_edges[t, 1]]
            e2 = elog[tri_edges[t, 2]]
            # lambda_k(x_p) = g_k . (x - v_(k+1)) = -g_k . y_(k+1)
            lam0 = -(grad[t, 0, 0] * b0 + grad[t, 0, 1] * b1 + grad[t, 0, 2] * b2)
            lam1 = -(grad[t, 1, 0] * c0 + grad[t, 1, 1] * c1 + grad[t, 1, 2] * c2)
            lam2 = -(grad[t, 2, 0] * a0 + grad[t, 2, 1] * a1 + grad[t, 2, 2] * a2)
            out[p, i0] += lam0 * w - h * (grad_dot_m[t, 0, 0] * e0 + grad_dot_m[t, 0, 1] * e1 + grad_dot_m[t, 0, 2] * e2)
            out[p, i1] += lam1 * w - h * (grad_dot_m[t, 1, 0] * e0 + grad_dot_m[t, 1, 1] * e1 + grad_dot_m[t, 1, 2] * e2)
            out[p, i2] += lam2 * w - h * (grad_dot_m[t, 2, 0] * e0 + grad_dot_m[t, 2, 1] * e1 + grad_dot_m[t, 2, 2] * e2)


@numba.njit(cache=True, parallel=True, fastmath={"contract"})
def magnetic_coefficients(points, point_normals, tri_pts, tri_idx, tri_normal, edge_dir, edge_len, edge_normal, grad, scale, out):
    """Accumulate the Geselowitz volume-current field coefficients of one surface.

    out[p, j] += scale * point_normals[p] . (n_T x int_T lambda_j (r - r')/|r - r'|^3 dS')
    summed over the triangles T of vertex j, for field points r = points[p] off the
    surface. With ``scale = -mu0/(4 pi) (sigma_in - sigma_out)`` the normal component of the
    volume-current field is ``out @ V`` for vertex potentials V (Geselowitz 1970, Biophys J
    10:39, linear basis as Ferguson et al. 1994, IEEE TBME 41:455).

    Parameters
    ----------
    points : ndarray, shape (n_points, 3)
        Field points, metres, not on the surface.
    point_normals : ndarray, shape (n_points, 3)
        Unit directions of the field component wanted.
    tri_pts, tri_idx, edge_dir :
        As :func:`potential_coefficients`.
    tri_normal : ndarray, shape (n_tri, 3)
        Unit outward triangle normals.
    edge_len : ndarray, shape (n_tri, 3)
        L_e, metres.
    edge_normal : ndarray, shape (n_tri, 3, 3)
        m_e, unit outward in-plane edge normals.
    grad : ndarray, shape (n_tri, 3, 3)
        g_k, 1/m.
    scale : float
        Factor applied to every coefficient (T per V).
    out : ndarray, shape (n_points, n_vertices)
        Accumulated into.
    """
    n_p = points.shape[0]
    n_t = tri_idx.shape[0]
    for p in prange(n_p):
        x0 = points[p, 0]
        x1 = points[p, 1]
        x2 = points[p, 2]
        q0 = point_normals[p, 0]
        q1 = point_normals[p, 1]
        q2 = point_normals[p, 2]
        for t in range(n_t):
            a0 = tri_pts[t, 0, 0] - x0
            a1 = tri_pts[t, 0, 1] - x1
            a2 = tri_pts[t, 0, 2] - x2
            b0 = tri_pts[t, 1, 0] - x0
            b1 = tri_pts[t, 1, 1] - x1
            b2 = tri_pts[t, 1, 2] - x2
            c0 = tri_pts[t, 2, 0] - x0
            c1 = tri_pts[t, 2, 1] - x1
            c2 = tri_pts[t, 2, 2] - x2
            la = math.sqrt(a0 * a0 + a1 * a1 + a2 * a2)
            lb = math.sqrt(b0 * b0 + b1 * b1 + b2 * b2)
            lc = math.sqrt(c0 * c0 + c1 * c1 + c2 * c2)
            triple = a0 * (b1 * c2 - b2 * c1) + a1 * (b2 * c0 - b0 * c2) + a2 * (b0 * c1 - b1 * c0)
            den = la * lb * lc + la * (b0 * c0 + b1 * c1 + b2 * c2) + lb * (a0 * c0 + a1 * c1 + a2 * c2) + lc * (a0 * b0 + a1 * b1 + a2 * b2)
            w = _solid_angle(triple, den)
            n0 = tri_normal[t, 0]
            n1 = tri_normal[t, 1]
            n2 = tri_normal[t, 2]
            h = n0 * a0 + n1 * a1 + n2 * a2
            # edge integrals of 1/R and of the rising hat t/R (t = 0 at v_e, 1 at v_(e+1)):
            # int_0^L s/R ds = (l_b - l_a) - (y_a.u) I  (Graglia 1993)
            i0 = _edge_log(a0, a1, a2, la, b0, b1, b2, lb, edge_dir[t, 0, 0], edge_dir[t, 0, 1], edge_dir[t, 0, 2])
            i1 = _edge_log(b0, b1, b2, lb, c0, c1, c2, lc, edge_dir[t, 1, 0], edge_dir[t, 1, 1], edge_dir[t, 1, 2])
            i2 = _edge_log(c0, c1, c2, lc, a0, a1, a2, la, edge_dir[t, 2, 0], edge_dir[t, 2, 1], edge_dir[t, 2, 2])
            sa0 = a0 * edge_dir[t, 0, 0] + a1 * edge_dir[t, 0, 1] + a2 * edge_dir[t, 0, 2]
            sa1 = b0 * edge_dir[t, 1, 0] + b1 * edge_dir[t, 1, 1] + b2 * edge_dir[t, 1, 2]
            sa2 = c0 * edge_dir[t, 2, 0] + c1 * edge_dir[t, 2, 1] + c2 * edge_dir[t, 2, 2]
            j0 = ((lb - la) - sa0 * i0) / edge_len[t, 0]
            j1 = ((lc - lb) - sa1 * i1) / edge_len[t, 1]
            j2 = ((la - lc) - sa2 * i2) / edge_len[t, 2]
            # d_e = m_e . y_e: in-plane distance of the foot point inside edge e
            d0 = edge_normal[t, 0, 0] * a0 + edge_normal[t, 0, 1] * a1 + edge_normal[t, 0, 2] * a2
            d1 = edge_normal[t, 1, 0] * b0 + edge_normal[t, 1, 1] * b1 + edge_normal[t, 1, 2] * b2
            d2 = edge_normal[t, 2, 0] * c0 + edge_normal[t, 2, 1] * c1 + edge_normal[t, 2, 2] * c2
            s1 = d0 * i0 + d1 * i1 + d2 * i2 - h * w  # int_T 1/R dS
            # c = q x n_T: q.(n_T x a) = a.(q x n_T)
            k0 = q1 * n2 - q2 * n1
            k1 = q2 * n0 - q0 * n2
            k2 = q0 * n1 - q1 * n0
            cm0 = k0 * edge_normal[t, 0, 0] + k1 * edge_normal[t, 0, 1] + k2 * edge_normal[t, 0, 2]
            cm1 = k0 * edge_normal[t, 1, 0] + k1 * edge_normal[t, 1, 1] + k2 * edge_normal[t, 1, 2]
            cm2 = k0 * edge_normal[t, 2, 0] + k1 * edge_normal[t, 2, 1] + k2 * edge_normal[t, 2, 2]
            cg0 = k0 * grad[t, 0, 0] + k1 * grad[t, 0, 1] + k2 * grad[t, 0, 2]
            cg1 = k0 * grad[t, 1, 0] + k1 * grad[t, 1, 1] + k2 * grad[t, 1, 2]
            cg2 = k0 * grad[t, 2, 0] + k1 * grad[t, 2, 1] + k2 * grad[t, 2, 2]
            # vertex k: falling hat on edge k, rising hat on edge k-1, minus g_k int 1/R
            out[p, tri_idx[t, 0]] += scale * (cm0 * (i0 - j0) + cm2 * j2 - cg0 * s1)
            out[p, tri_idx[t, 1]] += scale * (cm1 * (i1 - j1) + cm0 * j0 - cg1 * s1)
            out[p, tri_idx[t, 2]] += scale * (cm2 * (i2 - j2) + cm1 * j1 - cg2 * s1)


@numba.njit(cache=True, parallel=True)
def infinite_potentials(points, dipoles, out):
    """Infinite-medium potentials of unit dipoles times the conductivity.

    out[i, 3 j + c] = (points[i] - dipoles[j])_c / (4 pi |points[i] - dipoles[j]|^3), the
    potential of a unit dipole along axis c in a medium of unit conductivity (V per A*m
    times S/m; Hamalainen & Sarvas 1989, eq. 6).

    Parameters
    ----------
    points : ndarray, shape (n_points, 3)
        Metres.
    dipoles : ndarray, shape (n_dipoles, 3)
        Metres, none on a point.
    out : ndarray, shape (n_points, 3 * n_dipoles)
        Overwritten.
    """
    n_p = points.shape[0]
    n_d = dipoles.shape[0]
    k = 1.0 / (4.0 * math.pi)
    for i in prange(n_p):
        x0 = points[i, 0]
        x1 = points[i, 1]
        x2 = points[i, 2]
        for j in range(n_d):
            d0 = x0 - dipoles[j, 0]
            d1 = x1 - dipoles[j, 1]
            d2 = x2 - dipoles[j, 2]
            r2 = d0 * d0 + d1 * d1 + d2 * d2
            f = k / (r2 * math.sqrt(r2))
            out[i, 3 * j] = d0 * f
            out[i, 3 * j + 1] = d1 * f
            out[i, 3 * j + 2] = d2 * f


@numba.njit(cache=True, parallel=True)
def primary_field(points, point_normals, dipoles, out):
    """Normal component of the infinite-medium (primary) magnetic field of unit dipoles.

    B0 = mu0/(4 pi) Q x (r - r_q)/|r - r_q|^3 (Biot-Savart; Sarvas 1987 eq. 10), so
    out[i, 3 j + c] = mu0/(4 pi) ((r_i - r_j) x n_i)_c / |r_i - r_j|^3 in T per A*m.

    Parameters
    ----------
    points : ndarray, shape (n_points, 3)
        Metres.
    point_normals : ndarray, shape (n_points, 3)
        Unit vectors.
    dipoles : ndarray, shape (n_dipoles, 3)
        Metres.
    out : ndarray, shape (n_points, 3 * n_dipoles)
        Overwritten.
    """
    n_p = points.shape[0]
    n_d = dipoles.shape[0]
    for i in prange(n_p):
        x0 = points[i, 0]
        x1 = points[i, 1]
        x2 = points[i, 2]
        q0 = point_normals[i, 0]
        q1 = point_normals[i, 1]
        q2 = point_normals[i, 2]
        for j in range(n_d):
            d0 = x0 - dipoles[j, 0]
            d1 = x1 - dipoles[j, 1]
            d2 = x2 - dipoles[j, 2]
            r2 = d0 * d0 + d1 * d1 + d2 * d2
            f = MU0_OVER_4PI / (r2 * math.sqrt(r2))
            out[i, 3 * j] = (d1 * q2 - d2 * q1) * f
            out[i, 3 * j + 1] = (d2 * q0 - d0 * q2) * f
            out[i, 3 * j + 2] = (d0 * q1 - d1 * q0) * f
