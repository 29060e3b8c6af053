"""Electrode / digitiser readers (rtsource.sensors.readers) on hand-written fixture files."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtsource.errors import ChannelError, FrameError, GeometryError, RtsourceError, UnitError
from rtsource.geometry import Frame, Points
from rtsource.channel_names import canonical_label
from rtsource.sensors.readers import (
    Digitization,
    check_unit_against_extent,
    detect_format,
    read_bids_electrodes,
    read_bvef,
    read_digitization,
    read_elc,
    read_polhemus,
    read_positions_csv,
    read_sfp,
    read_transform,
    write_positions_csv,
    write_transform,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "montages"

# The fixtures hold template positions in the template's head frame (mm):
CZ_HEAD_MM = np.array([-1.6, 13.4, 139.6])
NAS_HEAD_MM = np.array([0.0, 114.0, 0.0])


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def pos_of(points: Points, label: str) -> np.ndarray:
    return points.positions_m[points.labels.index(label)]


# ---- BIDS ---------------------------------------------------------------------------------
def test_bids_fixture_units_frame_and_landmarks():
    d = read_digitization(DATA / "sub-01_electrodes.tsv")
    r = d.report
    assert (r.format, r.unit, r.unit_source, r.frame) == ("bids", "mm", "file", Frame.HEAD)
    assert "CapTrak" in r.frame_source
    assert len(d.electrodes) == 13 and "EXG1" not in d.electrodes.labels
    assert any("n/a" in n and "EXG1" in n for n in r.notes)
    assert np.allclose(pos_of(d.electrodes, "Cz"), CZ_HEAD_MM * 1e-3)
    assert d.fiducials.labels == ("NAS", "LPA", "RPA")
    assert np.allclose(d.fiducials.positions_m[0], NAS_HEAD_MM * 1e-3)
    assert d.frame == Frame.HEAD and d.has_fiducials


def _bids_in_system(tmp_path: Path, stem: str, system: str, *, als: bool = False, landmarks: bool = True, shift_mm=(0, 0, 0)) -> Path:
    """The fixture's electrodes and landmarks written in ``system`` (rotated RAS -> ALS if asked)."""

    def conv(xyz):
        x, y, z = (float(v) for v in xyz)
        return [y, -x, z] if als else [x, y, z]

    rows = []
    for line in (DATA / "sub-01_electrodes.tsv").read_text().splitlines():
        f = line.split("\t")
        if f[0] != "name" and f[1] != "n/a":
            f[1:4] = [f"{v:.1f}" for v in conv(f[1:4])]
        rows.append("\t".join(f))
    write(tmp_path, f"{stem}_electrodes.tsv", "\n".join(rows) + "\n")
    doc = json.loads((DATA / "sub-01_coordsystem.json").read_text())
    doc["EEGCoordinateSystem"] = system
    doc["AnatomicalLandmarkCoordinateSystem"] = system
    doc["AnatomicalLandmarkCoordinates"] = {k: [a + b for a, b in zip(conv(v), shift_mm)] for k, v in doc["AnatomicalLandmarkCoordinates"].items()}
    if not landmarks:
        del doc["AnatomicalLandmarkCoordinates"]
    write(tmp_path, f"{stem}_coordsystem.json", json.dumps(doc))
    return tmp_path / f"{stem}_electrodes.tsv"


@pytest.mark.parametrize(
    "system,frame,als",
    [("CapTrak", Frame.HEAD, False), ("ElektaNeuromag", Frame.HEAD, False), ("CTF", Frame.CTF, True), ("EEGLAB", Frame.CTF, True),
     ("4DBti", Frame.CTF, True), ("KitYokogawa", Frame.CTF, True), ("MNI305", Frame.TEMPLATE, False), ("fsaverage", Frame.TEMPLATE, False),
     ("MNI152NLin2009cAsym", Frame.TEMPLATE, False)],
)  # fmt: skip
def test_bids_coordinate_systems_map_to_frames(tmp_path, system, frame, als):
    d = read_bids_electrodes(_bids_in_system(tmp_path, "sub-02", system, als=als))
    assert d.frame == frame
    note = next(n for n in d.report.notes if n.startswith(system))
    assert f"frame {frame.value!r}" in note and "checked against NAS, LPA and RPA" in note
    if als:  # the nasion is ahead on +x in the ALS systems
        assert d.fiducials.positions_m[0][0] > 0.1


