"""MNE-Python objects in and out of rtsource (optional extra ``mne``).

Four bridges, all matching channels by name, never by position:

``bundle_from_forward``
    Our inverse on their forward: an MNE ``Info`` + ``Forward`` + noise ``Covariance`` (and
    optionally a montage for the recorded electrode positions) become an
    :class:`~rtsource.bundle.OperatorBundle` through
    :func:`rtsource.inverse.minimum_norm.make_inverse_operator`.
``bundle_from_inverse``
    Their inverse, our streaming: an MNE ``InverseOperator`` is prepared
    (``mne.minimum_norm.prepare_inverse_operator``) and its kernel and noise normalisation
    are extracted so that the loop's pooled / normalised output equals MNE's
    ``apply_inverse_raw``.
``labels_to_rois``
    MNE ``Label``s as rtsource ROIs (source indices of a bundle).
``to_source_estimate``
    Published source blocks (timestamps + values) as an MNE ``SourceEstimate`` for
    offline plotting.

Conventions
-----------
Gain columns: MNE's free-orientation gain is source-major x, y, z, which is rtsource's
"dipole-major x, y, z" convention, so columns are used as they are. The frame is the
forward's ``coord_frame``: MNE computes forwards in the **head** frame (Neuromag head
coordinates from the fiducials), so bundles made here have ``sources.frame == Frame.HEAD``
(``Frame.MRI`` if a forward is in MRI coordinates), with positions in metres. Surface
sources whose source space carries patch information get MNE's patch-averaged normals
(``use_cps=True``), as MNE's own inverse does; anything else gets the vertex normals.

Reference: rtsource folds the re-referencing matrix ``M`` into the kernel. From an MNE
``Info`` it is the SSP projector of ``info['projs'] + cov['projs']`` restricted, by name,
to the operator's channels (MNE's ``make_projector``). The bundle's ``reference`` then reads

- ``"average"``: the projector is the average reference over the operator's channels;
- ``"projectors"``: other SSP projectors (their descriptions are in the provenance);
- ``"none"``: no projector (the data are referenced upstream, ``custom_ref_applied``, or MEG);
- a channel name, or ``"average"``, when the caller passes ``reference=`` explicitly.

MNE-Python imports only inside these functions (``import rtsource.interop`` stays cheap).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Sequence

import numpy as np

from .. import __version__
from ..anatomy.source_space import SourceSpace
from ..bundle import OperatorBundle
from ..errors import ChannelError, ConfigError, InverseError, RtsourceError
from ..geometry import Frame
from ..inverse.covariance import METHODS as COV_METHODS
from ..inverse.covariance import NoiseCovariance
from ..inverse.minimum_norm import _local_frames, average_reference_matrix, make_inverse_operator, reference_to_channel_matrix

logger = logging.getLogger(__name__)

#: MNE channel type -> (rtsource channel type, SI unit of the data MNE holds).
CHANNEL_KINDS = {"eeg": ("eeg", "V"), "mag": ("mag", "T"), "grad": ("grad", "T/m")}

# FIFF constants (mne.io.constants.FIFF), spelled out so that importing this module does not import MNE
_FIFFV_COORD_HEAD, _FIFFV_COORD_MRI = 4, 5
_FIFFV_MNE_FREE_ORI = 2
_FIFFV_MNE_SURF_LEFT_HEMI, _FIFFV_MNE_SURF_RIGHT_HEMI = 101, 102


class MissingDependency(RtsourceError, ImportError):
    """MNE-Python is needed for this and is not installed."""


def _mne():
    try:
        import mne
    except ImportError:
        raise MissingDependency("this needs MNE-Python; install it with `pip install rtsource[mne]` (or `pip install mne`)") from None
    return mne


def _short(items: Sequence, n: int = 6) -> str:
    items = [str(i) for i in items]
    return ", ".join(items) if len(items) <= n else ", ".join(items[:n]) + f", ... ({len(items)} in all)"


# ---- channels, projectors, covariance ------------------------------------------------------

def _channel_kind(info, name: str) -> str:
    mne = _mne()
    return mne.channel_type(info, info["ch_names"].index(name))


def _pick_names(fwd_info, info, cov, ch_type: str) -> list[str]:
    """The forward's channels of ``ch_type`` that are good in ``info`` and ``cov``, forward order."""
    if ch_type not in CHANNEL_KINDS:
        raise ConfigError(f"ch_type {ch_type!r} is not one of {', '.join(CHANNEL_KINDS)}; rtsource whitens one sensor type per operator")
    names = [c for c in fwd_info["ch_names"] if _channel_kind(fwd_info, c) == ch_type]
    if not names:
        raise ChannelError(f"the forward solution has no {ch_type!r} channels (it has {_short(fwd_info['ch_names'])}); pass the ch_type it was computed for")
    bads = set(info["bads"]) | set(cov["bads"]) | set(fwd_info["bads"])
    dropped = [c for c in names if c in bads]
    if dropped:
        logger.info("leaving out %d bad channel(s): %s", len(dropped), _short(dropped))
    names = [c for c in names if c not in bads]
    missing_info = [c for c in names if c not in info["ch_names"]]
    if missing_info:
        raise ChannelError(
            f"{len(missing_info)} channel(s) of the forward are not in the Info ({_short(missing_info)}); "
            "pass the Info of the recording the forward was computed for, or mark them bad"
        )
    missing_cov = [c for c in names if c not in cov.ch_names]
    if missing_cov:
        raise ChannelError(
            f"{len(missing_cov)} channel(s) of the forward are not in the noise covariance ({_short(missing_cov)}); "
            "estimate the covariance on the same channels, or mark them bad in the Info"
        )
    if len(names) < 2:
        raise ChannelError(f"only {len(names)} good {ch_type!r} channel(s) remain; an inverse needs several")
    return names


