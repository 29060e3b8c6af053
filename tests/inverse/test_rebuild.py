"""Bad-channel hot-swap: an operator bundle rebuilt without some channels equals a fresh
build on the remaining channels (rtsource.inverse.rebuild)."""

from __future__ import annotations

import numpy as np
import pytest

from rtsource.anatomy.source_space import SourceSpace
from rtsource.bundle import OperatorBundle, load_bundle, save_bundle
from rtsource.errors import InverseError
from rtsource.inverse.covariance import DataCovariance, NoiseCovariance, estimate_data_covariance
from rtsource.inverse.make import make_operator, operator_record
from rtsource.inverse.params import params_for
from rtsource.inverse.rebuild import BundleRebuilder, rebuild_without_channels
from rtsource.inverse.reference import reference_matrix

METHODS = [
    ("MNE", {}),
    ("dSPM", {}),
    ("sLORETA", {"fixed": True}),
    ("eLORETA", {"loose": 1.0}),
    ("LCMV", {"weight_norm": "unit-noise-gain-invariant", "orientation": "max-power"}),
    ("LCMV", {"weight_norm": None, "orientation": "free", "reg": 0.1}),
]


def data_cov_of(p, seed=0):
    rng = np.random.default_rng(seed)
    n = len(p.ch_names)
    x = rng.normal(size=(3000, n)) @ np.linalg.cholesky(p.cov).T
    x += np.outer(np.sin(np.arange(3000) * 0.07), p.gain[:, 15:18] @ [1.0, -1.0, 0.5]) * 3e-8
    return estimate_data_covariance(x, p.ch_names)


def bundle_for(p, method, params, reference="average"):
    """A bundle as the offline build would make it (gain and covariances cached)."""
    n = len(p.ch_names)
    cov = NoiseCovariance(p.cov, p.ch_names, 1000, "empirical", 0.0)
    dcov = data_cov_of(p) if method == "LCMV" else None
    typed = params_for(method, **params)
    op = make_operator(typed, p.gain, p.normals, cov, reference=reference, data_cov=dcov)
    n_src = p.normals.shape[0]
    sources = SourceSpace(p.sources, p.normals, np.full(n_src, 1e-5),
                          (np.arange(n_src) % 2).astype(np.int8), "template", "toy")
    b = OperatorBundle(
        kernel=op.kernel, noise_norm=op.noise_norm, n_orient=op.n_orient, method=op.method,
        output_unit=op.output_unit, ch_names=p.ch_names, ch_types=("eeg",) * n,
        ch_units=("V",) * n, reference=reference, sfreq=500.0, sources=sources,
        channel_positions_m=np.random.default_rng(0).normal(size=(n, 3)) * 0.09,
        channel_frame="template",
        params=operator_record(op, typed, reference=reference, data_cov=dcov),
        provenance={"test": True}, gain=p.gain, noise_cov=cov.data,
        source_rotation=op.source_rotation,
    )
    return b, op, dcov


@pytest.mark.parametrize("method, params", METHODS)
def test_rebuild_equals_fresh_build(small_problem, method, params):
    p = small_problem
    b, op, dcov = bundle_for(p, method, params)
    bad = ["E05", "E17"]
    nb = rebuild_without_channels(b, bad, data_cov=None if dcov is None else dcov.data)
    keep = [i for i, c in enumerate(p.ch_names) if c not in bad]
    names = tuple(p.ch_names[i] for i in keep)
    assert nb.ch_names == names and len(nb.ch_types) == len(nb.ch_units) == len(names)
    np.testing.assert_array_equal(nb.channel_positions_m, b.channel_positions_m[keep])
    np.testing.assert_array_equal(nb.gain, p.gain[keep])
    assert nb.params["bad_channels"] == bad and nb.provenance["rebuild"]["dropped"] == bad
    assert nb.method == b.method and nb.n_orient == b.n_orient and nb.sources is b.sources
    # fresh build on the remaining channels (average reference over them)
    cov = NoiseCovariance(p.cov[np.ix_(keep, keep)], names, 0, "empirical", 0.0)
    sub_dcov = None
    if dcov is not None:
        sub_dcov = DataCovariance(dcov.data[np.ix_(keep, keep)], names, 0, "empirical", 0.0)
    fresh = make_operator(params_for(method, **params), p.gain[keep], p.normals, cov,
                          reference="average", data_cov=sub_dcov)
    tol = 1e-5 if method == "eLORETA" else 1e-10  # eLORETA: warm start vs cold, both < eps
    err = np.linalg.norm(nb.kernel - fresh.kernel) / np.linalg.norm(fresh.kernel)
    assert err < tol, err
    np.testing.assert_allclose(nb.noise_norm, fresh.noise_norm, rtol=max(tol, 1e-10))
    assert nb.params["rank"] == len(names) - 1
    # the new reference ignores the common mode of the remaining channels
    assert np.abs(nb.kernel @ np.ones(len(names))).max() < 1e-9 * np.abs(nb.kernel).max() * len(names)