@pytest.mark.parametrize("system", ["Talairach", "ScanRAS", "Other"])
def test_bids_unsupported_coordinate_system_is_refused_with_the_list(tmp_path, system):
    path = _bids_in_system(tmp_path, "sub-02", system, landmarks=False)
    with pytest.raises(FrameError) as exc:
        read_bids_electrodes(path)
    msg = str(exc.value)
    assert repr(system) in msg and "CapTrak" in msg and "EEGLAB" in msg and "frame=" in msg
    # the caller may still say which frame they are in
    assert read_bids_electrodes(path, frame="unknown").frame == Frame.UNKNOWN


def test_bids_other_system_with_landmarks_is_aligned_by_them_not_assumed(tmp_path):
    d = read_bids_electrodes(_bids_in_system(tmp_path, "sub-02", "Other", als=True))
    assert d.frame == Frame.UNKNOWN and d.has_fiducials
    assert any("Other" in n and "aligned by its landmarks" in n for n in d.report.notes)
    with pytest.raises(FrameError, match="'Talairach' is not one rtsource maps"):
        read_bids_electrodes(_bids_in_system(tmp_path, "sub-03", "Talairach"))


@pytest.mark.parametrize("system,als", [("CTF", False), ("EEGLAB", False), ("CapTrak", True), ("MNI305", True)])
def test_bids_positions_contradicting_the_declared_system_are_refused(tmp_path, system, als):
    with pytest.raises(FrameError, match=rf"do not fit the declared coordinate system '{system}'"):
        read_bids_electrodes(_bids_in_system(tmp_path, "sub-02", system, als=als))


def test_bids_landmarks_off_the_axes_of_a_landmark_frame_are_refused(tmp_path):
    with pytest.raises(FrameError, match=r"NAS z = \+12.0 mm"):
        read_bids_electrodes(_bids_in_system(tmp_path, "sub-02", "CapTrak", shift_mm=(0, 0, 12)))
    # EEGLAB defines its origin only as "between the ears": 12 mm up is accepted
    d = read_bids_electrodes(_bids_in_system(tmp_path, "sub-03", "EEGLAB", als=True, shift_mm=(0, 0, 12)))
    assert d.frame == Frame.CTF


def test_bids_without_landmarks_is_checked_by_electrode_labels(tmp_path):
    d = read_bids_electrodes(_bids_in_system(tmp_path, "sub-02", "CapTrak", landmarks=False))
    assert d.frame == Frame.HEAD and any("checked against 13 10-20 electrode labels" in n for n in d.report.notes)
    with pytest.raises(FrameError, match="frontal electrodes"):
        read_bids_electrodes(_bids_in_system(tmp_path, "sub-03", "EEGLAB", landmarks=False))


def test_bids_landmarks_in_other_system_are_left_out(tmp_path):
    shutil.copy(DATA / "sub-01_electrodes.tsv", tmp_path / "sub-03_electrodes.tsv")
    doc = json.loads((DATA / "sub-01_coordsystem.json").read_text())
    doc["AnatomicalLandmarkCoordinateSystem"] = "MNI305"
    write(tmp_path, "sub-03_coordsystem.json", json.dumps(doc))
    d = read_bids_electrodes(tmp_path / "sub-03_electrodes.tsv")
    assert d.fiducials is None and any("left out" in n for n in d.report.notes)


def test_bids_without_coordsystem_guesses_and_says_so(tmp_path):
    shutil.copy(DATA / "sub-01_electrodes.tsv", tmp_path / "sub-04_electrodes.tsv")
    d = read_bids_electrodes(tmp_path / "sub-04_electrodes.tsv")
    assert d.report.unit == "mm" and d.report.unit_source == "guessed from extent"
    assert d.frame == Frame.UNKNOWN