def projector_matrix(projs, ch_names: Sequence[str]) -> tuple[np.ndarray, int]:
    """The SSP projector ``I - U U^T`` of ``projs`` on ``ch_names``, matched by name.

    As MNE-Python's ``make_projector``: each projection vector is restricted to the named
    channels (entries of other channels are dropped), rescaled to unit norm, and the set is
    re-orthogonalised, dropping vectors with a relative singular value below 1e-2.

    Returns
    -------
    matrix : ndarray, shape (n_chan, n_chan)
    n_components : int
        Number of directions projected out.
    """
    names = list(ch_names)
    where = {c: i for i, c in enumerate(names)}
    vecs = []
    for p in projs:
        data = p["data"]
        cols = list(data["col_names"])
        rows = np.atleast_2d(np.asarray(data["data"], dtype=np.float64))
        for row in rows:
            v = np.zeros(len(names))
            for j, c in enumerate(cols):
                if c in where:
                    v[where[c]] = row[j]
            norm = np.linalg.norm(v)
            if norm > 0:
                vecs.append(v / norm)
    if not vecs:
        return np.eye(len(names)), 0
    u, s, _ = np.linalg.svd(np.column_stack(vecs), full_matrices=False)
    k = int(np.sum(s / s[0] > 1e-2))
    u = u[:, :k]
    return np.eye(len(names)) - u @ u.T, k


def _reference(info, cov, names: list[str], reference: str | None) -> tuple[np.ndarray, str, list[str]]:
    """The re-referencing matrix M and the bundle's reference label."""
    n = len(names)
    if reference is not None:
        if reference == "average":
            return average_reference_matrix(n), "average", []
        if reference == "none":
            return np.eye(n), "none", []
        if reference in names:
            return reference_to_channel_matrix(names, reference), reference, []
        raise ConfigError(f"reference {reference!r} is not 'average', 'none' or one of the channels ({_short(names)})")
    projs = list(info["projs"]) + [p for p in cov["projs"] if p["desc"] not in {q["desc"] for q in info["projs"]}]
    m, k = projector_matrix(projs, names)
    descs = [p["desc"] for p in projs]
    if k == 0:
        return np.eye(n), "none", []
    avg = average_reference_matrix(n)
    if k == 1 and np.allclose(m, avg, atol=1e-10):
        return avg, "average", descs
    return m, "projectors", descs


def noise_covariance_from_mne(cov, ch_names: Sequence[str]) -> NoiseCovariance:
    """An MNE ``Covariance`` on ``ch_names`` (picked and ordered by name) as a NoiseCovariance."""
    names = list(ch_names)
    missing = [c for c in names if c not in cov.ch_names]
    if missing:
        raise ChannelError(f"the noise covariance lacks {len(missing)} channel(s): {_short(missing)}")
    idx = [cov.ch_names.index(c) for c in names]
    data = np.asarray(cov.data, dtype=np.float64)
    full = _square(cov)
    method = cov.get("method") if hasattr(cov, "get") else None
    if data.ndim == 1:
        ours = "diagonal"
    else:
        ours = method if method in COV_METHODS else "empirical"
    return NoiseCovariance(full[np.ix_(idx, idx)], tuple(names), int(cov["nfree"] or 0), ours, 0.0)


# ---- sources ---------------------------------------------------------------------------------