def test_rebuild_twice_accumulates_and_round_trips(tmp_path, small_problem):
    p = small_problem
    b, _, _ = bundle_for(p, "dSPM", {})
    nb = rebuild_without_channels(rebuild_without_channels(b, ["E03"]), ["E07", "E07"])
    assert nb.params["bad_channels"] == ["E03", "E07"]
    assert "E03" not in nb.ch_names and "E07" not in nb.ch_names and nb.n_channels == 22
    back = load_bundle(save_bundle(nb, tmp_path / "b.npz"))
    np.testing.assert_array_equal(back.kernel, nb.kernel)
    assert back.params["bad_channels"] == ["E03", "E07"]
    # the swapped operator on data without the bad channels == fresh operator
    x = np.random.default_rng(1).normal(size=(5, 22)) * 1e-6
    keep = [i for i, c in enumerate(p.ch_names) if c not in ("E03", "E07")]
    cov = NoiseCovariance(p.cov[np.ix_(keep, keep)], nb.ch_names, 0, "empirical", 0.0)
    fresh = make_operator(params_for("dSPM", snr=3.0), p.gain[keep], p.normals, cov,
                          reference="average")
    np.testing.assert_allclose(
        x @ nb.kernel.T, x @ fresh.kernel.T, rtol=1e-9, atol=1e-12 * np.abs(x @ fresh.kernel.T).max()
    )


def test_reference_channel(small_problem):
    p = small_problem
    b, _, _ = bundle_for(p, "dSPM", {}, reference="E02")
    nb = rebuild_without_channels(b, ["E09"])
    # still referenced to E02: the kernel ignores E02 (its column is minus the row sum)
    m = reference_matrix(nb.ch_names, "E02")
    np.testing.assert_allclose(nb.kernel @ m, nb.kernel, rtol=1e-9, atol=1e-9 * np.abs(nb.kernel).max())
    with pytest.raises(InverseError, match="channel 'E02' is the reference the data are re-referenced to"):
        rebuild_without_channels(b, ["E02"])


def test_bad_arguments(small_problem):
    p = small_problem
    b, _, _ = bundle_for(p, "dSPM", {})
    assert rebuild_without_channels(b, []) is b
    with pytest.raises(InverseError, match=r"bad is 'E01'; pass a list of channel names, e.g. \['E01'\]"):
        rebuild_without_channels(b, "E01")
    with pytest.raises(InverseError, match="bad channel 'Cz' is not in the bundle's channels"):
        rebuild_without_channels(b, ["Cz"])
    with pytest.raises(InverseError, match="leaves 1 channel"):
        rebuild_without_channels(b, list(p.ch_names[1:]))
    import dataclasses

    with pytest.raises(InverseError, match="does not cache gain"):
        rebuild_without_channels(dataclasses.replace(b, gain=None), ["E01"])
    lcmv, _, _ = bundle_for(p, "LCMV", {})
    with pytest.raises(InverseError, match="LCMV beamformer but no data covariance"):
        rebuild_without_channels(lcmv, ["E01"])
    with pytest.raises(InverseError, match=r"data_cov has shape \(3, 3\)"):
        rebuild_without_channels(lcmv, ["E01"], data_cov=np.eye(3))


def test_operator_record_round_trip(small_problem):
    """make_operator(operator_record(op).inverse) gives the operator back, for every method,
    also after the record's JSON round trip."""
    from rtsource.inverse.params import OperatorRecord

    p = small_problem
    cov = NoiseCovariance(p.cov, p.ch_names, 0, "empirical", 0.0)
    dcov = data_cov_of(p)
    for method, params in METHODS:
        typed = params_for(method, **params)
        op = make_operator(typed, p.gain, p.normals, cov, reference="average", data_cov=dcov)
        record = operator_record(op, typed, reference="average", data_cov=dcov)
        record = OperatorRecord.from_json(record.to_json())
        again = make_operator(record.inverse, p.gain, p.normals, cov, reference="average",
                              data_cov=dcov)
        np.testing.assert_allclose(again.kernel, op.kernel, rtol=1e-12,
                                   atol=1e-12 * np.abs(op.kernel).max())
    with pytest.raises(InverseError, match="method 'LCMV' needs a data covariance"):
        make_operator("LCMV", p.gain, p.normals, cov, reference="average")
    with pytest.raises(InverseError, match="method is 'beamformer'"):
        make_operator("beamformer", p.gain, p.normals, cov, reference="average")