def test_bids_millimetres_declared_as_metres_is_refused(tmp_path):
    shutil.copy(DATA / "sub-01_electrodes.tsv", tmp_path / "sub-05_electrodes.tsv")
    doc = json.loads((DATA / "sub-01_coordsystem.json").read_text())
    doc["EEGCoordinateUnits"] = "m"
    write(tmp_path, "sub-05_coordsystem.json", json.dumps(doc))
    with pytest.raises(UnitError) as exc:
        read_bids_electrodes(tmp_path / "sub-05_electrodes.tsv")
    msg = str(exc.value)
    assert "'m'" in msg and "'mm'" in msg and "sub-05_electrodes.tsv" in msg and "unit='mm'" in msg


def test_bids_malformed_line_names_file_and_line(tmp_path):
    text = (DATA / "sub-01_electrodes.tsv").read_text().splitlines()
    text[4] = "F3\t-50.1\tabc\t86.9\tcup\tAg/AgCl\tn/a"
    p = write(tmp_path, "sub-06_electrodes.tsv", "\n".join(text) + "\n")
    with pytest.raises(GeometryError, match=r"sub-06_electrodes.tsv, line 5: coordinate 'abc' is not a number"):
        read_bids_electrodes(p)
    text[4] = "F3\t-50.1\t86.9"
    p = write(tmp_path, "sub-07_electrodes.tsv", "\n".join(text) + "\n")
    with pytest.raises(GeometryError, match=r"line 5: 3 tab-separated fields, but the header has 7"):
        read_bids_electrodes(p)


def test_bids_bad_json_names_line(tmp_path):
    shutil.copy(DATA / "sub-01_electrodes.tsv", tmp_path / "sub-08_electrodes.tsv")
    write(tmp_path, "sub-08_coordsystem.json", '{\n "EEGCoordinateSystem": "CapTrak",\n "EEGCoordinateUnits" "mm"\n}\n')
    with pytest.raises(GeometryError, match=r"sub-08_coordsystem.json, line 3: not valid JSON"):
        read_bids_electrodes(tmp_path / "sub-08_electrodes.tsv")


# ---- ASA .elc -----------------------------------------------------------------------------
def test_elc_fixture_old_style():
    d = read_elc(DATA / "asa.elc")
    r = d.report
    assert (r.unit, r.unit_source, r.frame) == ("mm", "file", Frame.UNKNOWN)
    assert d.fiducials.labels == ("NAS", "LPA", "RPA")  # Nz is the nasion here
    assert any("'Nz'" in n for n in r.notes)
    assert "T3" in d.electrodes.labels and "Nz" in d.electrodes.labels
    assert np.allclose(pos_of(d.electrodes, "Cz"), CZ_HEAD_MM * 1e-3)


def test_elc_fixture_labelled_positions_in_metres():
    d = read_elc(DATA / "asa_labelled.elc")
    assert d.report.unit == "m" and d.electrodes.labels == ("Cz", "C3", "C4")
    assert d.has_fiducials


def test_elc_malformed_position_line(tmp_path):
    text = (DATA / "asa.elc").read_text().replace("-1.6 13.4 139.6", "-1.6 13.4")
    with pytest.raises(GeometryError, match=r"bad.elc, line 12: expected 3 coordinates .*'-1.6 13.4'"):
        read_elc(write(tmp_path, "bad.elc", text))


def test_elc_label_count_mismatch(tmp_path):
    text = (DATA / "asa.elc").read_text().replace("Oz\n", "")
    with pytest.raises(GeometryError, match=r"12 labels for 13 positions"):
        read_elc(write(tmp_path, "short.elc", text))


def test_elc_metres_declared_for_millimetres_is_refused(tmp_path):
    text = (DATA / "asa.elc").read_text().replace("UnitPosition\tmm", "UnitPosition\tm")
    with pytest.raises(UnitError, match=r"said to be in 'm' \(stated in the file on line 3\).*fit 'mm'"):
        read_elc(write(tmp_path, "wrong_unit.elc", text))


