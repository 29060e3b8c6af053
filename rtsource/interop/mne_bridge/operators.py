"""MNE forward or inverse operators as rtsource bundles: ``bundle_from_forward`` (our inverse
on their forward) and ``bundle_from_inverse`` (their inverse, our streaming)."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from ... import __version__
from ...anatomy.source_space import SourceSpace
from ...bundle import OperatorBundle
from ...errors import ConfigError, InverseError
from ...geometry import Frame
from ...inverse.make import operator_record
from ...inverse.minimum_norm import make_inverse_operator
from ...inverse.params import MinimumNormParams, OperatorRecord
from ...inverse.prepared_forward import local_frames
from ._common import CHANNEL_KINDS, FIFFV_MNE_FREE_ORI, import_mne, square_cov
from .channels import channel_positions, noise_covariance_from_mne, pick_names, reference_from_projectors
from .sources import frame_of, source_space_from_mne

logger = logging.getLogger(__name__)


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
    mne = import_mne()
    fwd = forward
    if fwd["surf_ori"] or fwd["source_ori"] != FIFFV_MNE_FREE_ORI:
        try:
            fwd = mne.convert_forward_solution(fwd, surf_ori=False, force_fixed=False, copy=True, use_cps=use_cps, verbose="error")
        except Exception as exc:  # MNE raises ValueError/RuntimeError without a free solution
            raise InverseError(f"the forward cannot be converted to free orientation ({exc}); compute it with free orientation (MNE's default)") from None
    if fwd["source_ori"] != FIFFV_MNE_FREE_ORI or fwd["sol"]["data"].shape[1] != 3 * fwd["nsource"]:
        raise InverseError("the forward is fixed-orientation without the original free solution; compute it with free orientation")
    frame = frame_of(fwd["coord_frame"])
    fwd_info = fwd["info"]
    names = pick_names(fwd_info, info, noise_cov, ch_type)
    rows = [fwd["sol"]["row_names"].index(c) for c in names]
    gain = np.asarray(fwd["sol"]["data"][rows], dtype=np.float64)
    sources, src_info = source_space_from_mne(fwd["src"], frame=frame, trans=fwd.get("mri_head_t"), use_cps=use_cps)
    if not np.allclose(sources.positions_m, fwd["source_rr"], atol=1e-6):
        raise InverseError("the forward's source positions do not match its source space; pass an unmodified MNE forward")
    cov = noise_covariance_from_mne(noise_cov, names)
    m, ref_label, proj_descs = reference_from_projectors(info, noise_cov, names, reference)
    op = make_inverse_operator(
        gain, sources.normals, cov, reference=m, method=method, snr=snr, lambda2=lambda2, loose=loose,
        depth=depth, fixed=fixed, depth_limit=depth_limit, rank=rank, ch_names=tuple(names),
    )  # fmt: skip
    kind, unit = CHANNEL_KINDS[ch_type]
    pos_info = info
    if montage is not None:
        pos_info = info.copy()
        pos_info.set_montage(montage, on_missing="warn", verbose="error")
    record = dataclasses.replace(
        operator_record(op, MinimumNormParams(method=op.method, snr=snr, lambda2=lambda2, loose=loose, depth=depth, fixed=fixed, depth_limit=depth_limit, rank=rank), reference=ref_label),
        notes={"use_cps": use_cps},
    )
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
        channel_positions_m=channel_positions(pos_info, names, frame),
        channel_frame=Frame.HEAD,
        params=record,
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
    mne = import_mne()
    if pick_ori not in (None, "normal"):
        raise ConfigError(f"pick_ori {pick_ori!r}: a stream carries None (pooled) or 'normal' (signed) source values")
    inv = mne.minimum_norm.prepare_inverse_operator(inverse_operator, nave=1, lambda2=lambda2, method=method, verbose="error")
    free = inv["source_ori"] == FIFFV_MNE_FREE_ORI
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
    frame = frame_of(inv["coord_frame"])
    sources, src_info = source_space_from_mne(inv["src"], frame=frame, trans=inv.get("mri_head_t"), use_cps=use_cps)
    if free:
        rot = source_nn.reshape(n_src, 3, 3)
        surf_oriented = not np.allclose(rot, np.eye(3)[None], atol=1e-6)
        if pick_ori == "normal":
            if not surf_oriented:
                # MNE rotates a free (x, y, z) operator onto the surface normal for "normal"
                rot = local_frames(sources.normals)
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
        rot = local_frames(source_nn)
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
    # MNE-Python's operator: only lambda2 and loose map onto rtsource's parameters
    record = OperatorRecord(
        inverse=MinimumNormParams(method=method_out, lambda2=float(lambda2), loose=float(inv["orient_prior"]["data"][0]) if free else 0.0, fixed=not free),
        reference=reference, rank=int(np.count_nonzero(inv["reginv"])), notes={"pick_ori": pick_ori or "pooled", "made_by": "mne.minimum_norm"},
    )
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
        channel_positions_m=channel_positions(pos_info, names, frame),
        channel_frame=Frame.HEAD,
        params=record,
        provenance=provenance,
        noise_cov=square_cov(inverse_operator["noise_cov"]),
        source_rotation=rot if n_orient == 3 else local_frames(sources.normals),
    )


__all__ = ["bundle_from_forward", "bundle_from_inverse"]