def test_eloreta_warm_start_and_quick_swap(small_problem, caplog):
    """With the previous weights the rebuild warm-starts; eloreta_max_iter=1 gives a quick
    first operator (recorded as not converged) close to the converged one."""
    from rtsource.inverse.rebuild import rebuild_operator

    p = small_problem
    b, op, _ = bundle_for(p, "eLORETA", {"loose": 1.0})
    cold, _, _ = rebuild_operator(b, ["E04"])
    warm, keep, _ = rebuild_operator(b, ["E04"], eloreta_weights=op.source_weights)
    assert warm.details["converged"] and warm.details["iterations"] < cold.details["iterations"]
    assert np.linalg.norm(warm.kernel - cold.kernel) / np.linalg.norm(cold.kernel) < 1e-5
    from rtsource.inverse.make import weights_for_bundle

    stored = weights_for_bundle(op)  # the 2-D layout a bundle would keep
    assert stored.shape == (p.normals.shape[0], 9)
    quick = rebuild_without_channels(b, ["E04"], eloreta_weights=stored, eloreta_max_iter=1)
    assert quick.params["eloreta"]["iterations"] == 1
    assert quick.params["eloreta"]["max_iter"] == 20  # the configured value is kept
    err = np.linalg.norm(quick.kernel - cold.kernel) / np.linalg.norm(cold.kernel)
    print(f"quick swap (1 iteration from the old weights) vs converged: {err:.1e}; "
          f"iterations cold {cold.details['iterations']}, warm {warm.details['iterations']}")
    assert err < 1e-2
    assert list(keep) == [i for i in range(len(p.ch_names)) if i != 4]


def test_lcmv_new_data_covariance_without_bad_channels(small_problem):
    """The adaptive beamformer's rebuild: no bad channel, a new data covariance."""
    p = small_problem
    b, op, dcov = bundle_for(p, "LCMV", {})
    new_cov = data_cov_of(p, seed=7)
    nb = rebuild_without_channels(b, [], data_cov=new_cov.data)
    assert nb.ch_names == b.ch_names and nb.params["bad_channels"] == []
    cov = NoiseCovariance(p.cov, p.ch_names, 0, "empirical", 0.0)
    fresh = make_operator("LCMV", p.gain, p.normals, cov, reference="average", data_cov=new_cov)
    np.testing.assert_allclose(nb.kernel, fresh.kernel, rtol=1e-10, atol=1e-12 * np.abs(fresh.kernel).max())
    assert not np.allclose(nb.kernel, b.kernel)
    # without a data covariance nothing to do
    assert rebuild_without_channels(b, []) is b


# ---- the prepared lead field shared by rebuilds ----

def test_local_forward_drop_equals_fresh_preparation(small_problem):
    from rtsource.inverse.prepared_forward import prepare_forward

    p = small_problem
    full = prepare_forward(p.gain, p.normals)
    drop = [3, 17, 20]
    keep = [i for i in range(len(p.ch_names)) if i not in drop]
    got, fresh = full.drop(drop), prepare_forward(p.gain[keep], p.normals)
    np.testing.assert_array_equal(got.gain, fresh.gain)
    np.testing.assert_allclose(got.local, fresh.local, rtol=0, atol=1e-14 * np.abs(fresh.local).max())
    np.testing.assert_allclose(got.depth_gram, fresh.depth_gram, rtol=1e-12, atol=1e-13 * np.abs(fresh.depth_gram).max())
    assert not got.local.flags.writeable and not got.gain.flags.writeable