def _frame_of(coord_frame: int) -> Frame:
    if coord_frame == _FIFFV_COORD_HEAD:
        return Frame.HEAD
    if coord_frame == _FIFFV_COORD_MRI:
        return Frame.MRI
    raise InverseError(f"MNE coordinate frame {coord_frame} is neither head (4) nor MRI (5); rtsource cannot place these sources")


def _src_normals(s, use_cps: bool) -> np.ndarray:
    """MNE's source normals: patch-averaged for surface sources with patch info (``use_cps``)."""
    vertno = s["vertno"]
    if use_cps and s.get("patch_inds") is not None and s.get("pinfo") is not None:
        nn = np.array([s["nn"][s["pinfo"][s["patch_inds"][p]]].sum(axis=0) for p in range(len(vertno))])
    else:
        nn = np.array(s["nn"][vertno], dtype=np.float64)
    return nn / np.linalg.norm(nn, axis=1, keepdims=True)


def _src_areas(s) -> np.ndarray:
    """Cortical patch area per source in m^2 (0 where the source space has no patch info)."""
    vertno = s["vertno"]
    if s.get("tris") is None or s.get("tri_area") is None or s.get("pinfo") is None or s.get("patch_inds") is None:
        return np.zeros(len(vertno))
    dense = np.bincount(np.asarray(s["tris"]).ravel(), weights=np.repeat(np.asarray(s["tri_area"]), 3), minlength=len(s["rr"])) / 3.0
    return np.array([dense[s["pinfo"][s["patch_inds"][p]]].sum() for p in range(len(vertno))])


def _to_frame(points: np.ndarray, src_frame: int, want: Frame, trans, vectors: bool) -> np.ndarray:
    """Points (or directions) from a source space's frame into ``want`` (head/MRI) with ``trans``."""
    have = _frame_of(src_frame)
    if have == want:
        return points
    if trans is None:
        raise InverseError(f"the source space is in the {have.value} frame and the operator in {want.value}, but no mri_head_t transform is available")
    t = np.asarray(trans["trans"], dtype=np.float64)
    if _frame_of(trans["from"]) != have:
        t = np.linalg.inv(t)
    out = points @ t[:3, :3].T
    return out if vectors else out + t[:3, 3]


def source_space_from_mne(src, *, frame: Frame, trans=None, use_cps: bool = True, name: str | None = None) -> tuple[SourceSpace, dict]:
    """An rtsource SourceSpace (in ``frame``, metres) from MNE ``SourceSpaces``.

    Returns
    -------
    sources : SourceSpace
        Positions, normals, patch areas, hemispheres (0 lh, 1 rh, -1 volume/discrete) and
        the decimated triangulation of surface sources, in MNE's source order.
    info : dict
        ``vertices`` (list of lists of MNE vertex numbers per source space), ``kinds``
        (``"lh"``, ``"rh"``, ``"vol"``, ``"discrete"``) and ``subject`` -- kept in the bundle's
        provenance for labels and SourceEstimates.
    """
    pos, nrm, area, hemi, tris, vertices, kinds = [], [], [], [], [], [], []
    offset = 0
    for s in src:
        vertno = np.asarray(s["vertno"], dtype=np.int64)
        p = _to_frame(np.asarray(s["rr"][vertno], dtype=np.float64), s["coord_frame"], frame, trans, vectors=False)
        nn = _to_frame(_src_normals(s, use_cps), s["coord_frame"], frame, trans, vectors=True)
        pos.append(p)
        nrm.append(nn / np.linalg.norm(nn, axis=1, keepdims=True))
        area.append(_src_areas(s) if s["type"] == "surf" else np.zeros(len(vertno)))
        if s["type"] == "surf":
            h = 0 if s["id"] == _FIFFV_MNE_SURF_LEFT_HEMI else 1 if s["id"] == _FIFFV_MNE_SURF_RIGHT_HEMI else -1
            kinds.append({0: "lh", 1: "rh"}.get(h, "surf"))
        else:
            h = -1
            kinds.append("vol" if s["type"] == "vol" else "discrete")
        hemi.append(np.full(len(vertno), h))
        if s["type"] == "surf" and s.get("use_tris") is not None and len(s["use_tris"]):
            remap = np.full(len(s["rr"]), -1, dtype=np.int64)
            remap[vertno] = np.arange(len(vertno)) + offset
            t = remap[np.asarray(s["use_tris"])]
            tris.append(t[np.all(t >= 0, axis=1)])
        vertices.append(vertno.tolist())
        offset += len(vertno)
    subject = src[0].get("subject_his_id") if len(src) else None
    sources = SourceSpace(
        np.vstack(pos),
        np.vstack(nrm),
        np.concatenate(area),
        np.concatenate(hemi),
        frame,
        name or f"mne-{'+'.join(kinds)}-{offset}" + (f"-{subject}" if subject else ""),
        np.vstack(tris) if tris else np.zeros((0, 3), np.int64),
    )
    return sources, {"vertices": vertices, "kinds": kinds, "subject": subject or ""}