def test_old_and_new_names_of_one_electrode_at_one_place_keep_one(tmp_path):
    text = (DATA / "asa.elc").read_text()
    text = text.replace("NumberPositions=\t13", "NumberPositions=\t14").replace("Labels\n", "-84.2 11.6 38.5\nLabels\n") + "T7\n"
    d = read_elc(write(tmp_path, "both.elc", text))
    assert "T3" in d.electrodes.labels and "T7" not in d.electrodes.labels
    assert any("another name" in n for n in d.report.notes)
    # at a different place they are a conflict
    text2 = text.replace("-84.2 11.6 38.5\nLabels", "-60.0 11.6 38.5\nLabels")
    with pytest.raises(ChannelError, match=r"'T7' repeats 'T3'"):
        read_elc(write(tmp_path, "clash.elc", text2))


# ---- .sfp ---------------------------------------------------------------------------------
def test_sfp_fixture_guesses_cm_and_finds_egi_fiducials(caplog):
    d = read_sfp(DATA / "egi.sfp")
    assert (d.report.unit, d.report.unit_source) == ("cm", "guessed from extent")
    assert d.fiducials.labels == ("NAS", "LPA", "RPA")
    assert np.allclose(d.fiducials.positions_m[0], [0.114, 0, 0])
    assert d.electrodes.labels[:3] == ("E1", "E2", "E3")
    assert "guessed" in caplog.text


def test_sfp_unit_argument_wins_but_is_checked():
    assert read_sfp(DATA / "egi.sfp", unit="cm").report.unit_source == "argument"
    with pytest.raises(UnitError, match="passed as unit="):
        read_sfp(DATA / "egi.sfp", unit="m")


def test_sfp_malformed_line(tmp_path):
    text = (DATA / "egi.sfp").read_text().replace("E4\t1.45\t0.12\t14.55", "E4\t1.45\t0.12")
    with pytest.raises(GeometryError, match=r"line 7: expected 'label x y z' \(4 fields\), got 3"):
        read_sfp(write(tmp_path, "bad.sfp", text))


# ---- BrainVision ---------------------------------------------------------------------------
def test_bvef_fixture_spherical_to_cartesian():
    d = read_bvef(DATA / "actiCAP_20.bvef")
    r = d.report
    assert r.unit == "mm" and r.frame == Frame.UNKNOWN and "idealised" in r.frame_source
    assert "Gnd" not in d.electrodes.labels and any("Gnd" in n for n in r.notes)
    radius = 0.085
    assert np.allclose(pos_of(d.electrodes, "Cz"), [0, 0, radius])
    assert np.allclose(pos_of(d.electrodes, "T8"), [radius, 0, 0], atol=1e-12)
    assert np.allclose(pos_of(d.electrodes, "Oz"), [0, -radius, 0], atol=1e-12)
    fp1 = pos_of(d.electrodes, "Fp1")
    assert fp1[0] < 0 and fp1[1] > 0 and abs(fp1[2]) < 1e-12  # left, front, on the equator
    assert np.allclose(np.linalg.norm(d.electrodes.positions_m, axis=1), radius)


def test_bvct_captrak_fixture_is_head_frame():
    d = read_bvef(DATA / "captrak.bvct")
    assert d.report.format == "bvct" and d.frame == Frame.HEAD and d.has_fiducials
    assert np.allclose(pos_of(d.electrodes, "Cz"), CZ_HEAD_MM * 1e-3)


def test_bvef_malformed_xml_and_values_name_the_line(tmp_path):
    text = (DATA / "actiCAP_20.bvef").read_text()
    bad = text.replace("<Name>Cz</Name><Theta>0</Theta>", "<Name>Cz</Name><Theta>zero</Theta>")
    with pytest.raises(GeometryError, match=r"line 14: Theta 'zero' is not a number"):
        read_bvef(write(tmp_path, "bad1.bvef", bad))
    broken = text.replace("<Name>Cz</Name>", "<Name>Cz</Nam>")
    with pytest.raises(GeometryError, match=r"line 14: not well-formed XML"):
        read_bvef(write(tmp_path, "bad2.bvef", broken))
    missing = text.replace("<Phi>0</Phi><Radius>1</Radius><Number>10", "<Radius>1</Radius><Number>10")
    with pytest.raises(GeometryError, match=r"line 14: electrode 'Cz' has no Phi"):
        read_bvef(write(tmp_path, "bad3.bvef", missing))


