"""Typed inverse parameters (rtsource.inverse.params): JSON round trips, strict errors, one
place for every default, the bundle's record (old layouts included) and the output unit of
every method / weight normalisation from a configuration."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import numpy as np
import pytest

from rtsource.bundle import load_bundle, save_bundle
from rtsource.config import InverseSettings, settings_from_dict
from rtsource.errors import BundleError, ConfigError, InverseError
from rtsource.inverse.beamformer import make_lcmv
from rtsource.inverse.covariance import DataCovariance, NoiseCovariance, estimate_data_covariance
from rtsource.inverse.eloreta import DEFAULT_OPTIONS
from rtsource.inverse.make import make_operator, operator_record
from rtsource.inverse.minimum_norm import make_inverse_operator
from rtsource.inverse.params import (
    WEIGHT_NORMS,
    EloretaOptions,
    LcmvParams,
    MinimumNormParams,
    OperatorRecord,
    params_for,
    params_from_json,
)
from rtsource.inverse.rebuild import rebuild_without_channels

OLD_BUNDLES = Path(__file__).parents[1] / "data" / "bundles"


def json_round_trip(obj):
    """Through real JSON text, as a bundle header stores it."""
    return json.loads(json.dumps(obj))


# ---- JSON round trips --------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        MinimumNormParams(),
        MinimumNormParams(method="sLORETA", snr=2.0, lambda2=0.3, loose=1.0, depth=None, depth_limit=None,
                          fixed=True, rank={"eeg": 40, "meg": 90}),
        MinimumNormParams(method="eLORETA", eloreta=EloretaOptions(eps=1e-4, max_iter=3, force_equal=True)),
        LcmvParams(),
        LcmvParams(reg=0.5, weight_norm="nai", orientation="free", depth=0.8, rank=12),
    ],
)
def test_params_json_round_trip(params):
    back = params_from_json(json_round_trip(params.to_json()))
    assert back == params and type(back) is type(params)
    assert back.to_json() == params.to_json()


def test_record_json_round_trip_keeps_params_and_facts():
    record = OperatorRecord(
        inverse=MinimumNormParams(method="eLORETA"), reference="Cz", rank=31, block_ranks={"eeg": 31},
        bad_channels=("Fp1", "T7"), fit={"iterations": 7, "final_change": 3e-7, "converged": True},
        notes={"made_by": "a test"},
    )
    back = OperatorRecord.from_json(json_round_trip(record.to_json()))
    assert back == record and back.inverse == record.inverse and back.bad_channels == ("Fp1", "T7")
    # the read-only mapping shows the JSON layout, as stream metadata and displays read it
    assert back["eloreta"]["iterations"] == 7 and back["eloreta"]["max_iter"] == 20
    assert back["rank"] == 31 and back["rank_requested"] is None and back["reference"] == "Cz"
    assert dict(back) == record.to_json()
    with pytest.raises(TypeError):
        back["rank"] = 3  # read-only

    lcmv = OperatorRecord(inverse=LcmvParams(weight_norm="unit-gain"), rank=15,
                          fit={"data_rank": 15, "loading": 0.1, "noise_level": None},
                          data_cov={"n_samples": 2000, "method": "empirical"})
    back = OperatorRecord.from_json(json_round_trip(lcmv.to_json()), method="LCMV")
    assert back == lcmv and back.data_cov["n_samples"] == 2000 and back["loading"] == 0.1


def test_lcmv_accepts_mne_spelling_of_unit_gain():
    assert LcmvParams(weight_norm=None).weight_norm == "unit-gain"
    assert params_for("lcmv", weight_norm=None) == LcmvParams(weight_norm="unit-gain")


# ---- strict errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: MinimumNormParams(snr=0), r"snr is 0; pass a positive finite SNR"),
        (lambda: MinimumNormParams(lambda2=float("nan")), r"lambda2 is nan; pass a positive"),
        (lambda: MinimumNormParams(loose=1.5), r"loose is 1.5; pass a value in \[0, 1\]"),
        (lambda: MinimumNormParams(depth=-1), r"depth is -1; pass a non-negative exponent"),
        (lambda: MinimumNormParams(depth_limit=0.5), r"depth_limit is 0.5; pass a ratio >= 1"),
        (lambda: MinimumNormParams(fixed="yes"), r"fixed is 'yes'; pass true or false"),
        (lambda: MinimumNormParams(rank=2.5), r"rank is 2.5; pass a positive integer"),
        (lambda: MinimumNormParams(rank={"mag": 3}), r"rank has 'mag': 3; give positive integers for 'eeg'"),
        (lambda: MinimumNormParams(method="LCMV"), r"method is 'LCMV' but these are minimum-norm parameters; use LcmvParams"),
        (lambda: MinimumNormParams(method="beamformer"), r"method is 'beamformer'; use one of MNE, dSPM"),
        (lambda: EloretaOptions(max_iter=0), r"eloreta.max_iter is 0; pass a positive integer"),
        (lambda: EloretaOptions(eps=-1.0), r"eloreta.eps is -1.0; pass a positive tolerance"),
        (lambda: LcmvParams(reg=-0.1), r"reg is -0.1; pass a non-negative fraction"),
        (lambda: LcmvParams(weight_norm="unit"), r"weight_norm is 'unit'; use one of 'unit-gain'"),
        (lambda: LcmvParams(orientation="normal"), r"orientation is 'normal'; use one of 'fixed', 'free', 'max-power'"),
        (lambda: LcmvParams(depth=float("inf")), r"depth is inf; pass a non-negative exponent"),
    ],
)
def test_out_of_range_values_name_key_value_and_fix(make, message):
    with pytest.raises(InverseError, match=message):
        make()


def test_unknown_keys_are_errors_that_list_the_allowed_ones():
    with pytest.raises(InverseError, match=r"minimum-norm parameters has unknown key\(s\) 'snr_db'; allowed keys are depth, "):
        params_from_json({"method": "dSPM", "snr_db": 10})
    with pytest.raises(InverseError, match=r"LCMV parameters has unknown key\(s\) 'loose'"):
        params_from_json({"method": "LCMV", "loose": 1.0})
    with pytest.raises(InverseError, match=r"eloreta has unknown key\(s\) 'tol'"):
        params_from_json({"method": "eLORETA", "eloreta": {"tol": 1e-3}})
    with pytest.raises(InverseError, match=r"no 'method'"):
        params_from_json({"snr": 3.0})
    good = OperatorRecord(inverse=MinimumNormParams(), rank=3).to_json()
    with pytest.raises(InverseError, match=r"params has unknown key\(s\) 'synthetic'"):
        OperatorRecord.from_json({**good, "synthetic": True})
    with pytest.raises(InverseError, match=r"params layout is 7"):
        OperatorRecord.from_json({**good, "layout": 7})
    with pytest.raises(InverseError, match=r"loose is 2.0"):
        OperatorRecord.from_json({**good, "loose": 2.0})


def test_bundle_refuses_params_of_another_operator(small_bundle):
    with pytest.raises(BundleError, match=r"params are for 'LCMV' .* but the bundle is 'dSPM'"):
        dataclasses.replace(small_bundle, params=OperatorRecord(inverse=LcmvParams()))
    with pytest.raises(BundleError, match=r"bundle params: loose is 3"):
        dataclasses.replace(small_bundle, params={"loose": 3})


# ---- one place for every default ---------------------------------------------------------


def _signature_defaults(func, names):
    sig = inspect.signature(func)
    return {n: sig.parameters[n].default for n in names}


def test_defaults_have_one_source():
    mn, lcmv, el = MinimumNormParams(), LcmvParams(), EloretaOptions()
    inv = InverseSettings()
    assert inv.params() == MinimumNormParams()  # the config's [inverse] is the params' defaults
    assert settings_from_dict({"inverse": {"method": "LCMV"}}).inverse.params() == LcmvParams()
    mn_keys = ("method", "snr", "lambda2", "loose", "depth", "fixed", "depth_limit")
    assert _signature_defaults(make_inverse_operator, mn_keys) == {k: getattr(mn, k) for k in mn_keys}
    lcmv_keys = ("reg", "weight_norm", "orientation", "depth")
    assert _signature_defaults(make_lcmv, lcmv_keys) == {k: getattr(lcmv, k) for k in lcmv_keys}
    assert dict(DEFAULT_OPTIONS) == el.to_json()
    # LCMV's own depth default is none (MNE-Python's), not the minimum-norm 0.8
    assert lcmv.depth is None and mn.depth == 0.8


def test_config_keys_reach_the_typed_params():
    s = settings_from_dict({"inverse": {"method": "eLORETA", "snr": 2.0, "loose": 1.0, "depth": 0.0, "fixed": True,
                                        "eloreta_eps": 1e-5, "eloreta_max_iter": 5}})
    assert s.inverse.params() == MinimumNormParams(method="eLORETA", snr=2.0, loose=1.0, depth=None, fixed=True,
                                                   eloreta=EloretaOptions(eps=1e-5, max_iter=5))
    s = settings_from_dict({"inverse": {"method": "LCMV", "reg": 0.4, "weight_norm": "nai", "lcmv_orientation": "free",
                                        "lcmv_depth": 0.5, "depth": 0.9}})
    assert s.inverse.params() == LcmvParams(reg=0.4, weight_norm="nai", orientation="free", depth=0.5)
    with pytest.raises(ConfigError, match=r"\[inverse\].lcmv_depth = -1: must be at least 0"):
        settings_from_dict({"inverse": {"lcmv_depth": -1}})


# ---- output unit of every method / weight normalisation ----------------------------------

UNITS = {
    ("MNE", None): "A*m", ("dSPM", None): "", ("sLORETA", None): "", ("eLORETA", None): "A*m",
    ("LCMV", "unit-gain"): "A*m", ("LCMV", "unit-noise-gain"): "",
    ("LCMV", "unit-noise-gain-invariant"): "", ("LCMV", "nai"): "",
}


def _covariances(p):
    noise = NoiseCovariance(p.cov, p.ch_names, 1000, "empirical", 0.0)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, len(p.ch_names))) @ np.linalg.cholesky(p.cov).T
    x += np.outer(np.sin(np.arange(3000) * 0.07), p.gain[:, 15:18] @ [1.0, -1.0, 0.5]) * 3e-8
    return noise, estimate_data_covariance(x, p.ch_names)


@pytest.mark.parametrize("method, weight_norm", sorted(UNITS, key=str))
def test_output_unit_of_every_method_from_a_default_config(small_problem, method, weight_norm):
    """Config -> typed params -> operator -> bundle record: the unit the defaults give.
    (LCMV used to receive the minimum-norm depth 0.8, which made unit gain "a.u.".)"""
    p = small_problem
    table = {"method": method} if weight_norm is None else {"method": method, "weight_norm": weight_norm}
    params = settings_from_dict({"inverse": table}).inverse.params()
    noise, data = _covariances(p)
    op = make_operator(params, p.gain, p.normals, noise, reference="average",
                       data_cov=data if method == "LCMV" else None)
    assert op.output_unit == UNITS[(method, weight_norm)]
    if method == "LCMV":
        assert params.output_unit == op.output_unit
    assert operator_record(op, params, reference="average").inverse == params


def test_lcmv_depth_weighting_only_when_asked(small_problem):
    p = small_problem
    noise, data = _covariances(p)
    for weight_norm in WEIGHT_NORMS:
        params = LcmvParams(weight_norm=weight_norm, depth=0.8)
        op = make_operator(params, p.gain, p.normals, noise, reference="average", data_cov=data)
        assert op.output_unit == params.output_unit == ("a.u." if weight_norm == "unit-gain" else "")


# ---- bundles written before the typed parameters -----------------------------------------


@pytest.mark.parametrize("name", ["dspm", "eloreta", "lcmv"])
def test_bundles_with_the_old_params_layout_load_and_rebuild(tmp_path, name):
    """Fixtures written by rtsource da61aa8 (flat params without a layout marker)."""
    old = load_bundle(OLD_BUNDLES / f"old_layout_{name}.npz")
    rec = old.params
    assert isinstance(rec, OperatorRecord) and rec.reference == "average" and rec.rank == 15
    if name == "dspm":
        assert rec.inverse == MinimumNormParams(method="dSPM", snr=3.0, lambda2=1 / 9, loose=0.2, depth=0.8)
    elif name == "eloreta":
        assert rec.inverse == MinimumNormParams(method="eLORETA", snr=3.0, lambda2=1 / 9, depth=None)
        assert rec.fit["converged"] is True and rec["eloreta"]["iterations"] == rec.fit["iterations"]
    else:
        # what the old build gave LCMV (the minimum-norm depth): kept, since the kernel has it
        assert rec.inverse == LcmvParams(weight_norm="unit-gain", depth=0.8)
        assert old.output_unit == "a.u." == rec.inverse.output_unit
        assert rec.data_cov == {"n_samples": 2000, "method": "empirical"} and rec.fit["data_rank"] == 15
    # rebuilt without a channel from the typed parameters == a fresh build on the rest
    nb = rebuild_without_channels(old, ["E03"])
    keep = [i for i, c in enumerate(old.ch_names) if c != "E03"]
    names = tuple(old.ch_names[i] for i in keep)
    ix = np.ix_(keep, keep)
    noise = NoiseCovariance(old.noise_cov[ix], names, 0, "empirical", 0.0)
    data = DataCovariance(old.data_cov[ix], names, 0, "empirical", 0.0) if old.data_cov is not None else None
    fresh = make_operator(rec.inverse, old.gain[keep], old.sources.normals, noise, reference="average", data_cov=data)
    tol = 1e-5 if name == "eloreta" else 1e-10
    assert np.linalg.norm(nb.kernel - fresh.kernel) / np.linalg.norm(fresh.kernel) < tol
    assert nb.params.inverse == rec.inverse and nb.params.bad_channels == ("E03",)
    # saved again, the new layout is strict and carries the same parameters
    back = load_bundle(save_bundle(nb, tmp_path / "new.npz"))
    assert back.params == nb.params and back.params["layout"] == 2
    if name != "lcmv":  # the old fixed-at-build kernel of the full bundle is unchanged
        np.testing.assert_array_equal(old.kernel, load_bundle(OLD_BUNDLES / f"old_layout_{name}.npz").kernel)


def test_foreign_keys_of_old_layouts_are_kept_as_notes():
    """Old bundles from the MNE-Python bridge and tools recorded keys that are no parameters."""
    rec = OperatorRecord.from_json({"lambda2": 0.1, "pick_ori": "pooled", "loose": 0.2, "rank": 59,
                                    "reference": "projectors"}, method="dSPM")
    assert rec.inverse == MinimumNormParams(lambda2=0.1) and rec.notes == {"pick_ori": "pooled"}
    assert rec.reference == "projectors" and rec["notes"]["pick_ori"] == "pooled"
    assert OperatorRecord.from_json({"synthetic": True}, method="MNE").notes == {"synthetic": True}


def test_build_bundle_carries_the_typed_params_of_the_config():
    """setup's path, config -> build -> operator -> bundle, on the template head: unit-gain
    LCMV from a default [inverse] section is in A*m and records no depth weighting."""
    from rtsource.build import build_bundle, compute_leadfield

    s = settings_from_dict({"head": {"bem_order": 3}, "noise_cov": {"source": "ad_hoc"},
                            "inverse": {"method": "LCMV", "weight_norm": "unit-gain", "reg": 0.3}})
    slf = compute_leadfield(s)
    lf = slf.leadfield
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, len(lf.ch_names))) * 1e-6
    x += np.outer(np.sin(np.arange(4000) * 0.1), lf.gain[:, 30:33] @ [1.0, 0.0, 1.0]) * 1e-8
    b = build_bundle(s, sfreq=250.0, data_cov=estimate_data_covariance(x, lf.ch_names), leadfield=slf)
    assert b.params.inverse == LcmvParams(weight_norm="unit-gain", reg=0.3) and b.output_unit == "A*m"
    assert b.params.data_cov == {"n_samples": 4000, "method": "empirical"}
    mn = build_bundle(dataclasses.replace(s, inverse=InverseSettings()), sfreq=250.0, leadfield=slf)
    assert mn.params.inverse == MinimumNormParams() and mn.output_unit == "" and mn.method == "dSPM"


def test_old_layout_nulls_take_the_defaults():
    rec = OperatorRecord.from_json({"method": "dSPM", "snr": None, "lambda2": 0.2, "eloreta": None}, method="dSPM")
    assert rec.inverse == MinimumNormParams(lambda2=0.2)
    with pytest.raises(InverseError, match="snr is None"):  # the strict layout has no such leniency
        OperatorRecord.from_json({**OperatorRecord(inverse=MinimumNormParams()).to_json(), "snr": None})


def test_make_operator_takes_typed_params_or_a_method_name_only(small_problem):
    p = small_problem
    noise = NoiseCovariance(p.cov, p.ch_names, 0, "empirical", 0.0)
    by_name = make_operator("sLORETA", p.gain, p.normals, noise, reference="average")
    typed = make_operator(MinimumNormParams(method="sLORETA"), p.gain, p.normals, noise, reference="average")
    np.testing.assert_array_equal(by_name.kernel, typed.kernel)
    with pytest.raises(InverseError, match=r"params is a dict; pass MinimumNormParams\(...\), LcmvParams\(...\) or a method name"):
        make_operator({"method": "dSPM", "snr": 3.0}, p.gain, p.normals, noise, reference="average")
    with pytest.raises(InverseError, match=r"the operator is 'sLORETA' but params are for 'dSPM'"):
        operator_record(typed, MinimumNormParams(), reference="average")


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("rank", "x", r"rank is 'x'; pass the kept rank"),
        ("rank", True, r"rank is True"),
        ("block_ranks", "abc", r"block_ranks is 'abc'; expected a JSON object"),
        ("block_ranks", {"eeg": "a"}, r"block_ranks is \{'eeg': 'a'\}; pass integers"),
        ("bad_channels", 5, r"bad_channels is 5; pass a list of channel names"),
        ("bad_channels", [1, 2], r"bad_channels is \[1, 2\]"),
        ("data_cov", 5, r"data_cov is 5; expected a JSON object"),
        ("notes", [1], r"notes is \[1\]; expected a JSON object"),
        ("eloreta", [1], r"eloreta is \[1\]; pass EloretaOptions"),
        ("method", 5, r"method is 5; use one of"),
    ],
)
def test_hostile_params_in_a_bundle_file_are_refused_with_a_bundle_error(tmp_path, small_bundle, key, value, message):
    """A bundle is untrusted input: wrong types in its params are a clear BundleError, never
    a TypeError from deep inside (the checksum is recomputed, as a forger would)."""
    from rtsource.bundle import _checksum

    path = save_bundle(small_bundle, tmp_path / "b.npz")
    with np.load(path, allow_pickle=False) as z:
        members = {k: z[k] for k in z.files}
    header = json.loads(members.pop("header").tobytes().decode())
    header["params"][key] = value
    header["checksum"] = _checksum(header, members)
    members["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **members)
    with pytest.raises(BundleError, match=message):
        load_bundle(path)