def _channel_positions(info, names: list[str], frame: Frame) -> np.ndarray:
    """Sensor positions (m) in ``frame``: EEG locations are head-frame; MEG coils device-frame."""
    out = np.zeros((len(names), 3))
    dev_head = info.get("dev_head_t")
    for i, c in enumerate(names):
        ch = info["chs"][info["ch_names"].index(c)]
        loc = np.asarray(ch["loc"][:3], dtype=np.float64)
        if ch["coord_frame"] == 1 and dev_head is not None:  # FIFFV_COORD_DEVICE
            t = np.asarray(dev_head["trans"])
            loc = t[:3, :3] @ loc + t[:3, 3]
        out[i] = loc
    if frame == Frame.MRI and info.get("dev_head_t") is not None:
        logger.info("channel positions are recorded in the head frame while the sources are in MRI coordinates")
    return np.nan_to_num(out)


# ---- (a) our inverse on their forward ----------------------------------------------------

def bundle_from_forward(
    info,
    forward,
    noise_cov,
    *,
    montage=None,
    method: str = "dSPM",
    snr: float = 3.0,
    lambda2: float | None = None,
    loose: float = 0.2,
    depth: float | None = 0.8,
    fixed: bool = False,
    depth_limit: float | None = 10.0,
    rank: int | None = None,
    ch_type: str = "eeg",
    reference: str | None = None,
    use_cps: bool = True,
    sfreq: float | None = None,
) -> OperatorBundle:
    """Build an rtsource bundle from MNE-Python's ``Info``, ``Forward`` and ``Covariance``.

    Parameters
    ----------
    info : mne.Info
        Of the recording the stream will carry: bad channels, projectors (the average
        reference projector), sampling rate.
    forward : mne.Forward
        Any orientation that can be converted to free orientation in the forward's frame
        (a fixed-orientation forward must have been computed free: MNE keeps the original).
    noise_cov : mne.Covariance
        Noise covariance; channels are picked by name.
    montage : mne.channels.DigMontage, optional
        Electrode positions to record in the bundle (for display and QC) instead of the
        Info's.
    method, snr, lambda2, loose, depth, fixed, depth_limit, rank
        As :func:`rtsource.inverse.minimum_norm.make_inverse_operator` (its defaults are
        MNE-Python's: ``loose=0.2``, ``depth=0.8``, ``limit=10``).
    ch_type : {"eeg", "mag", "grad"}
        The one sensor type of the operator.
    reference : str, optional
        Override the re-referencing derived from the projectors: "average", "none" or a
        channel name.
    use_cps : bool
        Patch-averaged normals for surface sources (MNE's default).
    sfreq : float, optional
        Sampling rate of the stream; default ``info['sfreq']``.

    Returns
    -------
    OperatorBundle
        Channels in the forward's order (the loop maps the stream's channels onto them by
        name), sources in the forward's frame (head, m); the MNE vertex numbers are in
        ``provenance['mne']``.

    Raises
    ------
    ChannelError
        Channels missing from the Info or the covariance, or no channel of ``ch_type``.
    InverseError
        The forward cannot be converted to free orientation, or the inverse cannot be built.
    """
    mne = _mne()
    fwd = forward
    if fwd["surf_ori"] or fwd["source_ori"] != _FIFFV_MNE_FREE_ORI:
        try:
            fwd = mne.convert_forward_solution(fwd, surf_ori=False, force_fixed=False, copy=True, use_cps=use_cps, verbose="error")
        except Exception as exc:  # MNE raises ValueError/RuntimeError without a free solution
            raise InverseError(f"the forward cannot be converted to free orientation ({exc}); compute it with free orientation (MNE's default)") from None
    if fwd["source_ori"] != _FIFFV_MNE_FREE_ORI or fwd["sol"]["data"].shape[1] != 3 * fwd["nsource"]:
        raise InverseError("the forward is fixed-orientation without the original free solution; compute it with free orientation")
    frame = _frame_of(fwd["coord_frame"])
    fwd_info = fwd["info"]
    names = _pick_names(fwd_info, info, noise_cov, ch_type)
    rows = [fwd["sol"]["row_names"].index(c) for c in names]
    gain = np.asarray(fwd["sol"]["data"][rows], dtype=np.float64)
    sources, src_info = source_space_from_mne(fwd["src"], frame=frame, trans=fwd.get("mri_head_t"), use_cps=use_cps)
    if not np.allclose(sources.positions_m, fwd["source_rr"], atol=1e-6):
        raise InverseError("the forward's source positions do not match its source space; pass an unmodified MNE forward")
    cov = noise_covariance_from_mne(noise_cov, names)
    m, ref_label, proj_descs = _reference(info, noise_cov, names, reference)
    op = make_inverse_operator(
        gain, sources.normals, cov, reference=m, method=method, snr=snr, lambda2=lambda2, loose=loose,
        depth=depth, fixed=fixed, depth_limit=depth_limit, rank=rank, ch_names=tuple(names),
    )  # fmt: skip
    kind, unit = CHANNEL_KINDS[ch_type]
    pos_info = info
    if montage is not None:
        pos_info = info.copy()
        pos_info.set_montage(montage, on_missing="warn", verbose="error")
    params = {"snr": snr, "lambda2": op.lambda2, "loose": op.loose, "depth": op.depth, "fixed": op.n_orient == 1, "rank": op.rank, "reference": ref_label, "depth_limit": depth_limit, "use_cps": use_cps}
    provenance = {
        "made_by": f"rtsource {__version__} interop.mne_bridge.bundle_from_forward (rtsource inverse on an MNE-Python forward)",
        "mne_version": mne.__version__,
        "forward": {"coord_frame": frame.value, "n_sources": int(fwd["nsource"]), "source_ori": "free", "subject": src_info["subject"]},
        "noise_cov": {"method": str(noise_cov.get("method")), "nfree": int(noise_cov["nfree"] or 0), "diag": bool(noise_cov["diag"])},
        "projectors": proj_descs,
        "mne": src_info,
    }
    return OperatorBundle(
        kernel=op.kernel,
        noise_norm=op.noise_norm,
        n_orient=op.n_orient,
        method=op.method,
        output_unit=op.output_unit,
        ch_names=tuple(names),
        ch_types=(kind,) * len(names),
        ch_units=(unit,) * len(names),
        reference=ref_label,
        sfreq=float(sfreq if sfreq is not None else info["sfreq"]),
        sources=sources,
        channel_positions_m=_channel_positions(pos_info, names, frame),
        channel_frame=Frame.HEAD,
        params=params,
        provenance=provenance,
        gain=gain,
        noise_cov=cov.data,
        source_rotation=op.source_rotation,
    )