def test_bvef_entities_refused(tmp_path):
    text = '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY a "aaaa">]>\n<Electrodes><Electrode><Name>&a;</Name></Electrode></Electrodes>\n'
    with pytest.raises(GeometryError, match="DOCTYPE or ENTITY"):
        read_bvef(write(tmp_path, "ent.bvef", text))


# ---- Polhemus -----------------------------------------------------------------------------
def test_polhemus_pos_fixture():
    d = read_polhemus(DATA / "digitizer.pos")
    assert d.report.unit == "cm" and d.report.unit_source == "guessed from extent"
    assert d.fiducials.labels == ("NAS", "LPA", "RPA")
    assert d.hpi.labels == ("hpi1", "hpi2", "hpi3")
    assert d.electrodes.labels == ("Cz", "C3", "C4")
    assert len(d.headshape) == 23 and not d.headshape.labels
    assert np.allclose(d.headshape.positions_m[0], [-0.0114, -0.0734, 0.0953])


def test_polhemus_isotrak_hsp_fixture():
    d = read_polhemus(DATA / "isotrak.hsp")
    assert d.report.unit == "m" and d.electrodes is None and d.hpi is None
    assert np.allclose(d.fiducials.positions_m, [[0.114, 0, 0], [0, 0.0825, 0], [0, -0.0825, 0]])
    assert len(d.headshape) == 12


def test_polhemus_directives_and_elp_coils(tmp_path):
    text = "# unit: mm\n# frame: ctf\n%F 114 0 0\n%F 0 82.5 0\n%F 0 -82.5 0\n%N coil_a\n%S 100 30 60\n%S 100 -30 60\n%S -50 0 120\n1 -11.4 -73.4 95.3\n"
    d = read_polhemus(write(tmp_path, "dig.elp", text))
    assert d.report.unit_source == "file" and d.frame == Frame.CTF and "line 2" in d.report.frame_source
    assert d.hpi.labels == ("coil_a", "hpi2", "hpi3")
    assert np.allclose(d.hpi.positions_m[0], [0.1, 0.03, 0.06])


def test_polhemus_malformed_line(tmp_path):
    text = (DATA / "digitizer.pos").read_text().replace("5  -1.30  7.78  8.81", "5  -1.30  7.78  8.81 2.0")
    with pytest.raises(GeometryError, match=r"line 16: expected 'x y z' or 'label x y z', got 5 fields"):
        read_polhemus(write(tmp_path, "bad.pos", text))


# ---- CSV / TSV ------------------------------------------------------------------------------
def test_csv_fixture_header_unit_and_frame_directive():
    d = read_positions_csv(DATA / "generic.csv")
    r = d.report
    assert (r.unit, r.unit_source, r.frame) == ("mm", "file", Frame.HEAD)
    assert d.has_fiducials and len(d.electrodes) == 10
    assert np.allclose(pos_of(d.electrodes, "Cz"), CZ_HEAD_MM * 1e-3)


def test_tsv_without_header_guesses_metres():
    d = read_digitization(DATA / "noheader.tsv")
    assert d.report.format == "csv" and d.report.unit == "m" and d.report.unit_source == "guessed from extent"
    assert d.electrodes.labels[0] == "Fp1"


def test_csv_malformed_line(tmp_path):
    text = (DATA / "generic.csv").read_text().replace("T8,82.0,13.7,38.8", "T8,82.0,13.7")
    with pytest.raises(GeometryError, match=r"bad.csv, line 11: 3 fields, but the header on line 3 has 4"):
        read_positions_csv(write(tmp_path, "bad.csv", text))


