"""The public Python API (``import rtsource``): lazy, complete, and equal to the command line.

The docs' example script (docs/examples/estimator_script.py) is run as a file; the chunks it
processed with the Estimator are then pushed through a real pylsl outlet into a real
``rtsource run`` process, and what that publishes (sources and ROIs, read by real inlets)
must equal what the Estimator returned, to float32 precision.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import rtsource
from rtsource.config import NoiseCovSettings, Settings

from .stream.lsl_helpers import Collector, eeg_outlet, unique

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "estimator_script.py"
EXAMPLE_CONFIG = ROOT / "docs" / "examples" / "estimator.toml"
HEAVY = ("numpy", "numba", "scipy", "pylsl", "mne", "PySide6", "pyqtgraph")


def _imported_after(code: str) -> list[str]:
    """Top-level heavy packages imported by running ``code`` in a fresh interpreter."""
    probe = f"import sys\n{code}\nprint(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return eval(proc.stdout.strip().splitlines()[-1])  # a list literal we printed ourselves


def test_import_rtsource_imports_nothing_heavy():
    assert _imported_after("import rtsource") == []


def test_command_line_parser_imports_nothing_heavy():
    assert _imported_after("import rtsource.cli as c; c.build_parser().parse_args(['view'])") == []
    proc = subprocess.run([sys.executable, "-m", "rtsource.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "replay" in proc.stdout


def test_a_name_loads_its_module_on_first_use():
    config_only = _imported_after("import rtsource; rtsource.load_config")
    assert not {"numba", "scipy", "pylsl"} & set(config_only), config_only
    assert "numpy" in _imported_after("import rtsource; rtsource.Estimator")


def test_every_public_name_resolves():
    for name in rtsource.__all__:
        assert getattr(rtsource, name) is not None, name
    assert set(rtsource.__all__) <= set(dir(rtsource))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rtsource.nope  # noqa: B018


# ---- setup -----------------------------------------------------------------------------

def _fast_settings(**sections) -> Settings:
    """Defaults with a small cortex (quick lead field); noise from a calibration."""
    from rtsource.config import SourceSpaceSettings

    return dataclasses.replace(Settings(), source_space=SourceSpaceSettings(spacing="ico4"), **sections)


def _shuffled_recording(rec, rng, *, extra: bool, unit_factor: float, unit: str):
    """The same samples with columns shuffled, optionally an extra channel, in another unit."""
    order = rng.permutation(rec.n_channels)
    data = rec.data[:, order].astype(np.float64) * unit_factor
    names = [rec.ch_names[i] for i in order]
    types = [rec.ch_types[i] for i in order]
    if extra:
        data = np.hstack([data, rng.normal(size=(rec.n_samples, 1))])
        names, types = names + ["EOG1"], types + ["EOG"]
    return dataclasses.replace(rec, data=data, ch_names=tuple(names), ch_types=tuple(types), ch_units=(unit,) * len(names))


def test_setup_takes_calibration_from_a_recording_by_channel_name(tmp_path):
    settings = _fast_settings()
    rec = rtsource.simulate_recording(settings, seconds=4.0)
    assert rec.ch_units[0] == "uV" and rec.data.shape == (2000, 64)
    a = rtsource.setup(settings, calibration=rec, out=tmp_path / "a.npz")
    other = _shuffled_recording(rec, np.random.default_rng(1), extra=True, unit_factor=1e-6, unit="V")
    b = rtsource.setup(settings, calibration=other)
    assert a.sfreq == b.sfreq == 500.0
    np.testing.assert_allclose(b.noise_cov, a.noise_cov, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(b.kernel, a.kernel, rtol=1e-6, atol=1e-9 * np.abs(a.kernel).max())
    assert rtsource.load_bundle(tmp_path / "a.npz").ch_names == a.ch_names
    with pytest.raises(rtsource.ConfigError, match="500 Hz"):
        rtsource.setup(settings, calibration=rec, sfreq=250.0)


def write_rest_brainvision(folder: Path, seed: int = 3, sfreq: float = 250.0) -> tuple[Path, np.ndarray]:
    """A 4 s, 64-channel BrainVision rest recording (0.1 uV resolution); returns the path and the data in uV."""
    from rtsource.sensors.montage import CAP_64

    rng = np.random.default_rng(seed)
    raw = np.round(rng.normal(size=(int(4 * sfreq), 64)) * 50.0).astype("<i2")
    (folder / "rest.eeg").write_bytes(raw.tobytes())
    (folder / "rest.vmrk").write_text(
        "Brain Vision Data Exchange Marker File, Version 1.0\n\n[Common Infos]\nCodepage=UTF-8\nDataFile=rest.eeg\n\n"
        "[Marker Infos]\nMk1=New Segment,,1,1,0,0\n"
    )
    chans = "".join(f"Ch{i + 1}={nm},,0.1,µV\n" for i, nm in enumerate(CAP_64))
    (folder / "rest.vhdr").write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n\n[Common Infos]\nCodepage=UTF-8\nDataFile=rest.eeg\nMarkerFile=rest.vmrk\n"
        f"DataFormat=BINARY\nDataOrientation=MULTIPLEXED\nNumberOfChannels=64\nSamplingInterval={1e6 / sfreq:g}\n\n"
        f"[Binary Infos]\nBinaryFormat=INT_16\n\n[Channel Infos]\n{chans}\n",
        encoding="utf-8",
    )
    return folder / "rest.vhdr", raw * 0.1


def test_setup_reads_a_calibration_file(tmp_path):
    from rtsource.sensors.montage import CAP_64

    settings = _fast_settings()
    path, data_uv = write_rest_brainvision(tmp_path)
    from_file = rtsource.setup(settings, calibration=path)
    rec = rtsource.Recording(data_uv, 250.0, CAP_64, ("EEG",) * 64, ("uV",) * 64, name="rest", type="EEG", path="mem", format="test")
    from_memory = rtsource.setup(settings, calibration=rec)
    assert from_file.sfreq == 250.0
    np.testing.assert_allclose(from_file.noise_cov, from_memory.noise_cov, rtol=1e-9)


def test_setup_captures_the_calibration_from_a_stream():
    from rtsource.config import StreamSettings
    from rtsource.sensors.montage import CAP_64

    name = unique("api-setup")
    settings = _fast_settings(noise_cov=NoiseCovSettings(seconds=1.0), stream=StreamSettings(name=name, resolve_timeout=30.0))
    outlet = eeg_outlet(name, list(CAP_64), sfreq=200.0)
    rng = np.random.default_rng(5)
    stop = False

    def push():
        while not stop:
            outlet.push_chunk((rng.normal(size=(10, 64)) * 5).astype(np.float32))
            time.sleep(0.05)

    import threading

    thread = threading.Thread(target=push, daemon=True)
    thread.start()
    messages = []
    try:
        bundle = rtsource.setup(settings, progress=messages.append)
    finally:
        stop = True
        thread.join(5)
    assert bundle.sfreq == 200.0
    assert bundle.provenance["noise_cov"]["n_samples"] == 200
    assert any("capturing 1 s" in m and name in m for m in messages)


def test_setup_without_a_rate_says_how_to_give_one():
    settings = _fast_settings(noise_cov=NoiseCovSettings(source="ad_hoc"))
    with pytest.raises(rtsource.ConfigError, match=r"sampling rate is unknown.*\[stream\] sfreq"):
        rtsource.setup(settings)
    assert rtsource.setup(settings, sfreq=256.0).sfreq == 256.0


# ---- the Estimator ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_bundle():
    settings = _fast_settings(noise_cov=NoiseCovSettings(source="ad_hoc"))
    return rtsource.setup(settings, sfreq=500.0)


def test_estimator_output_does_not_depend_on_chunking_or_column_order(small_bundle):
    from rtsource.sensors.montage import CAP_64

    rng = np.random.default_rng(0)
    data = (rng.normal(size=(700, 64)) * 10 + 30).astype(np.float32)
    filt = rtsource.FilterSpec(1.0, 40.0, 2)
    whole = rtsource.Estimator(small_bundle, CAP_64, "uV", filter=filt).process(data).sources
    est = rtsource.Estimator(small_bundle, CAP_64, "uV", filter=filt, max_chunk=64)
    chunked = np.vstack([est.process(data[i : i + 7]).sources for i in range(0, 700, 7)])
    np.testing.assert_allclose(chunked, whole, rtol=2e-6, atol=1e-6 * np.abs(whole).max())
    order = rng.permutation(64)
    shuffled = rtsource.Estimator(small_bundle, [CAP_64[i] for i in order], "uV", filter=filt).process(data[:, order]).sources
    np.testing.assert_allclose(shuffled, whole, rtol=2e-6, atol=1e-6 * np.abs(whole).max())
    volts = rtsource.Estimator(small_bundle, CAP_64, "V", filter=filt).process(data * 1e-6).sources
    np.testing.assert_allclose(volts, whole, rtol=1e-4, atol=1e-4 * np.abs(whole).max())


def test_estimator_restart_after_a_gap_starts_the_filter_afresh(small_bundle):
    from rtsource.sensors.montage import CAP_64

    rng = np.random.default_rng(1)
    a, b = (rng.normal(size=(2, 300, 64)) * 10 + 50).astype(np.float32)
    filt = rtsource.FilterSpec(1.0, 0.0, 2)
    est = rtsource.Estimator(small_bundle, CAP_64, "uV", filter=filt)
    est.process(a)
    continued = est.process(b).sources
    fresh = rtsource.Estimator(small_bundle, CAP_64, "uV", filter=filt).process(b).sources
    est2 = rtsource.Estimator(small_bundle, CAP_64, "uV", filter=filt)
    est2.process(a)
    est2.restart()
    np.testing.assert_array_equal(est2.process(b).sources, fresh)
    assert not np.allclose(continued, fresh)


def test_estimator_errors_name_the_argument_and_the_fix(small_bundle):
    from rtsource.sensors.montage import CAP_64

    with pytest.raises(rtsource.ChannelError, match="Fp1"):
        rtsource.Estimator(small_bundle, CAP_64[1:], "uV")
    with pytest.raises(rtsource.ChannelError, match="ch_units has 2 entries for 64"):
        rtsource.Estimator(small_bundle, CAP_64, ["uV", "uV"])
    with pytest.raises(rtsource.UnitError, match="'T'"):
        rtsource.Estimator(small_bundle, CAP_64, "T")
    with pytest.raises(rtsource.ConfigError, match="sfreq = 250 Hz but the bundle was built for 500 Hz"):
        rtsource.Estimator(small_bundle, CAP_64, "uV", sfreq=250.0)
    est = rtsource.Estimator(small_bundle, CAP_64, "uV")
    with pytest.raises(rtsource.ChannelError, match=r"expected \(n_samples, 64\)"):
        est.process(np.zeros((10, 63)))
    with pytest.raises(rtsource.ConfigError, match="bandpower needs ROIs"):
        from rtsource.stream.bandpower import BandPowerSpec

        rtsource.Estimator(small_bundle, CAP_64, "uV", bandpower=BandPowerSpec.from_mapping({"alpha": [8, 12]}))


def test_estimator_band_power_from_the_config(small_bundle, tmp_path):
    from rtsource.sensors.montage import CAP_64

    cfg = tmp_path / "bp.toml"
    cfg.write_text('[[roi]]\nname = "occ"\ncenter_mm = [20.0, -92.0, 2.0]\nradius_mm = 20.0\n[bandpower]\nbands = {alpha = [8, 12]}\nrate_hz = 10.0\n')
    est = rtsource.Estimator.from_config(cfg, small_bundle, CAP_64, "uV")
    assert est.roi_names == ("occ",) and est.bandpower_labels == ("occ_alpha",)
    rng = np.random.default_rng(2)
    out = est.process((rng.normal(size=(1000, 64)) * 10).astype(np.float32))
    assert out.rois.shape == (1000, 1)
    assert out.bandpower.shape == (len(out.bandpower_times), 1) and 15 <= len(out.bandpower_times) <= 21  # 10 Hz over 2 s


# ---- the docs' script against `rtsource run` ---------------------------------------------

def _run_loop_on(bundle_path: Path, config: Path, names, units, chunks: np.ndarray, n_roi: int):
    in_name, out_name = unique("api-in"), unique("api-out")
    outlet = eeg_outlet(in_name, list(names), sfreq=500.0, unit=units[0])
    cmd = [sys.executable, "-m", "rtsource.cli", "run", str(bundle_path), "--config", str(config), "--stream-name", in_name,
           "--stream-type", "EEG", "--outlet-name", out_name, "--idle-timeout", "3", "--resolve-timeout", "30"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sources, rois = Collector(out_name, timeout=90), Collector(out_name + "-roi", timeout=30)
        assert outlet.wait_for_consumers(timeout=30), "rtsource run never subscribed to the input"
        stamps = 100.0 + np.arange(len(chunks)) / 500.0
        for start in range(0, len(chunks), 10):
            outlet.push_chunk(np.ascontiguousarray(chunks[start : start + 10]), stamps[start : start + 10].tolist())
            if start % 500 == 0:
                time.sleep(0.02)
        deadline = time.monotonic() + 120
        while min(sources.n_samples, rois.n_samples) < len(chunks) and time.monotonic() < deadline:
            time.sleep(0.2)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    sources.stop()
    rois.stop()
    assert proc.returncode == 0, stderr[-3000:]
    (src, src_ts), (roi, roi_ts) = sources.data(), rois.data()
    np.testing.assert_array_equal(src_ts, stamps)
    np.testing.assert_array_equal(roi_ts, stamps)
    assert roi.shape == (len(chunks), n_roi)
    return src, roi


@pytest.mark.slow
def test_docs_example_script_equals_rtsource_run(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLE), str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ROI V1r: strongest rhythm 10.0 Hz" in proc.stdout and "ROI M1l: strongest rhythm 20.0 Hz" in proc.stdout
    out = np.load(tmp_path / "estimator_output.npz")
    chunks = out["chunks"].astype(np.float32)
    assert out["sources"].shape == (len(chunks), 5124) and tuple(out["roi_names"]) == ("V1r", "M1l")
    src, roi = _run_loop_on(tmp_path / "bundle.npz", EXAMPLE_CONFIG, out["ch_names"], out["ch_units"], chunks, n_roi=2)
    for what, published, estimated in (("sources", src, out["sources"]), ("ROIs", roi, out["rois"])):
        scale = np.abs(estimated).max()
        print(f"{what}: rtsource run vs Estimator, max |difference| / max |value| = {np.abs(published - estimated).max() / scale:.1e}")
        np.testing.assert_allclose(published, estimated, rtol=1e-5, atol=1e-6 * scale)


def test_the_script_in_the_docs_is_the_tested_file():
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    blocks = text.split("```python\n")
    assert any(b.split("```")[0] == EXAMPLE.read_text(encoding="utf-8") for b in blocks[1:]), "docs/api.md's script differs from docs/examples/estimator_script.py"


def test_open_loop_takes_a_config_or_a_bundle(small_bundle, tmp_path):
    rtsource.save_bundle(small_bundle, tmp_path / "b.npz")
    cfg = tmp_path / "lab.toml"
    cfg.write_text('[bundle]\npath = "b.npz"\n[output]\nname = "lab-out"\n[preprocess]\nhighpass_hz = 0.5\n[[roi]]\nname = "lh"\nhemisphere = "lh"\n')
    loop = rtsource.open_loop(cfg)  # the bundle is the config's [bundle] path, relative to the config
    assert loop.options.bundle_path == str(tmp_path / "b.npz") and loop.options.output_name == "lab-out"
    assert loop.options.filter == rtsource.FilterSpec(0.5, 0.0, 2) and [r.name for r in loop.feature_options.rois] == ["lh"]
    loop = rtsource.open_loop(tmp_path / "b.npz", config=cfg, output_name="other", idle_timeout=None)
    assert loop.options.output_name == "other" and loop.options.idle_timeout == 0.0
    loop = rtsource.open_loop(tmp_path / "b.npz")  # a bundle without a config: the defaults
    assert loop.options.output_name == "rtsource-sources" and loop.bundle.kernel.shape == small_bundle.kernel.shape
    with pytest.raises(rtsource.BundleError):
        rtsource.open_loop(cfg, bundle=tmp_path / "missing.npz")


def test_estimator_rois_of_the_nonlinear_modes_read_the_source_output(small_bundle):
    from rtsource.inverse.roi import roi_from_hemisphere
    from rtsource.sensors.montage import CAP_64

    roi = roi_from_hemisphere(small_bundle.sources, "lh")
    est = rtsource.Estimator(small_bundle, CAP_64, "uV", rois=[roi], roi_mode="max")
    out = est.process((np.random.default_rng(4).normal(size=(50, 64)) * 10).astype(np.float32))
    lh = np.flatnonzero(small_bundle.sources.hemisphere == 0)
    np.testing.assert_allclose(out.rois[:, 0], np.abs(out.sources[:, lh]).max(axis=1), rtol=1e-6)


def test_setup_lcmv_takes_the_data_covariance_from_a_recording():
    from rtsource.config import InverseSettings

    settings = _fast_settings(inverse=InverseSettings(method="LCMV", reg=0.3))
    rest = rtsource.simulate_recording(settings, seconds=2.0)
    data = rtsource.simulate_recording(dataclasses.replace(settings, simulate=dataclasses.replace(settings.simulate, seed=1)), seconds=3.0)
    bundle = rtsource.setup(settings, calibration=rest, data_calibration=data)
    assert bundle.method == "LCMV" and bundle.params["data_cov"]["n_samples"] == 1500
    assert bundle.data_cov.shape == (64, 64)