# ---- (b) their inverse, our streaming ----------------------------------------------------

def bundle_from_inverse(
    inverse_operator,
    *,
    method: str = "dSPM",
    lambda2: float = 1.0 / 9.0,
    pick_ori: str | None = None,
    info=None,
    sfreq: float | None = None,
    use_cps: bool = True,
) -> OperatorBundle:
    """Wrap an MNE ``InverseOperator`` as an rtsource bundle (their inverse, our streaming).

    The operator is prepared for raw data (``nave=1``, as ``apply_inverse_raw`` does) and
    its kernel ``K = sqrt(R) V Gamma U^T W P`` and noise normalisation are extracted, so that
    the loop's output equals ``mne.minimum_norm.apply_inverse_raw(raw, inv, lambda2,
    method, pick_ori)``: for a free/loose operator ``||K_k x|| / noise_norm_k`` (MNE's
    ``combine_xyz`` then its ``noisenorm``); with ``pick_ori="normal"`` (loose operators)
    or a fixed operator the signed ``K_k x / noise_norm_k``.

    Parameters
    ----------
    inverse_operator : mne.minimum_norm.InverseOperator
    method : {"MNE", "dSPM", "sLORETA", "eLORETA"}
    lambda2 : float
    pick_ori : None or "normal"
    info : mne.Info, optional
        For the sampling rate and channel positions (default: the operator's own info).
    sfreq : float, optional
        Override the sampling rate.
    use_cps : bool
        As in MNE (normals of surface sources for display).

    Raises
    ------
    InverseError
        ``pick_ori`` not possible for this operator, or no sampling rate known.
    """
    mne = _mne()
    if pick_ori not in (None, "normal"):
        raise ConfigError(f"pick_ori {pick_ori!r}: a stream carries None (pooled) or 'normal' (signed) source values")
    inv = mne.minimum_norm.prepare_inverse_operator(inverse_operator, nave=1, lambda2=lambda2, method=method, verbose="error")
    free = inv["source_ori"] == _FIFFV_MNE_FREE_ORI
    n_src = int(inv["nsource"])
    if pick_ori == "normal" and not (free and 0 < inv["orient_prior"]["data"][0] <= 1):
        raise InverseError("pick_ori='normal' needs a loose-orientation inverse operator (MNE's rule); use pick_ori=None")
    names = list(inv["noise_cov"].ch_names)
    if inv["eigen_fields"].get("col_names") and list(inv["eigen_fields"]["col_names"]) != names:
        raise InverseError("the inverse operator's eigenfields and noise covariance list different channels; it is damaged")
    # the kernel, as MNE assembles it (minimum_norm/inverse.py, _assemble_kernel)
    trans = inv["eigen_fields"]["data"] @ (inv["whitener"] @ inv["proj"])
    trans = trans * inv["reginv"][:, None]
    kernel = inv["eigen_leads"]["data"] @ trans
    if not inv["eigen_leads_weighted"]:
        kernel = kernel * np.sqrt(inv["source_cov"]["data"])[:, None]
    source_nn = np.asarray(inv["source_nn"], dtype=np.float64)
    frame = _frame_of(inv["coord_frame"])
    sources, src_info = source_space_from_mne(inv["src"], frame=frame, trans=inv.get("mri_head_t"), use_cps=use_cps)
    if free:
        rot = source_nn.reshape(n_src, 3, 3)
        surf_oriented = not np.allclose(rot, np.eye(3)[None], atol=1e-6)
        if pick_ori == "normal":
            if not surf_oriented:
                # MNE rotates a free (x, y, z) operator onto the surface normal for "normal"
                rot = _local_frames(sources.normals)
                kernel = np.einsum("kij,kjc->kic", rot, kernel.reshape(n_src, 3, -1)).reshape(3 * n_src, -1)
            kernel = kernel[2::3]
            n_orient = 1
        else:
            n_orient = 3
        if surf_oriented:
            # the operator's own normals (its rows' third axis) are what it used
            normals = rot[:, 2]
            sources = SourceSpace(sources.positions_m, normals, sources.areas_m2, sources.hemisphere, sources.frame, sources.name, sources.triangles)
    else:
        n_orient = 1
        rot = _local_frames(source_nn)
        sources = SourceSpace(sources.positions_m, source_nn, sources.areas_m2, sources.hemisphere, sources.frame, sources.name, sources.triangles)
    if method in ("dSPM", "sLORETA"):
        noise_norm = 1.0 / np.asarray(inv["noisenorm"], dtype=np.float64)
    else:
        noise_norm = np.ones(n_src)
    if noise_norm.shape != (n_src,):
        raise InverseError(f"the prepared operator has {noise_norm.shape} noise-normalisation factors for {n_src} sources")
    pos_info = info if info is not None and all(c in info["ch_names"] for c in names) else inv["info"]
    kinds = [mne.channel_type(inv["info"], inv["info"]["ch_names"].index(c)) for c in names]
    types_units = [CHANNEL_KINDS.get(k, (k, "")) for k in kinds]
    if len(set(kinds)) > 1:
        logger.warning("the inverse operator mixes channel types %s; the loop's stream must carry all of them", sorted(set(kinds)))
    rate = sfreq if sfreq is not None else (info["sfreq"] if info is not None else inv["info"].get("sfreq"))
    if not rate:
        raise InverseError("the inverse operator's info has no sampling rate; pass sfreq= (the stream's rate in Hz)")
    projs = [p["desc"] for p in inv["projs"]]
    avg = any(p["kind"] == 10 for p in inv["projs"])  # FIFFV_PROJ_ITEM_EEG_AVREF
    reference = "average" if avg and len(inv["projs"]) == 1 else ("projectors" if inv["projs"] else "none")
    method_out = {"mne": "MNE", "dspm": "dSPM", "sloreta": "sLORETA", "eloreta": "eLORETA"}[method.lower()]
    params = {"lambda2": float(lambda2), "pick_ori": pick_ori or "pooled", "loose": float(inv["orient_prior"]["data"][0]) if free else 0.0, "rank": int(np.count_nonzero(inv["reginv"])), "reference": reference}
    provenance = {
        "made_by": f"rtsource {__version__} interop.mne_bridge.bundle_from_inverse (MNE-Python inverse operator, prepared for raw data)",
        "mne_version": mne.__version__,
        "projectors": projs,
        "mne": src_info,
    }
    return OperatorBundle(
        kernel=kernel,
        noise_norm=noise_norm,
        n_orient=n_orient,
        method=method_out,
        output_unit="" if method_out in ("dSPM", "sLORETA") else "A*m",
        ch_names=tuple(names),
        ch_types=tuple(t for t, _ in types_units),
        ch_units=tuple(u for _, u in types_units),
        reference=reference,
        sfreq=float(rate),
        sources=sources,
        channel_positions_m=_channel_positions(pos_info, names, frame),
        channel_frame=Frame.HEAD,
        params=params,
        provenance=provenance,
        noise_cov=_square(inverse_operator["noise_cov"]),
        source_rotation=rot if n_orient == 3 else _local_frames(sources.normals),
    )


