"""The coregistration step: align, refine, project, check (:func:`coregister`), and the
file-level entry points :func:`run_coreg` (``rtsource coreg``) and :func:`template_montage`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ..errors import ConfigError, FrameError, GeometryError
from ..geometry import Frame, Points, Transform, project_onto_mesh
from ..geometry.head_frames import FIDUCIAL_NAMES
from ..sensors.montage import Montage
from ..sensors.readers import Digitization, read_digitization
from .alignment import BY_LABELS, initial_alignment, label_pairs
from .icp import icp_to_surface
from .qc import DEFAULT_MAX_OUTLIER_FRACTION, DEFAULT_MAX_RMS_MM, CoregResult, measure_fit

logger = logging.getLogger(__name__)

#: The methods :func:`coregister` knows.
METHODS = ("icp", "fiducials", "none")


def coregister(
    dig: Digitization,
    *,
    method: str = "icp",
    scale: bool = False,
    aliases: Mapping[str, str] | None = None,
    template=None,
    project: bool = True,
    use_electrodes: bool = True,
    fiducial_weight: float = 1.0,
    label_weight: float = 0.1,
    max_rms_mm: float = DEFAULT_MAX_RMS_MM,
    max_outlier_fraction: float = DEFAULT_MAX_OUTLIER_FRACTION,
    allow_bad_fit: bool = False,
    qc_png: str | Path | None = None,
    max_iterations: int = 100,
    transform: Transform | None = None,
) -> CoregResult:
    """Align a digitisation to the template head and check the fit.

    Parameters
    ----------
    dig : Digitization
        Electrodes (required), fiducials and headshape points, in any frame.
    method : {"icp", "fiducials", "none"}
        ``"icp"``: initial alignment refined by ICP; ``"fiducials"``: initial alignment only
        (fiducials, else labels, else frame); ``"none"``: the positions must already be in
        the template frame.
    scale : bool
        Fit a uniform scale (template heads: adapts the template's size to the subject's).
    aliases : mapping, optional
        Label aliases (file name -> standard name), used to match labels to the template.
    template : Template, optional
        The head model (default :func:`rtsource.anatomy.template.load_template`).
    project : bool
        Project the electrodes onto the scalp in the result's montage.
    use_electrodes : bool
        Use the electrodes in the ICP as well as the headshape points.
    fiducial_weight : float
        Weight of each fiducial pair in the ICP (0: headshape only).
    label_weight : float
        Without fiducials, when the start came from electrode labels: weight of each
        label pair (electrode -> template position of that name) in the ICP.
    max_rms_mm, max_outlier_fraction : float
        Refusal thresholds (see :mod:`rtsource.coreg.qc`).
    allow_bad_fit : bool
        Return a failed fit instead of raising (a warning is logged).
    qc_png : path, optional
        Write the QC picture there (needs matplotlib: ``pip install rtsource[qc]``); it is
        written before a refusal, so it can be looked at.
    max_iterations : int
        ICP iteration limit.
    transform : Transform, optional
        With ``method="none"``: a known transform from the digitisation's frame to the head
        model's (an MNE -trans.fif's head -> MRI), applied instead of a fit.

    Raises
    ------
    GeometryError
        When the fit fails the thresholds and ``allow_bad_fit`` is False; the message
        names the RMS, the threshold and the override.
    """
    from ..anatomy.template import load_template

    if method not in METHODS:
        raise ConfigError(f"coregistration method {method!r} is not known; use one of {', '.join(METHODS)}")
    if not max_rms_mm > 0 or not 0 < max_outlier_fraction <= 1:
        raise ConfigError(
            f"max_rms_mm = {max_rms_mm!r} must be > 0 and max_outlier_fraction = {max_outlier_fraction!r} in (0, 1]"
        )
    if dig.electrodes is None or not len(dig.electrodes):
        raise GeometryError(f"{dig.name!r} has no electrodes to coregister")
    template = template or load_template()
    scalp = template.fit_scalp  # the fine scalp, not the BEM's resampled one
    model = template.frame  # TEMPLATE, or MRI for a subject's own head

    if method == "none" and transform is not None:
        if (transform.from_frame, transform.to_frame) != (dig.frame, model):
            raise FrameError(
                f"the given transform maps {transform.from_frame.value!r} -> {transform.to_frame.value!r}, but {dig.name!r} "
                f"is in {dig.frame.value!r} and the head model in {model.value!r}"
            )
        initial = f"the given {transform.from_frame.value} -> {transform.to_frame.value} transform"
    elif method == "none":
        if dig.frame != model:
            raise FrameError(
                f"coregistration method 'none' needs positions in the {model.value!r} frame, but {dig.name!r} is in "
                f"{dig.frame.value!r}; use method 'fiducials' or 'icp', or state frame={model.value!r} if it is"
            )
        transform, initial = Transform.identity(model, model), "none (positions taken as they are)"
    else:
        transform, initial = initial_alignment(dig, template, aliases=aliases, scale=scale)
    iterations, converged = 0, True

    surface_sets = [dig.headshape] + ([dig.electrodes] if use_electrodes or dig.headshape is None else [])
    surface_sets = [s for s in surface_sets if s is not None and len(s)]
    src_m = np.concatenate([s.positions_m for s in surface_sets])
    if method == "icp":
        pairs, pair_weight = None, 0.0
        if dig.has_fiducials and fiducial_weight > 0:
            from ..geometry.head_frames import fiducials_m

            pairs = (np.array(fiducials_m(dig.fiducials)), np.array(fiducials_m(template.fiducials)))
            pair_weight = fiducial_weight
        elif initial.startswith(BY_LABELS) and label_weight > 0:
            # no fiducials: the label correspondences pin the rotations instead
            src, dst, _ = label_pairs(dig.electrodes, template.fit_electrodes, aliases)
            pairs, pair_weight = (src, dst), label_weight
        fit = icp_to_surface(
            src_m, scalp, initial=transform.matrix, pairs=pairs, pair_weight=pair_weight, scale=scale, max_iterations=max_iterations
        )
        transform = Transform(dig.frame, model, fit.matrix)
        iterations, converged = fit.iterations, fit.converged

    aligned = dig.transformed(transform)
    if aligned.frame != model:  # the identity keeps the frame; anything else is a bug
        raise FrameError(f"coregistration ended in the {aligned.frame.value!r} frame, not {model.value!r}")

    qc = measure_fit(
        aligned,
        template,
        transform,
        method=method,
        initial=initial,
        iterations=iterations,
        converged=converged,
        max_rms_mm=max_rms_mm,
        max_outlier_fraction=max_outlier_fraction,
    )

    el = aligned.electrodes
    if project:
        proj = project_onto_mesh(el.positions_m, scalp)
        el_final = Points(proj.points_m, model, "m", el.labels)
        moved = proj.distances_m * 1e3
    else:
        el_final, moved = el, np.zeros(len(el))
    fid = aligned.fiducials.select(list(FIDUCIAL_NAMES)) if aligned.has_fiducials else None
    montage = Montage(el_final, fid, dig.name)
    reports = (dig.report,) if dig.report is not None else ()
    result = CoregResult(transform, montage, aligned, qc, reports, moved)

    if qc_png is not None:
        from ..qc_plot import write_coreg_qc_png

        png = write_coreg_qc_png(result, template, qc_png)
        result = CoregResult(transform, montage, aligned, qc, reports, moved, str(png))
    logger.info("%s", qc.summary())
    if not qc.passed:
        problem = (
            f"RMS distance to the scalp {qc.rms_mm:.2f} mm exceeds max_rms_mm = {max_rms_mm:g} mm"
            if qc.rms_mm > max_rms_mm
            else f"{qc.outlier_fraction:.0%} of the points are outliers (more than max_outlier_fraction = {max_outlier_fraction:.0%})"
        )
        look = f"look at the QC picture {result.qc_png}, " if result.qc_png else ""
        message = (
            f"coregistration of {dig.name!r} is poor: {problem} ({qc.n_points} points, max {qc.max_mm:.1f} mm, "
            f"method {method!r}); {look}check the file's unit, frame and labels"
            + ("" if scale else ", or try scale=True (--scale)")
            + ", or accept the fit with allow_bad_fit=True (rtsource coreg --allow-bad-fit; [coreg] allow_bad_fit = true)"
        )
        if not allow_bad_fit:
            raise GeometryError(message)
        logger.warning("%s (accepted: allow_bad_fit)", message)
    return result


def run_coreg(
    montage_path: str | Path,
    *,
    aliases: Mapping[str, str] | None = None,
    headshape_path: str | Path | None = None,
    headshape_unit: str | None = None,
    headshape_format: str | None = None,
    method: str = "icp",
    scale: bool = False,
    max_rms_mm: float = DEFAULT_MAX_RMS_MM,
    max_outlier_fraction: float = DEFAULT_MAX_OUTLIER_FRACTION,
    qc_png: str | Path | None = None,
    allow_bad_fit: bool = False,
    channels: Iterable[str] | None = None,
    unit: str | None = None,
    frame: Frame | str | None = None,
    format: str | None = None,
    bem_order: int = 4,
    project: bool = True,
    head=None,
    transform: Transform | None = None,
) -> CoregResult:
    """Read a montage (and headshape) file and coregister it to the template: ``rtsource coreg``.

    Parameters
    ----------
    montage_path : path
        Electrode file in any format :func:`rtsource.sensors.readers.read_digitization` reads.
    aliases : mapping, optional
        Stream / file label -> standard name.
    headshape_path : path, optional
        A second file with headshape points (and fiducials, if the montage has none), in the
        same digitiser frame as the montage: any montage format, or plain ``x y z`` text.
    headshape_unit, headshape_format : str, optional
        Its length unit (required for plain ``x y z`` text that does not state it) and format
        (default: from the extension).
    method, scale, max_rms_mm, max_outlier_fraction, allow_bad_fit, project
        See :func:`coregister`.
    qc_png : path, optional
        Write the QC picture there.
    channels : list of str, optional
        Channel names the electrodes must cover (checked before the fit; the error lists the
        missing ones).
    unit, frame, format : optional
        Override what the montage file says (see ``read_digitization``).
    bem_order : int
        Template surface resolution (3 or 4).
    head : Template or SubjectHead, optional
        The head to coregister to (default: the template of ``bem_order``); a FreeSurfer
        subject's (:class:`rtsource.anatomy.subject.SubjectHead`) puts the electrodes in MRI.
    transform : Transform, optional
        A known transform from the files' frame to the head's (an MNE -trans.fif's head ->
        MRI): applied instead of a fit, then the electrodes are projected and checked.
    """
    from ..anatomy.template import load_template

    dig = read_digitization(montage_path, format=format, unit=unit, frame=frame)
    reports = [dig.report]
    if headshape_path is not None:
        # every point of a head-shape file is a head-shape point, whatever its format labels it
        hs = read_digitization(headshape_path, format=headshape_format, unit=headshape_unit or None, frame=frame).as_headshape()
        reports.append(hs.report)
        if hs.frame != dig.frame and Frame.UNKNOWN in (hs.frame, dig.frame):
            # one file said its frame, the other did not: they come from the same digitiser
            hs = hs.with_frame(dig.frame) if hs.frame == Frame.UNKNOWN else hs
            dig = dig.with_frame(hs.frame) if dig.frame == Frame.UNKNOWN else dig
        dig = dig.merged(hs)
    if channels is not None:
        dig.montage().pick(list(channels), aliases)  # fails early, listing missing channels
    if transform is not None:
        if dig.frame == Frame.UNKNOWN:
            raise FrameError(
                f"{dig.name!r} does not say its frame, and the transform starts in {transform.from_frame.value!r}; "
                f"state it ([coreg] frame = {transform.from_frame.value!r}) if the positions are in that frame"
            )
        method = "none"
    result = coregister(
        dig,
        method=method,
        scale=scale,
        aliases=aliases,
        template=head if head is not None else load_template(bem_order),
        project=project,
        max_rms_mm=max_rms_mm,
        max_outlier_fraction=max_outlier_fraction,
        allow_bad_fit=allow_bad_fit,
        qc_png=qc_png,
        transform=transform,
    )
    return CoregResult(result.transform, result.montage, result.aligned, result.qc, tuple(reports), result.projection_mm, result.qc_png)


def template_montage(
    montage: str,
    channels: Iterable[str],
    *,
    aliases: Mapping[str, str] | None = None,
    base_dir: str | Path = ".",
    **coreg_kwargs,
) -> tuple[Montage, CoregResult | None]:
    """Electrodes for the offline build, in the TEMPLATE frame, picked in channel order.

    ``montage`` is a standard name (``standard_1020``/``standard_1010``/``standard_1005``:
    positions already on the template, no coregistration) or a file path (relative to
    ``base_dir``), which is coregistered with :func:`run_coreg` (``coreg_kwargs``: method,
    headshape_path, headshape_unit, scale, max_rms_mm, allow_bad_fit, qc_png, unit, frame, bem_order).

    Returns
    -------
    montage : Montage
        TEMPLATE frame, metres, one electrode per channel, named like the channels.
    result : CoregResult or None
        The coregistration (None for standard montages), for provenance.
    """
    from ..sensors.montage import STANDARD_SYSTEMS, standard_montage

    channels = list(channels)
    if montage in STANDARD_SYSTEMS:
        return standard_montage(montage).pick(channels, aliases), None
    path = Path(montage).expanduser()
    if not path.is_absolute():
        path = Path(base_dir) / path
    hs = coreg_kwargs.pop("headshape_path", None)
    if hs:
        hs = Path(hs).expanduser()
        hs = hs if hs.is_absolute() else Path(base_dir) / hs
    result = run_coreg(path, aliases=aliases, headshape_path=hs or None, channels=channels, **coreg_kwargs)
    return result.montage.pick(channels, aliases), result


__all__ = ["METHODS", "coregister", "run_coreg", "template_montage"]
