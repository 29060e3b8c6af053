"""rtsource: real-time EEG/MEG source estimation over Lab Streaming Layer.

The public Python API (``docs/api.md``)::

    import rtsource

    settings = rtsource.load_config("lab.toml")            # or rtsource.Settings()
    bundle = rtsource.setup(settings, out="bundle.npz")    # lead field, calibration, inverse
    est = rtsource.Estimator.from_config(settings, bundle, ch_names, "uV")
    values = est.process(chunk).sources                    # in this process, no LSL

    loop = rtsource.open_loop("lab.toml")                  # what `rtsource run lab.toml` runs
    loop.connect(); loop.run(duration=60); loop.close()

Importing the package is cheap: each name below is imported on first use (PEP 562), so
numpy, numba, scipy, pylsl and Qt load only when something needs them.
"""

from __future__ import annotations

__version__ = "0.1.0"

#: public name -> module that defines it (relative to this package)
_EXPORTS = {
    # configuration
    "Settings": ".config",
    "load_config": ".config",
    "settings_from_dict": ".config",
    # the offline stage
    "setup": ".pipeline.setup",
    "calibration_from_recording": ".pipeline.setup",
    "compute_leadfield": ".build",
    "build_bundle": ".build",
    "OperatorBundle": ".bundle",
    "load_bundle": ".bundle",
    "save_bundle": ".bundle",
    # the online stage
    "Estimator": ".pipeline.estimator",
    "Estimate": ".pipeline.estimator",
    "open_loop": ".pipeline.run",
    "StreamLoop": ".stream.loop",
    "LoopOptions": ".stream.loop",
    "FeatureOptions": ".stream.features",
    "operator_rebuilder": ".session",
    "StreamSelector": ".stream.inlet",
    "FilterSpec": ".stream.operator",
    "capture_calibration": ".stream.calibration",
    # recordings and the simulator
    "Recording": ".recordings",
    "read_recording": ".recordings",
    "Acquisition": ".recordings",
    "read_acquisition": ".recordings",
    "run_replay": ".replay",
    "simulate_recording": ".pipeline.simulated",
    "run_demo": ".pipeline.demo",
    # errors
    "RtsourceError": ".errors",
    "ConfigError": ".errors",
    "StreamError": ".errors",
    "ChannelError": ".errors",
    "UnitError": ".errors",
    "BundleError": ".errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rtsource' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # the next access skips __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