def _square(cov) -> np.ndarray:
    data = np.asarray(cov.data, dtype=np.float64)
    return np.diag(data) if data.ndim == 1 else data


# ---- (c) labels -> ROIs --------------------------------------------------------------------

def source_vertices(bundle: OperatorBundle) -> tuple[list[str], list[np.ndarray], list[np.ndarray], str]:
    """How the bundle's sources map onto MNE vertex numbers.

    Returns
    -------
    kinds : list of str
        Per source space: "lh", "rh", "vol", "discrete".
    vertices : list of ndarray
        MNE vertex numbers per source space (sorted).
    indices : list of ndarray
        The bundle's source index of each of those vertices.
    subject : str
        The FreeSurfer subject ("fsaverage" for the template, "" if unknown).

    Raises
    ------
    ConfigError
        The bundle's sources have no known MNE vertex numbers (neither made from MNE
        objects nor on the fsaverage template).
    """
    mne_info = bundle.provenance.get("mne") if bundle.provenance else None
    if mne_info and "vertices" in mne_info:
        kinds = list(mne_info["kinds"])
        vertices = [np.asarray(v, dtype=np.int64) for v in mne_info["vertices"]]
        offsets = np.cumsum([0] + [len(v) for v in vertices])
        if offsets[-1] != bundle.n_sources:
            raise ConfigError(f"bundle provenance lists {offsets[-1]} MNE vertices for {bundle.n_sources} sources; the bundle was edited")
        indices = [np.arange(offsets[i], offsets[i + 1]) for i in range(len(vertices))]
        return kinds, vertices, indices, str(mne_info.get("subject") or "")
    name = bundle.sources.name
    if name.startswith("fsaverage-ico"):
        # the template's sources are fsaverage's first vertices per hemisphere (icosahedral order)
        kinds, vertices, indices = [], [], []
        for h, kind in ((0, "lh"), (1, "rh")):
            idx = np.flatnonzero(bundle.sources.hemisphere == h)
            kinds.append(kind)
            vertices.append(np.arange(len(idx), dtype=np.int64))
            indices.append(idx)
        return kinds, vertices, indices, "fsaverage"
    raise ConfigError(
        f"the sources {name!r} of this bundle have no MNE vertex numbers; labels and SourceEstimates need a bundle "
        "made from MNE objects (bundle_from_forward / bundle_from_inverse) or on the fsaverage template"
    )