def test_plain_xyz_headshape_needs_a_stated_unit(tmp_path):
    rng = np.random.default_rng(1)
    d = rng.normal(size=(40, 3))
    d[:, 2] = np.abs(d[:, 2])
    pts_mm = 90.0 * d / np.linalg.norm(d, axis=1, keepdims=True)
    p = tmp_path / "headshape_mm.txt"
    np.savetxt(p, pts_mm, fmt="%.2f")
    with pytest.raises(UnitError, match=r"does not say its unit \(the extent suggests 'mm'\).*headshape_unit = 'mm'"):
        read_digitization(p)
    got = read_digitization(p, unit="mm")
    assert got.electrodes is None and got.fiducials is None and len(got.headshape) == 40
    assert np.allclose(got.headshape.positions_m, pts_mm * 1e-3, atol=1e-5)
    assert any("unlabelled x y z rows" in n for n in got.report.notes)
    # a unit line or an x_mm header states it too; commas work as well as spaces
    q = write(tmp_path, "hs.csv", "# unit: mm\n" + "\n".join(f"{a:.2f},{b:.2f},{c:.2f}" for a, b, c in pts_mm) + "\n")
    assert np.allclose(read_digitization(q).headshape.positions_m, got.headshape.positions_m)
    r = write(tmp_path, "hs.tsv", "x_mm\ty_mm\tz_mm\n" + "\n".join(f"{a:.2f}\t{b:.2f}\t{c:.2f}" for a, b, c in pts_mm) + "\n")
    assert np.allclose(read_digitization(r).headshape.positions_m, got.headshape.positions_m)
    with pytest.raises(GeometryError, match="line 3: 2 fields"):
        read_digitization(write(tmp_path, "short.txt", "1 2 3\n4 5 6\n7 8\n"), unit="mm")


def test_montage_file_as_headshape_keeps_every_point():
    d = read_digitization(DATA / "sub-01_electrodes.tsv")
    hs = d.as_headshape()
    assert hs.electrodes is None and len(hs.headshape) == len(d.electrodes) and not hs.headshape.labels
    assert hs.fiducials is d.fiducials and hs.frame == d.frame
    assert np.allclose(hs.headshape.positions_m, d.electrodes.positions_m)


def test_csv_round_trip(tmp_path):
    d = read_digitization(DATA / "digitizer.pos", frame="ctf")
    path = write_positions_csv(tmp_path / "out.csv", d, unit="mm")
    back = read_positions_csv(path)
    assert back.frame == Frame.CTF and back.report.unit == "mm"
    for kind in ("electrodes", "fiducials", "headshape", "hpi"):
        a, b = getattr(d, kind), getattr(back, kind)
        assert a.labels == b.labels
        assert np.allclose(a.positions_m, b.positions_m, atol=1e-6)


# ---- units, labels, dispatch ---------------------------------------------------------------
@pytest.mark.parametrize("true_unit,stated", [("mm", "m"), ("m", "mm"), ("mm", "cm"), ("cm", "mm"), ("cm", "m"), ("m", "cm")])
def test_unit_contradicted_by_extent_is_refused(true_unit, stated):
    head = np.random.default_rng(0).normal(size=(30, 3))
    head = 0.09 * head / np.linalg.norm(head, axis=1, keepdims=True)  # metres
    numbers = head / {"m": 1.0, "cm": 1e-2, "mm": 1e-3}[true_unit]
    with pytest.raises(UnitError, match=f"fit '{true_unit}'"):
        check_unit_against_extent(numbers, stated, where="x")
    check_unit_against_extent(numbers, true_unit, where="x")  # consistent: no error


def test_mm_file_read_as_m_and_reverse_are_refused(tmp_path):
    mm = write(tmp_path, "mm_as_m.csv", "# unit: m\n" + "\n".join((DATA / "generic.csv").read_text().splitlines()[2:]) + "\n")
    mm.write_text(mm.read_text().replace("x (mm),y (mm),z (mm)", "x,y,z"))
    with pytest.raises(UnitError, match="'m'.*fit 'mm'"):
        read_positions_csv(mm)
    m = write(tmp_path, "m_as_mm.tsv", (DATA / "noheader.tsv").read_text())
    with pytest.raises(UnitError, match="'mm'.*fit 'm'"):
        read_positions_csv(m, unit="mm")


def test_old_10_20_stream_names_match_a_montage_with_new_names():
    montage = read_digitization(DATA / "generic.csv").montage()
    assert {"T7", "T8", "P7", "P8"} <= set(montage.labels)
    stream = ["t3", "T4", "T5", "t6", "CZ"]
    picked = montage.pick(stream)
    assert picked.labels == tuple(stream)
    assert np.allclose(picked.electrodes.positions_m[0], pos_of(montage.electrodes, "T7"))
    assert np.allclose(picked.electrodes.positions_m[3], pos_of(montage.electrodes, "P8"))
    # and a file with the old names matches a stream with the new ones
    old = read_elc(DATA / "asa.elc").montage()
    assert old.pick(["T7", "T8"]).labels == ("T7", "T8")
    # a user alias map on top
    assert montage.pick(["EEG 001"], aliases={"EEG 001": "Cz"}).labels == ("EEG 001",)


