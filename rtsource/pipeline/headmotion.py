"""MEG that follows the head: what the offline side gives the stream's head tracker.

- :func:`chpi_geometry`: a :class:`~rtsource.sensors.meg.MegArray`'s channels as the
  tracker's :class:`~rtsource.stream.headpose.ChpiGeometry` (DEVICE frame, ad hoc noise
  levels to weigh magnetometers and gradiometers alike).
- :class:`PoseRebuilder`: the operator for another DEVICE -> HEAD transform, the
  :class:`~rtsource.stream.headmotion.PoseRebuilder` protocol the loop's head motion stage
  calls in its background thread. The sphere model's fast path: the MEG field outside a
  spherically symmetric conductor depends only on the sensors relative to the sphere origin
  and the sources (Sarvas 1987), both fixed to the head, so only the sensors are moved
  (a few hundred coils, not thousands of sources) and the Sarvas kernel recomputes the lead
  field (:mod:`rtsource.forward.moving_head`); the operator is rebuilt from it with the
  bundle's own parameters and noise covariance, everything that does not depend on the
  pose prepared once (:mod:`rtsource.inverse.pose`).
- :func:`neuromag_array`: Neuromag/Elekta/MEGIN Vectorview-306 geometry from the table
  MNE-Python ships, placed around the template head (for simulations, tests and benchmarks).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import numpy as np

from ..arrays import sealed
from ..bundle import OperatorBundle
from ..errors import ConfigError
from ..geometry import Frame, Transform
from ..sensors.meg import AD_HOC_NOISE_STD, MegArray
from ..stream.headpose import ChpiGeometry

logger = logging.getLogger(__name__)

__all__ = ["PoseRebuilder", "chpi_from_info", "chpi_geometry", "headmotion_options", "neuromag_array", "pose_transform"]


def chpi_geometry(array: MegArray) -> ChpiGeometry:
    """The MEG channels of ``array`` (moved to DEVICE if needed) for the cHPI tracker."""
    dev = array if array.frame == Frame.DEVICE else array.in_frame(Frame.DEVICE)
    groups = dev.whitening_groups
    return ChpiGeometry(
        dev.ch_names, groups, dev.ch_units, dev.points_m, dev.point_normals, dev.weights, dev.point_channel,
        np.array([AD_HOC_NOISE_STD[g] for g in groups]),
    )  # fmt: skip


def pose_transform(matrix: np.ndarray, to_frame: Frame = Frame.TEMPLATE) -> Transform:
    """A 4x4 DEVICE -> head matrix (a :class:`~rtsource.stream.headpose.HeadPose`'s) as a Transform."""
    m = np.asarray(matrix, float)
    return Transform.from_rotation_translation(Frame.DEVICE, to_frame, m[:3, :3], m[:3, 3])


def neuromag_array(accuracy: str = "normal") -> MegArray:
    """Vectorview-306 (102 magnetometers, 204 planar gradiometers), DEVICE frame, around the template.

    The geometry is MNE-Python's canonical table (``read_meg_canonical_info("neuromag")``,
    MNE-Python must be installed). The carried DEVICE -> TEMPLATE transform is a pure
    translation that puts the centre of the sphere fitted to the sensors on the template's
    upper-scalp centre, leaving 22 mm between the closest sensor and the scalp.
    """
    try:
        import mne
    except ImportError as exc:  # pragma: no cover - a test dependency
        raise ConfigError("neuromag_array needs MNE-Python (pip install mne) for the Vectorview geometry table") from exc
    from ..anatomy.template import load_template
    from ..geometry.sphere_fit import fit_sphere
    from ..sensors.meg import meg_array_from_info

    info = mne.channels.read_meg_canonical_info("neuromag")
    array = meg_array_from_info(info, accuracy=accuracy, name="neuromag306")
    centre, _ = fit_sphere(array.positions_m)
    t = Transform.from_rotation_translation(Frame.DEVICE, Frame.TEMPLATE, np.eye(3), load_template().scalp_center_m - centre)
    return array.with_dev_head_t(t)


class PoseRebuilder:
    """The operator of a MEG bundle for another head pose (sphere model, background thread).

    Parameters
    ----------
    bundle : OperatorBundle
        The bundle the loop runs (caches ``gain`` and ``noise_cov``); its MEG channels must
        all be in ``array``.
    array : MegArray
        The sensors (DEVICE frame or with their ``dev_head_t``).
    origin_m : ndarray, shape (3,)
        The sphere origin in the sources' frame (the bundle's forward model's).
    head_to_model : ndarray, shape (4, 4), optional
        From the frame of the tracked poses (HEAD: the digitised coils') to the sources'
        frame (e.g. TEMPLATE after coregistration); identity by default.

    Notes
    -----
    What does not depend on the pose is prepared once (:meth:`prepare`, or the first
    rebuild): the coil integration points in DEVICE coordinates and the checks of the
    sources (:func:`rtsource.forward.moving_head.prepare_moving_head`, the lead-field entry
    point's fast path for a moving head), and the whitener, projectors and source frames
    of the operator (:func:`rtsource.inverse.pose.prepare_pose_inverse`). A rebuild then
    moves the coils, recomputes the lead field and runs the operator's three products over
    it in float32 (MNE, dSPM, sLORETA; eLORETA and LCMV take the full
    :func:`~rtsource.inverse.rebuild.rebuild_operator`). :attr:`last_stages` holds the
    milliseconds of each stage of the last rebuild.

    Thread-safe: :meth:`for_pose` reads only immutable inputs (the preparation is made
    under a lock). Channels dropped from the bundle (a bad-channel rebuild) are not
    re-added: the array is picked to the bundle's channels.
    """

    def __init__(self, bundle: OperatorBundle, array: MegArray, origin_m: np.ndarray, head_to_model: np.ndarray | None = None):
        if any(t not in ("mag", "grad") for t in bundle.ch_types):
            raise ConfigError(
                f"PoseRebuilder: the bundle has non-MEG channels ({sorted(set(bundle.ch_types) - {'mag', 'grad'})}); "
                "following the head is implemented for MEG-only bundles"
            )
        self.bundle = bundle
        dev = array if array.frame == Frame.DEVICE else array.in_frame(Frame.DEVICE)
        self.array = dev.pick(bundle.ch_names)
        if self.array.compensation is not None:
            raise ConfigError("PoseRebuilder: arrays with gradient compensation (CTF) are not supported yet; use the bundle as built")
        self.frame = bundle.sources.frame
        self.origin_m = np.asarray(origin_m, float)
        self.head_to_model = np.eye(4) if head_to_model is None else np.asarray(head_to_model, float)
        self.last_ms = float("nan")
        self.last_stages: dict[str, float] = {}
        self._lock = threading.Lock()
        self._moving = None
        self._inverse = None

    def _prepared(self):
        """(MovingHead, PoseInverse or None), made once."""
        with self._lock:
            if self._moving is None:
                from ..forward.head_model import SphereHead
                from ..forward.moving_head import prepare_moving_head
                from ..inverse.pose import prepare_pose_inverse, supports_pose_inverse

                self._moving = prepare_moving_head(self.bundle.sources, self.array, SphereHead(meg_origin_m=self.origin_m))
                self._inverse = prepare_pose_inverse(self.bundle) if supports_pose_inverse(self.bundle) else None
            return self._moving, self._inverse

    def prepare(self, bundle: OperatorBundle | None = None) -> None:
        """Prepare the pose-independent parts, compile the kernels and warm the caches with a
        rebuild at the array's own pose."""
        _reuse_large_allocations()
        self._prepared()
        m = np.eye(4) if self.array.dev_head_t is None else self.array.dev_head_t.matrix
        self.for_pose(np.linalg.solve(self.head_to_model, m))

    def leadfield(self, matrix: np.ndarray) -> np.ndarray:
        """(n_channels, 3 n_sources) Sarvas lead field with the head at DEVICE -> HEAD ``matrix``."""
        moving, _ = self._prepared()
        return moving.gain(self.head_to_model @ np.asarray(matrix, float))

    def for_pose(self, matrix: np.ndarray) -> OperatorBundle:
        """``bundle`` with lead field and operator recomputed for the DEVICE -> head ``matrix``."""
        from ..inverse.rebuild import rebuild_operator

        t0 = time.perf_counter()
        b = self.bundle
        _, inverse = self._prepared()
        gain = sealed(self.leadfield(matrix))  # ours alone: the bundle shares it, no copy
        stages = {"lead_field": (time.perf_counter() - t0) * 1e3}
        if inverse is not None:
            op = inverse.operator(gain)
            stages.update(inverse.timings_ms)
        else:  # eLORETA, LCMV: the full rebuild
            t1 = time.perf_counter()
            op, _, fwd = rebuild_operator(dataclasses.replace(b, gain=gain), [])
            gain = fwd.gain
            stages["operator"] = (time.perf_counter() - t1) * 1e3
        t1 = time.perf_counter()
        provenance = dict(b.provenance)
        provenance["head_pose"] = {"dev_head_t": np.round(np.asarray(matrix, float), 9).tolist(), "seconds": round(time.perf_counter() - t0, 4)}
        new = dataclasses.replace(
            b, kernel=op.kernel, noise_norm=op.noise_norm, gain=gain, source_rotation=op.source_rotation, provenance=provenance, created_utc=b.created_utc,
        )  # fmt: skip
        stages["bundle"] = (time.perf_counter() - t1) * 1e3
        self.last_ms = (time.perf_counter() - t0) * 1e3
        self.last_stages = stages
        return new


def _reuse_large_allocations() -> None:
    """Let glibc serve large arrays from its heap and keep freed ones for reuse (process-wide).

    A rebuild allocates a few arrays of 30-60 MB (lead field, kernel). Above glibc's mmap
    threshold (at most 32 MB by default) each is a fresh mapping whose first touch costs
    ~15k page faults: 0.1-0.5 s on a busy virtual machine, a large part of a rebuild. With
    the threshold raised (and trimming off), freed arrays are reused by the next rebuild,
    at the price of keeping the peak heap. No-op outside glibc.
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameter numbers
        libc.mallopt(m_mmap_threshold, 1 << 30)
        libc.mallopt(m_trim_threshold, 1 << 31)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        logger.debug("mallopt not available; large arrays stay separate mappings")


def chpi_from_info(info) -> tuple[tuple[float, ...], np.ndarray, np.ndarray]:
    """(coil frequencies in Hz, digitised coils (n, 3) HEAD m, DEVICE -> HEAD 4x4) of an MNE ``Info``.

    The coils are in the order of the frequencies, as MNE-Python's initial HPI fit orders
    them (``hpi_results``).
    """
    import mne

    freqs, _, _ = mne.chpi.get_chpi_info(info, on_missing="raise")
    try:  # MNE-Python's own ordering of the digitised coils by frequency
        from mne.chpi import _get_hpi_initial_fit

        coils = np.asarray(_get_hpi_initial_fit(info), float)
    except Exception:  # no initial fit stored: the HPI points in their ident order
        dig = sorted((d for d in info["dig"] or () if d["kind"] == mne.io.constants.FIFF.FIFFV_POINT_HPI), key=lambda d: d["ident"])
        coils = np.array([d["r"] for d in dig], float)
    if len(coils) != len(freqs):
        raise ConfigError(f"the recording lists {len(freqs)} cHPI frequencies but {len(coils)} digitised HPI coils; give [headpos] coil_positions_mm")
    t = info["dev_head_t"]
    return tuple(float(f) for f in freqs), coils, np.asarray(t["trans"] if t is not None else np.eye(4), float)


def headmotion_options(settings, bundle: OperatorBundle):
    """The loop's :class:`~rtsource.stream.headmotion.HeadMotionOptions` from ``[headpos]`` (None: off).

    Coil frequencies, digitised coils and the start pose come from ``[headpos] recording``
    (a FIF) unless given in the config; the sensors from ``[sensors] meg_array``. The
    forward follows the head (``update_mm`` > 0) for the sphere model only; otherwise the
    head is tracked and published, and the operator stays.
    """
    from ..build import meg_array_from_settings
    from ..stream.chpi import ChpiSettings
    from ..stream.headmotion import HeadMotionOptions

    hp = settings.headpos
    if not hp.enabled:
        return None
    freqs: tuple[float, ...] = tuple(hp.coil_freqs_hz)
    coils = np.asarray(hp.coil_positions_mm, float).reshape(-1, 3) * 1e-3 if hp.coil_positions_mm else None
    array = meg_array_from_settings(settings)
    dev_head = array.dev_head_t.matrix if array.dev_head_t is not None else np.eye(4)
    if hp.recording:
        import mne

        info = mne.io.read_info(settings.resolve_path(hp.recording), verbose="error")
        f2, c2, dev_head = chpi_from_info(info)
        freqs = freqs or f2
        coils = coils if coils is not None else c2
    if not freqs or coils is None:
        raise ConfigError("[headpos] enabled needs coil_freqs_hz and coil_positions_mm, or a recording (FIF) that has them")
    chpi = ChpiSettings(freqs, coils, dev_head, window_s=hp.window_s, step_s=hp.step_s, gof_limit=hp.gof_limit, dist_limit_m=hp.dist_limit_mm * 1e-3)
    rebuilder, reason = None, ""
    if hp.update_mm > 0:
        if settings.forward.method != "sphere":
            from ..forward.moving_head import BEM_REASON

            reason = f"[forward] method = {settings.forward.method!r}: {BEM_REASON}"
            logger.warning("[headpos] update_mm = %g: %s; the head is tracked and published, the operator stays", hp.update_mm, reason)
        else:
            from ..anatomy.template import load_template
            from ..forward.meg_sphere import meg_sphere_origin

            origin, _ = meg_sphere_origin(load_template(settings.head.bem_order).surfaces.inner_skull)
            model = array.dev_head_t.matrix if array.dev_head_t is not None else np.eye(4)
            rebuilder = PoseRebuilder(bundle, array, origin, head_to_model=model @ np.linalg.inv(dev_head))
    return HeadMotionOptions(chpi_geometry(array), chpi, update_mm=hp.update_mm, rebuilder=rebuilder, no_follow_reason=reason)