_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.+-]")


def _roi_name(name: str) -> str:
    clean = _BAD_NAME_CHARS.sub("_", name.strip()).strip("_") or "label"
    if not clean[0].isalnum():
        clean = "L" + clean
    return clean[:64]


def labels_to_rois(labels, bundle: OperatorBundle, *, on_empty: str = "raise"):
    """MNE ``Label``s (or ``BiHemiLabel``s) as ROIs over the bundle's sources.

    Parameters
    ----------
    labels : mne.Label or sequence of them
        Surface labels on the bundle's subject (fsaverage for template bundles).
    bundle : OperatorBundle
        Made by :func:`bundle_from_forward` / :func:`bundle_from_inverse`, or on the template.
    on_empty : {"raise", "warn"}
        A label containing none of the bundle's sources: an error, or skipped with a warning.

    Returns
    -------
    tuple of rtsource.inverse.roi.Roi
        Name (made a valid channel label: other characters become ``_``) and the sorted
        source indices. If ``rtsource.inverse.roi`` is not available, ``(name, indices)``
        pairs instead.
    """
    if on_empty not in ("raise", "warn"):
        raise ConfigError(f"on_empty {on_empty!r} must be 'raise' or 'warn'")
    if not isinstance(labels, (list, tuple)):
        labels = [labels]
    kinds, vertices, indices, subject = source_vertices(bundle)
    try:
        from ..inverse.roi import Roi
    except ImportError:  # the ROI module is optional to this bridge
        Roi = None
    out = []
    for label in labels:
        parts = [label.lh, label.rh] if label.hemi == "both" else [label]
        if subject and getattr(label, "subject", None) and label.subject != subject:
            logger.warning("label %r is on subject %r but the bundle's sources are on %r", label.name, label.subject, subject)
        idx = []
        for part in parts:
            if part.hemi not in kinds:
                raise ConfigError(f"label {label.name!r} is on hemisphere {part.hemi!r} but the bundle's sources are {kinds}")
            k = kinds.index(part.hemi)
            hit = np.flatnonzero(np.isin(vertices[k], part.vertices))
            idx.append(indices[k][hit])
        idx = np.unique(np.concatenate(idx)) if idx else np.zeros(0, np.int64)
        if idx.size == 0:
            msg = (
                f"label {label.name!r} ({sum(len(part.vertices) for part in parts)} vertices on {label.hemi}) contains none of the bundle's "
                f"{bundle.n_sources} sources; use a finer source space or a larger label"
            )
            if on_empty == "raise":
                raise ConfigError(msg)
            logger.warning(msg)
            continue
        name = _roi_name(label.name)
        n_vert = sum(len(part.vertices) for part in parts)
        desc = f"MNE label {label.name!r} ({label.hemi}, {n_vert} vertices, {idx.size} sources)"
        out.append(Roi(name, idx, desc) if Roi is not None else (name, idx))
    return tuple(out)