def test_duplicate_labels_are_channel_errors(tmp_path):
    p = write(tmp_path, "dup.csv", "label,x,y,z\nCz,0,10,140\ncz,0,12,138\nFz,0,80,100\n")
    with pytest.raises(ChannelError, match=r"line 3: label 'cz' repeats 'Cz' from line 2"):
        read_positions_csv(p, unit="mm")


def test_detect_format_and_unknown_extension():
    assert detect_format("sub-01_task-x_electrodes.tsv") == "bids"
    assert detect_format("cap.ELC") == "elc" and detect_format("net.sfp") == "sfp"
    assert detect_format("x.bvct") == "bvef" and detect_format("x.hsp") == "polhemus"
    with pytest.raises(GeometryError, match=r"'.xyz'.*format="):
        detect_format("cap.xyz")


def test_registry_dispatches_every_fixture_to_its_family():
    # one registry: each extension / name ending chooses exactly one format, and
    # read_digitization reads every fixture through it
    from rtsource.sensors.readers import FORMATS, READERS

    seen = {}
    for f in FORMATS:
        assert READERS[f.name] is f.read
        for ext in f.extensions:
            assert ext not in seen, f"{ext} registered twice"
            seen[ext] = f.name
            assert detect_format("cap" + ext.upper()) == f.name
    with pytest.raises(TypeError):
        READERS["mine"] = read_elc  # the registry is read-only
    with pytest.raises(GeometryError) as exc:
        detect_format("cap.xyz")
    assert "*_electrodes.tsv, .bvct, .bvef, .csv, .elc, .elp, .hsp, .pos, .sfp, .tsv, .txt" in str(exc.value)
    reports = {}
    for path in sorted(DATA.iterdir()):
        if path.suffix == ".json":
            continue  # coordsystem sidecar and transform files are not position files
        dig = read_digitization(path)
        reports[path.name] = dig.report.format
    assert reports["sub-01_electrodes.tsv"] == "bids" and reports["noheader.tsv"] == "csv"
    assert reports["asa.elc"] == "elc" and reports["egi.sfp"] == "sfp" and reports["isotrak.hsp"] == "polhemus"
    assert reports["actiCAP_20.bvef"] == "bvef" and reports["captrak.bvct"] == "bvct"


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(GeometryError, match="does not exist"):
        read_digitization(tmp_path / "nope.elc")


def test_digitization_checks_frames_and_transforms():
    d = read_digitization(DATA / "generic.csv")
    from rtsource.anatomy.template import template_head_transform

    moved = d.transformed(template_head_transform().inverse())
    assert moved.frame == Frame.TEMPLATE and len(moved.electrodes) == len(d.electrodes)
    with pytest.raises(FrameError):
        d.transformed(template_head_transform())  # TEMPLATE -> HEAD does not start in HEAD
    with pytest.raises(GeometryError, match="different frames"):
        Digitization(d.electrodes, Points(np.zeros((3, 3)), "ctf", "m", ("NAS", "LPA", "RPA")))


# ---- transforms -------------------------------------------------------------------------------
def test_transform_files_json_and_text_agree(tmp_path):
    a = read_transform(DATA / "device_to_head.json")
    b = read_transform(DATA / "device_to_head.txt")
    assert a.from_frame == Frame.DEVICE and a.to_frame == Frame.HEAD
    assert np.allclose(a.matrix, b.matrix) and np.allclose(a.matrix[:3, 3], [0.0015, -0.012, 0.045])
    back = read_transform(write_transform(tmp_path / "t.json", a))
    assert np.allclose(back.matrix, a.matrix)


