"""Checking and describing the positions a forward model is asked for (shared by every forward model)."""

from __future__ import annotations

import numpy as np

from ..errors import ForwardError
from ..geometry import Frame, Points, check_same_frame


def positions_m(value, name: str, frame: Frame | None = None, *, model: str = "the head model") -> np.ndarray:
    """(n, 3) finite float positions in metres, C-contiguous.

    Parameters
    ----------
    value : array-like of shape (n, 3) or (3,), or Points
        Positions in metres (a Points is converted, after checking its frame).
    name : str
        The argument's name, for messages.
    frame : Frame, optional
        The model's frame, checked against a Points' frame.
    model : str
        What the frame belongs to, for messages.
    """
    if isinstance(value, Points):
        if frame is not None:
            check_same_frame(value.frame, frame, name, model)
        pos = np.asarray(value.positions_m, dtype=float)
    else:
        try:
            pos = np.asarray(value, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ForwardError(f"{name} must be numeric positions of shape (n, 3) in metres: {exc}") from None
        if pos.ndim == 1 and pos.size == 3:
            pos = pos[None, :]
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ForwardError(f"{name} must have shape (n, 3) in metres, got shape {pos.shape}")
    bad = np.flatnonzero(~np.all(np.isfinite(pos), axis=1))
    if bad.size:
        k = int(bad[0])
        raise ForwardError(f"{name}[{k}] = {pos[k].tolist()} is not finite ({bad.size} such rows); fix or drop that row")
    return np.ascontiguousarray(pos)


def format_mm(point_m) -> str:
    """A position in metres as "(x, y, z) mm" with one decimal, for messages."""
    return "(" + ", ".join(f"{x * 1e3:.1f}" for x in np.asarray(point_m, float)) + ") mm"


def list_distances(index: np.ndarray, dist_m: np.ndarray, labels=None, limit: int = 8) -> str:
    """"name 12.3 mm, ..." for the points ``index`` (at most ``limit``), for messages.

    Parameters
    ----------
    index : ndarray of int
        The points to list.
    dist_m : ndarray, shape (n_points,)
        A distance per point, metres.
    labels : sequence of str, optional
        Point names (default "#i").
    """
    items = []
    for i in index[:limit]:
        name = labels[i] if labels is not None else f"#{int(i)}"
        items.append(f"{name} {dist_m[i] * 1e3:.1f} mm")
    more = f" and {len(index) - limit} more" if len(index) > limit else ""
    return ", ".join(items) + more