# ---- (d) published blocks -> SourceEstimate ------------------------------------------------

def to_source_estimate(timestamps, values, bundle: OperatorBundle, *, tmin: float | None = None, gaps: str = "nan", subject: str | None = None):
    """Source time courses published by rtsource as an MNE ``SourceEstimate``.

    Parameters
    ----------
    timestamps : array, shape (n_samples,)
        LSL timestamps of the samples (e.g. a collector's or pyxdf's ``time_stamps``).
    values : array, shape (n_samples, n_sources)
        The source outlet's values (its channel order is the bundle's source order).
    bundle : OperatorBundle
        The bundle that produced them.
    tmin : float, optional
        Time of the first sample in the estimate (default 0: times relative to the first
        timestamp; pass ``timestamps[0]`` to keep LSL time).
    gaps : {"nan", "raise"}
        Samples missing from regular timing (a gap in the stream) become NaN columns, or
        an error.
    subject : str, optional
        Override the subject (default: from the bundle).

    Returns
    -------
    mne.SourceEstimate, mne.VolSourceEstimate or mne.MixedSourceEstimate
    """
    mne = _mne()
    ts = np.asarray(timestamps, dtype=np.float64).ravel()
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 2 or y.shape != (len(ts), bundle.n_sources):
        raise ConfigError(f"values have shape {y.shape}; expected ({len(ts)} timestamps, {bundle.n_sources} sources of the bundle)")
    if len(ts) == 0:
        raise ConfigError("no samples to convert")
    kinds, vertices, indices, subj = source_vertices(bundle)
    step = 1.0 / bundle.sfreq
    pos = np.round((ts - ts[0]) / step).astype(np.int64)
    if np.any(np.diff(pos) <= 0):
        raise ConfigError("timestamps repeat or go backwards; pass the samples of one stream in the order received")
    n_times = int(pos[-1]) + 1
    if n_times != len(ts):
        missing = n_times - len(ts)
        if gaps == "raise":
            raise ConfigError(f"{missing} sample(s) are missing from regular timing at {bundle.sfreq:g} Hz (gaps in the stream); pass gaps='nan'")
        logger.warning("%d sample(s) missing at %g Hz: NaN in the SourceEstimate", missing, bundle.sfreq)
    data = np.full((bundle.n_sources, n_times), np.nan)
    data[:, pos] = y.T
    order = np.concatenate(indices)
    data = data[order]
    t0 = 0.0 if tmin is None else float(tmin)
    subject = subject or subj or None
    surf = [k in ("lh", "rh") for k in kinds]
    if kinds == ["lh", "rh"]:
        return mne.SourceEstimate(data, vertices, t0, step, subject=subject)
    if not any(surf):
        return mne.VolSourceEstimate(data, vertices, t0, step, subject=subject)
    if kinds[:2] == ["lh", "rh"]:
        return mne.MixedSourceEstimate(data, vertices, t0, step, subject=subject)
    raise ConfigError(f"source spaces {kinds} cannot make an MNE SourceEstimate (it needs lh then rh, or volumes)")


def bundle_summary(bundle: OperatorBundle) -> dict[str, Any]:
    """What an MNE-made bundle is (for logs and the CLI)."""
    mne_info = bundle.provenance.get("mne", {})
    return {
        "method": bundle.method,
        "n_orient": bundle.n_orient,
        "channels": bundle.n_channels,
        "sources": bundle.n_sources,
        "frame": bundle.sources.frame.value,
        "reference": bundle.reference,
        "source_spaces": list(mne_info.get("kinds", [])),
        "subject": mne_info.get("subject", ""),
    }