def test_transform_file_errors(tmp_path):
    text = (DATA / "device_to_head.txt").read_text()
    with pytest.raises(UnitError, match="translation is 46.6 m"):
        read_transform(write(tmp_path, "m.txt", text.replace("# unit: mm", "# unit: m")))
    with pytest.raises(GeometryError, match=r"line 6: a matrix row needs 4 numbers, got 3"):
        read_transform(write(tmp_path, "row.txt", text.replace("0.08715574  0.99619470 0.0 -12.0", "0.08715574  0.99619470 0.0")))
    with pytest.raises(GeometryError, match="not a rotation"):
        read_transform(write(tmp_path, "shear.txt", text.replace("-0.08715574 0.0   1.5", "-0.3 0.0   1.5")))
    with pytest.raises(GeometryError, match="'from' and 'to'"):
        read_transform(write(tmp_path, "noframe.txt", text.replace("# from: device\n", "")))


# ---- property tests: random and mutated files raise only rtsource errors ---------------------
FIXTURES = {
    "bids": "sub-01_electrodes.tsv",
    "elc": "asa.elc",
    "elc2": "asa_labelled.elc",
    "sfp": "egi.sfp",
    "bvef": "actiCAP_20.bvef",
    "bvct": "captrak.bvct",
    "pos": "digitizer.pos",
    "hsp": "isotrak.hsp",
    "csv": "generic.csv",
    "tsv": "noheader.tsv",
    "trans": "device_to_head.txt",
    "transjson": "device_to_head.json",
}
_WORK = Path(tempfile.mkdtemp(prefix="rtsource-readers-"))
_JUNK = st.sampled_from(["", " ", "\t", ",", ";", ":", "\n", "nan", "inf", "-", "1e999", "n/a", "<", ">", "</Name>", "%F", "#", "Labels", "Positions", "UnitPosition m", "\x00", "é", "{", "]", "0", "12.5", "LPA", "Cz"])


def _mutate(text: str, data) -> str:
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["delete", "insert", "replace_line", "dup_line", "swap"]))
        lines = text.split("\n")
        if op == "delete" and text:
            i = data.draw(st.integers(0, len(text) - 1))
            j = data.draw(st.integers(i, min(len(text), i + 20)))
            text = text[:i] + text[j:]
        elif op == "insert":
            i = data.draw(st.integers(0, len(text)))
            text = text[:i] + data.draw(st.one_of(_JUNK, st.text(max_size=8))) + text[i:]
        elif op == "replace_line":
            i = data.draw(st.integers(0, len(lines) - 1))
            lines[i] = data.draw(st.one_of(_JUNK, st.text(max_size=30)))
            text = "\n".join(lines)
        elif op == "dup_line":
            i = data.draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            text = "\n".join(lines)
        else:
            i, j = data.draw(st.integers(0, len(lines) - 1)), data.draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    return text


def _read_any(kind: str, path: Path):
    if kind.startswith("trans"):
        return read_transform(path)
    return read_digitization(path)


@pytest.mark.parametrize("kind", sorted(FIXTURES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_files_raise_only_rtsource_errors(kind, data):
    src = DATA / FIXTURES[kind]
    text = _mutate(src.read_text(encoding="utf-8"), data)
    folder = _WORK / kind
    folder.mkdir(exist_ok=True)
    path = folder / src.name
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    if kind == "bids":
        coord = (DATA / "sub-01_coordsystem.json").read_text()
        if data.draw(st.booleans()):
            coord = _mutate(coord, data)
        (folder / "sub-01_coordsystem.json").write_bytes(coord.encode("utf-8", "surrogatepass"))
    try:
        result = _read_any(kind, path)
    except RtsourceError:
        return
    if not kind.startswith("trans"):
        assert np.all(np.isfinite(result.all_positions_m()))


@pytest.mark.parametrize("suffix", [".elc", ".sfp", ".bvef", ".pos", ".csv", "_electrodes.tsv", ".json"])
@settings(max_examples=40, deadline=None)
@given(blob=st.binary(max_size=400))
def test_random_bytes_raise_only_rtsource_errors(suffix, blob):
    path = _WORK / f"random{suffix}"
    path.write_bytes(blob)
    try:
        read_transform(path) if suffix == ".json" else read_digitization(path)
    except RtsourceError:
        pass


def test_canonical_label_is_what_readers_dedupe_by():
    assert canonical_label("T3") == canonical_label("t7")