def test_local_forward_drop_switches_depth_channels_by_type(small_problem):
    """Depth weighting uses gradiometers if any: when the last one goes, magnetometers lead."""
    from rtsource.inverse.prepared_forward import prepare_forward

    p = small_problem
    n = len(p.ch_names)
    types_ = ["grad"] * 4 + ["mag"] * (n - 4)
    full = prepare_forward(p.gain, p.normals, types_)
    np.testing.assert_array_equal(full.depth_rows, [0, 1, 2, 3])
    got = full.drop([0, 1, 2, 3])
    fresh = prepare_forward(p.gain[4:], p.normals, types_[4:])
    np.testing.assert_array_equal(got.depth_rows, np.arange(n - 4))
    np.testing.assert_allclose(got.depth_gram, fresh.depth_gram, rtol=1e-12)
    partly = full.drop([1])  # one gradiometer less: a downdate of the Gram matrices
    np.testing.assert_allclose(partly.depth_gram, prepare_forward(p.gain[[0, 2, 3] + list(range(4, n))], p.normals, types_[:1] + types_[2:]).depth_gram, rtol=1e-10)


@pytest.mark.parametrize("method, params", METHODS)
def test_rebuild_with_prepared_forward_equals_without(small_problem, method, params):
    from rtsource.inverse.rebuild import prepare_bundle_forward

    p = small_problem
    b, op, dcov = bundle_for(p, method, params)
    fwd = prepare_bundle_forward(b)
    kw = {"data_cov": None if dcov is None else dcov.data}
    for bad in (["E05"], ["E05", "E20"], ["E23"]):
        a = rebuild_without_channels(b, bad, forward=fwd, **kw)
        c = rebuild_without_channels(b, bad, **kw)
        tol = 1e-6 if method == "eLORETA" else 1e-12
        assert np.linalg.norm(a.kernel - c.kernel) / np.linalg.norm(c.kernel) < tol
        np.testing.assert_array_equal(a.gain, c.gain)


def test_prepared_forward_of_another_bundle_is_refused(small_problem):
    from rtsource.inverse.rebuild import prepare_bundle_forward

    p = small_problem
    b, _, _ = bundle_for(p, "dSPM", {})
    other = prepare_bundle_forward(rebuild_without_channels(b, ["E01"]))
    with pytest.raises(InverseError, match="prepared for 23 channels"):
        rebuild_without_channels(b, ["E02"], forward=other)


# ---- BundleRebuilder: the OperatorRebuilder the pipeline injects into a running loop ------
# Its rebuilds are rebuild_without_channels' rebuilds, with or without the prepared lead
# field, and a lead field prepared for one bundle is never used for another.


@pytest.mark.parametrize("method, params", [("dSPM", {}), ("eLORETA", {"loose": 1.0}), ("LCMV", {"weight_norm": "unit-noise-gain-invariant", "orientation": "max-power"})])
def test_bundle_rebuilder_equals_rebuild_without_channels(small_problem, method, params):
    b, _, dcov = bundle_for(small_problem, method, params)
    bad = ["E05", "E17"]
    data_cov = None if dcov is None else dcov.data * 1.5  # a newer covariance, as the adaptive beamformer hands over
    extra = {"eloreta_max_iter": 1} if method == "eLORETA" else {}
    direct = rebuild_without_channels(b, bad, data_cov=data_cov, **extra)
    rebuilder = BundleRebuilder()
    cold = rebuilder.without_channels(b, bad, data_cov=data_cov, max_iter=extra.get("eloreta_max_iter"))
    rebuilder.prepare(b)
    warm = rebuilder.without_channels(b, tuple(bad), data_cov=data_cov, max_iter=extra.get("eloreta_max_iter"))
    for nb in (cold, warm):
        assert nb.ch_names == direct.ch_names and nb.params["bad_channels"] == bad
        np.testing.assert_allclose(nb.kernel, direct.kernel, rtol=1e-10, atol=1e-12 * np.abs(direct.kernel).max())
        np.testing.assert_allclose(nb.noise_norm, direct.noise_norm, rtol=1e-10)


def test_bundle_rebuilder_prepared_lead_field_belongs_to_its_bundle(small_problem):
    import dataclasses

    a, _, _ = bundle_for(small_problem, "dSPM", {})
    rng = np.random.default_rng(3)
    other = dataclasses.replace(small_problem, gain=small_problem.gain * rng.uniform(0.5, 2.0, small_problem.gain.shape))  # another head
    b, _, _ = bundle_for(other, "MNE", {})
    rebuilder = BundleRebuilder()
    rebuilder.prepare(a)
    nb = rebuilder.without_channels(b, ["E03"])
    assert nb.method == "MNE"
    np.testing.assert_allclose(nb.kernel, rebuild_without_channels(b, ["E03"]).kernel, rtol=1e-10)
