"""The coregistration's numbers as ``rtsource setup`` prints them, read back from a lead field.

The offline build records each coregistration (:meth:`~.qc.CoregResult.to_dict`) in the EEG
lead field's ``model["electrodes"]``; :func:`coreg_report_lines` turns that record into the
few lines a user checks before trusting the bundle: how the files were read (unit, frame and
how the frame was checked), the RMS and largest distance to the scalp, each fiducial's
distance from the template's, the points rejected as outliers, the verdict and where the QC
picture is.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["coreg_records", "coreg_report_lines", "coreg_result_lines"]


def coreg_records(model: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The coregistration records of a lead field's ``model`` (its EEG part, or each part)."""
    found = []
    electrodes = model.get("electrodes")
    if isinstance(electrodes, Mapping) and isinstance(electrodes.get("qc"), Mapping):
        found.append(electrodes)
    for part in model.get("parts", ()) or ():
        if isinstance(part, Mapping):
            found += coreg_records(part)
    return found


def coreg_report_lines(model: Mapping[str, Any]) -> list[str]:
    """Lines for the setup report: the coregistration numbers next to the QC picture's path.

    Parameters
    ----------
    model : mapping
        ``LeadField.model`` of the operator's lead field.

    Returns
    -------
    list of str
        Empty when the electrodes were not coregistered (a standard montage, MEG only).
    """
    lines = []
    for rec in coreg_records(model):
        lines += _record_lines(rec)
    return lines


def coreg_result_lines(result) -> list[str]:
    """The same lines for a :class:`~.qc.CoregResult` (setup paths that keep the result itself)."""
    return _record_lines(result.to_dict())


def _record_lines(rec: Mapping[str, Any]) -> list[str]:
    lines = []
    qc = rec["qc"]
    n_out = len(qc.get("outliers", ()))
    lines.append(
        f"coregistration ({qc.get('method', '?')}, start: {qc.get('initial', '?')}): distance to the scalp RMS "
        f"{qc['rms_mm']:.2f} mm over the {qc['n_points'] - n_out} inliers (all {qc['n_points']} points {qc['rms_all_mm']:.2f} mm), "
        f"max {qc['max_mm']:.2f} mm, median {qc['median_mm']:.2f} mm"
    )
    fid = qc.get("fiducial_errors_mm") or {}
    if fid:
        lines.append("  fiducials vs template: " + ", ".join(f"{k} {v:.1f} mm" for k, v in fid.items()))
    if n_out:
        names = list(qc["outliers"])
        lines.append(f"  rejected as outliers: {n_out} ({', '.join(names[:12])}{', ...' if n_out > 12 else ''})")
    else:
        lines.append("  rejected as outliers: none")
    lines.append(
        f"  {'PASSED' if qc.get('passed') else 'FAILED (built anyway: allow_bad_fit)'}: RMS {qc['rms_mm']:.2f} mm vs "
        f"max_rms_mm {qc['max_rms_mm']:g}, outliers {n_out}/{qc['n_points']} vs max {qc['max_outlier_fraction']:.0%}"
    )
    for report in rec.get("reports", ()):
        lines.append(f"  read: {report}")
    lines.append(f"  QC picture: {rec['qc_png']}" if rec.get("qc_png") else "  QC picture: none ([coreg] qc_png to write one)")
    return lines
