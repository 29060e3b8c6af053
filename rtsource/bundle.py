"""The operator bundle: the one file that carries an inverse operator and its contract.

The bundle is the only thing the streaming side needs. Besides the operator it records
everything required to use it safely: the channels in the operator's column order with
their types and units, the reference, the sampling rate the operator was built for, the
sources (positions and normals with frame and unit), the method and its parameters,
package and schema versions, and a SHA-256 checksum over all of it.

File format: a NumPy ``.npz`` archive (a zip of ``.npy`` arrays, loaded with
``allow_pickle=False``) holding one JSON header (as UTF-8 bytes in ``header``) and plain
numeric arrays. Nothing in it can execute code; a truncated, altered or foreign file is
refused with :class:`~rtsource.errors.BundleError` (or its checksum/schema subclasses).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import logging
import math
import os
import tempfile
import types
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .arrays import frozen as _frozen
from . import __version__
from .anatomy.source_space import SourceSpace
from .errors import BundleChecksumError, BundleError, BundleSchemaError, RtsourceError
from .geometry import Frame, as_frame
from .inverse.params import LcmvParams, OperatorRecord

logger = logging.getLogger(__name__)

SCHEMA_NAME = "rtsource-operator-bundle"
SCHEMA_VERSION = 2
#: Versions this rtsource reads (version 2 added the optional data_cov and source_weights).
READABLE_VERSIONS = (1, 2)

#: Limits checked before anything is decompressed or parsed: a bundle is untrusted input,
#: and a small zip member can inflate a thousandfold.
MAX_BUNDLE_BYTES = 8 * 1024**3  # all arrays together, uncompressed
MAX_HEADER_BYTES = 16 * 1024**2  # the JSON header
MAX_JSON_DEPTH = 32  # nesting of the header's objects and lists (a bundle needs 5)
MAX_INFLATION = 20  # decompressed / file size (rtsource writes stored members: 1)

#: Values the header's enumerated fields may take.
METHODS = ("MNE", "dSPM", "sLORETA", "eLORETA", "LCMV")
OUTPUT_UNITS = ("", "A*m", "a.u.")
CHANNEL_UNITS = {"eeg": "V", "mag": "T", "grad": "T/m"}  # SI unit of each sensor type

# name -> (dtype kind, ndim) of the arrays a bundle must have
_REQUIRED_ARRAYS = {
    "kernel": ("f", 2),
    "noise_norm": ("f", 1),
    "source_positions_m": ("f", 2),
    "source_normals": ("f", 2),
    "source_areas_m2": ("f", 1),
    "source_hemisphere": ("i", 1),
    "source_triangles": ("i", 2),
    "channel_positions_m": ("f", 2),
}
_OPTIONAL_ARRAYS = {
    "gain": ("f", 2),
    "noise_cov": ("f", 2),
    "source_rotation": ("f", 3),
    "data_cov": ("f", 2),
    "source_weights": ("f", 2),
    # the artifact calibration (rtsource.artifacts.calibration.BUNDLE_ARRAYS; header key "artifacts")
    "artifact_asr_mixing": ("f", 2),
    "artifact_asr_thresholds": ("f", 2),
    "artifact_asr_filter_b": ("f", 1),
    "artifact_asr_filter_a": ("f", 1),
    "artifact_muscle_mixing": ("f", 2),
    "artifact_muscle_thresholds": ("f", 2),
    "artifact_muscle_filter_b": ("f", 1),
    "artifact_muscle_filter_a": ("f", 1),
    "artifact_regression_coefficients": ("f", 2),
    "artifact_projection_vectors": ("f", 2),
    "artifact_projection_explained": ("f", 1),
}
_ARTIFACT_ARRAYS = tuple(n for n in _OPTIONAL_ARRAYS if n.startswith("artifact_"))
_REQUIRED_HEADER = {
    "schema": str,
    "schema_version": int,
    "rtsource_version": str,
    "created_utc": str,
    "method": str,
    "n_orient": int,
    "output_unit": str,
    "ch_names": list,
    "ch_types": list,
    "ch_units": list,
    "reference": str,
    "sfreq": float,
    "source_frame": str,
    "source_unit": str,
    "source_space_name": str,
    "channel_frame": str,
    "params": dict,
    "provenance": dict,
    "checksum": str,
}


@dataclass(frozen=True)
class OperatorBundle:
    """An inverse operator with everything needed to apply it to a live stream.

    Attributes
    ----------
    kernel : ndarray, shape (n_sources * n_orient, n_channels)
        Applied to raw data in volts, channels in ``ch_names`` order. It already contains
        the re-referencing and the whitener.
    noise_norm : ndarray, shape (n_sources,)
        Divisor per source after pooling (ones for plain MNE).
    n_orient : int
        3: output is ``||K_k x|| / noise_norm_k`` over the 3 rows of source k; 1: ``K_k x / noise_norm_k``.
    method : str
        "MNE", "dSPM", "sLORETA", "eLORETA" or "LCMV".
    output_unit : str
        Unit of the output: "A*m" for MNE, eLORETA and unit-gain LCMV; "" for the
        dimensionless dSPM, sLORETA and normalised LCMV; "a.u." for unit-gain LCMV with
        depth weighting.
    ch_names, ch_types, ch_units : tuple of str
        The operator's channels in column order; units of the data the kernel expects
        (always SI: "V" for EEG).
    reference : str
        "average" or the name of the reference channel the EEG data are re-referenced to;
        "none" when nothing is re-referenced (MEG-only bundles, which have no EEG reference).
    sfreq : float
        Sampling rate in Hz the operator was built for (filters and the calibration).
    sources : SourceSpace
        The sources, in ``sources.frame``, metres.
    channel_positions_m : ndarray, shape (n_channels, 3)
        Electrode positions in ``channel_frame`` (for display and QC).
    channel_frame : Frame
    params : OperatorRecord
        The typed parameters the operator was built with (``params.inverse``) and what
        the build found (kept rank, fit report, dropped channels). A mapping is read as a
        bundle header's ``params`` (:meth:`OperatorRecord.from_json`, older layouts
        included); the record is also a read-only mapping over that JSON.
    provenance : Mapping
        How it was made: head model, forward model, noise covariance, configuration.
    gain, noise_cov, source_rotation : ndarray or None
        The raw lead field (n_channels, 3 n_sources) and noise covariance (n_channels,
        n_channels), kept so the operator can be rebuilt without a channel; the local
        orientation frames of the kernel's rows.
    data_cov : ndarray or None
        LCMV: the data covariance (n_channels, n_channels) the weights were computed from.
    source_weights : ndarray or None
        eLORETA: the converged source weights, to warm-start a rebuild.
    artifacts : rtsource.artifacts.ArtifactCalibration or None
        Artifact correction calibrated at setup (ASR, EOG regression, projection): data and
        provenance; a projection in it is already folded into ``kernel``.
    rtsource_version, created_utc : str
        Who wrote the file and when.
    """

    kernel: np.ndarray
    noise_norm: np.ndarray
    n_orient: int
    method: str
    output_unit: str
    ch_names: tuple[str, ...]
    ch_types: tuple[str, ...]
    ch_units: tuple[str, ...]
    reference: str
    sfreq: float
    sources: SourceSpace
    channel_positions_m: np.ndarray
    channel_frame: Frame
    params: OperatorRecord | Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    gain: np.ndarray | None = None
    noise_cov: np.ndarray | None = None
    source_rotation: np.ndarray | None = None
    data_cov: np.ndarray | None = None
    source_weights: np.ndarray | None = None
    artifacts: Any = None
    rtsource_version: str = __version__
    created_utc: str = ""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "kernel", _frozen(self.kernel, np.float64))
        set_(self, "noise_norm", _frozen(self.noise_norm, np.float64))
        set_(self, "channel_positions_m", _frozen(self.channel_positions_m, np.float64))
        set_(self, "channel_frame", as_frame(self.channel_frame))
        for name in ("ch_names", "ch_types", "ch_units"):
            set_(self, name, tuple(str(x) for x in getattr(self, name)))
        for name in ("gain", "noise_cov", "source_rotation", "data_cov", "source_weights"):
            if getattr(self, name) is not None:
                set_(self, name, _frozen(getattr(self, name), np.float64))
        set_(self, "params", self._record(self.params))
        if self.artifacts is not None:
            from .artifacts.calibration import ArtifactCalibration

            if not isinstance(self.artifacts, ArtifactCalibration):
                raise BundleError(f"bundle artifacts is a {type(self.artifacts).__name__}; pass an ArtifactCalibration (rtsource.artifacts) or None")
        set_(self, "provenance", types.MappingProxyType(dict(self.provenance)))
        if not self.created_utc:
            set_(self, "created_utc", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        self._check_consistent()

    def _record(self, params) -> OperatorRecord:
        if not isinstance(params, OperatorRecord):
            try:
                params = OperatorRecord.from_json(params, method=self.method, reference=self.reference)
            except RtsourceError as exc:
                raise BundleError(f"bundle params: {exc}") from None
        if params.method != self.method or params.reference != self.reference:
            raise BundleError(
                f"bundle params are for {params.method!r} with reference {params.reference!r} but "
                f"the bundle is {self.method!r} with reference {self.reference!r}; build the "
                "record for this operator (rtsource.inverse.make.operator_record)"
            )
        return params

    def _check_consistent(self) -> None:
        n_chan = len(self.ch_names)
        n_src = self.sources.n_sources
        problems = []
        if self.n_orient not in (1, 3):
            problems.append(f"n_orient = {self.n_orient} (must be 1 or 3)")
        if self.kernel.shape != (n_src * self.n_orient, n_chan):
            problems.append(f"kernel shape {self.kernel.shape} != ({n_src} sources x {self.n_orient}, {n_chan} channels)")
        if self.noise_norm.shape != (n_src,):
            problems.append(f"noise_norm shape {self.noise_norm.shape} != ({n_src},)")
        if len(self.ch_types) != n_chan or len(self.ch_units) != n_chan:
            problems.append(f"{len(self.ch_types)} channel types / {len(self.ch_units)} units for {n_chan} channels")
        if len(set(self.ch_names)) != n_chan:
            problems.append("channel names repeat")
        if self.channel_positions_m.shape != (n_chan, 3):
            problems.append(f"channel positions shape {self.channel_positions_m.shape} != ({n_chan}, 3)")
        if not (np.isfinite(self.sfreq) and self.sfreq > 0):
            problems.append(f"sfreq = {self.sfreq} (must be a positive rate in Hz)")
        if not np.all(np.isfinite(self.kernel)) or not np.all(np.isfinite(self.noise_norm)):
            problems.append("kernel or noise_norm has non-finite values")
        elif np.any(self.noise_norm <= 0):
            problems.append("noise_norm has non-positive values")
        if self.gain is not None and self.gain.shape != (n_chan, 3 * n_src):
            problems.append(f"gain shape {self.gain.shape} != ({n_chan}, {3 * n_src})")
        for name in ("noise_cov", "data_cov"):
            a = getattr(self, name)
            if a is not None and a.shape != (n_chan, n_chan):
                problems.append(f"{name} shape {a.shape} != ({n_chan}, {n_chan})")
        if problems:
            raise BundleError("inconsistent operator bundle: " + "; ".join(problems))

    # ---- convenience ----
    @property
    def n_channels(self) -> int:
        return len(self.ch_names)

    @property
    def n_sources(self) -> int:
        return self.sources.n_sources

    def source_labels(self) -> tuple[str, ...]:
        return self.sources.labels()

    @property
    def eeg_reference(self) -> str:
        """The EEG reference ("average", a channel name) or "none" (no EEG channel, or none applied).

        MEG-only bundles written before the reference was recorded as "none" say "average";
        they have no EEG to re-reference, so this reads "none" for them as well.
        """
        return self.reference if "eeg" in self.ch_types else "none"

    def describe(self) -> str:
        """One line for logs and the CLI."""
        inv = self.params.inverse
        if self.n_orient == 1:
            orient = "fixed" if getattr(inv, "orientation", "fixed") == "fixed" else inv.orientation
        else:
            orient = "free" if isinstance(inv, LcmvParams) else f"loose {inv.loose:g}"
        ref = "no EEG reference" if self.eeg_reference == "none" else f"ref {self.eeg_reference}"
        artifacts = f", artifacts: {'+'.join(self.artifacts.methods)}" if self.artifacts is not None else ""
        return (
            f"{self.method} ({orient}) "
            f"{self.n_channels} ch -> {self.n_sources} sources [{self.sources.name}], "
            f"{ref}, {self.sfreq:g} Hz{artifacts}"
        )


# ---- file format -------------------------------------------------------------------------

def _arrays_of(b: OperatorBundle) -> dict[str, np.ndarray]:
    arrays = {
        "kernel": b.kernel,
        "noise_norm": b.noise_norm,
        "source_positions_m": b.sources.positions_m,
        "source_normals": b.sources.normals,
        "source_areas_m2": b.sources.areas_m2,
        "source_hemisphere": b.sources.hemisphere,
        "source_triangles": b.sources.triangles,
        "channel_positions_m": b.channel_positions_m,
    }
    for name in _OPTIONAL_ARRAYS:
        if name not in _ARTIFACT_ARRAYS and getattr(b, name) is not None:
            arrays[name] = getattr(b, name)
    if b.artifacts is not None:
        from .artifacts.calibration import to_bundle

        arrays.update(to_bundle(b.artifacts)[0])
    return arrays


def _header_of(b: OperatorBundle) -> dict[str, Any]:
    header = {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "rtsource_version": b.rtsource_version,
        "created_utc": b.created_utc,
        "method": b.method,
        "n_orient": b.n_orient,
        "output_unit": b.output_unit,
        "ch_names": list(b.ch_names),
        "ch_types": list(b.ch_types),
        "ch_units": list(b.ch_units),
        "reference": b.reference,
        "sfreq": float(b.sfreq),
        "source_frame": b.sources.frame.value,
        "source_unit": "m",
        "source_space_name": b.sources.name,
        "channel_frame": b.channel_frame.value,
        "params": b.params.to_json(),
        "provenance": dict(b.provenance),
        "checksum": "",
    }
    if b.artifacts is not None:  # optional: bundles without it read (and checksum) as before
        from .artifacts.calibration import to_bundle

        header["artifacts"] = to_bundle(b.artifacts)[1]
    return header


def _checksum(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the header (without its checksum) and every array's dtype, shape and bytes."""
    h = hashlib.sha256()
    head = dict(header, checksum="")
    h.update(json.dumps(head, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"|{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict) or isinstance(obj, types.MappingProxyType):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_bundle(bundle: OperatorBundle, path: str | Path) -> Path:
    """Write ``bundle`` to ``path`` (``.npz``) atomically; returns the path."""
    path = Path(path)
    arrays = _arrays_of(bundle)
    header = _jsonable(_header_of(bundle))
    header["checksum"] = _checksum(header, arrays)
    payload = dict(arrays, header=np.frombuffer(json.dumps(header, sort_keys=True).encode("utf-8"), dtype=np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique temporary file beside the target (mkstemp creates it exclusively, so a
    # symlink planted at a predictable name is never followed), then an atomic rename:
    # readers see the old bundle or the new one, never half a file.
    mode = (path.stat().st_mode & 0o777) if path.is_file() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("wrote bundle %s (%s)", path, bundle.describe())
    return path


def _fail(path: Path, what: str, cls=BundleError) -> BundleError:
    return cls(f"bundle {str(path)!r}: {what}; rebuild it with `rtsource setup CONFIG.toml`")


def load_bundle(path: str | Path) -> OperatorBundle:
    """Read and verify a bundle written by :func:`save_bundle`.

    Raises
    ------
    BundleError
        The file is missing, truncated, not a bundle, or internally inconsistent.
    BundleSchemaError
        The schema name or version is not one this rtsource reads.
    BundleChecksumError
        The content does not match the recorded checksum (altered or damaged).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BUNDLE_BYTES:
            raise _fail(path, f"the file is {size / 1e9:.1f} GB, more than a bundle may hold ({MAX_BUNDLE_BYTES / 1e9:.1f} GB)")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"bundle {str(path)!r} does not exist; create it with `rtsource setup CONFIG.toml`") from None
    except OSError as exc:
        raise BundleError(f"bundle {str(path)!r} cannot be read: {exc}") from None
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
        members = {info.filename: info for info in archive.infolist()}
    except Exception as exc:  # BadZipFile, LargeZipFile, ValueError, EOFError ...
        raise _fail(path, f"not a readable .npz archive (truncated or not a bundle: {exc})") from None
    if "header.npy" not in members:
        raise _fail(path, "no 'header' member, so this is not an rtsource bundle", BundleSchemaError)
    inflated = sum(info.file_size for info in members.values())
    if inflated > max(MAX_INFLATION * len(raw), 16 * 1024**2) or inflated > MAX_BUNDLE_BYTES:
        raise _fail(path, f"its {len(raw) / 1e6:.1f} MB would expand to {inflated / 1e9:.2f} GB when decompressed (rtsource writes bundles uncompressed)")
    header = _read_header(path, archive, members["header.npy"])
    if not isinstance(header, dict):
        raise _fail(path, "the header is not a JSON object", BundleSchemaError)
    if header.get("schema") != SCHEMA_NAME:
        raise _fail(path, f"schema is {header.get('schema')!r}, expected {SCHEMA_NAME!r}", BundleSchemaError)
    version = header.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise BundleSchemaError(
            f"bundle {str(path)!r} has schema version {version!r} (written by rtsource "
            f"{header.get('rtsource_version')!r}); this rtsource {__version__} reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}. Rebuild the bundle with `rtsource setup` or use a matching rtsource."
        )
    for key, typ in _REQUIRED_HEADER.items():
        if key not in header:
            raise _fail(path, f"header key {key!r} is missing", BundleSchemaError)
        ok = isinstance(header[key], typ) or (typ is float and isinstance(header[key], int))
        if not ok or (typ is not bool and isinstance(header[key], bool)):
            raise _fail(path, f"header key {key!r} has type {type(header[key]).__name__}, expected {typ.__name__}", BundleSchemaError)
    arrays = _read_arrays(path, archive, members, header)

    recorded = header["checksum"]
    actual = _checksum(header, arrays)
    if recorded != actual:
        raise _fail(
            path,
            f"checksum mismatch (recorded {recorded[:12]}..., content gives {actual[:12]}...): "
            "the file was altered or damaged after it was written",
            BundleChecksumError,
        )
    # The checksum catches damage, not edits (anyone can recompute it): check the meaning.
    problem = _check_meaning(header, arrays) or _record_problem(header) or _check_params(header["params"], header["method"])
    if problem:
        raise _fail(path, problem)
    artifacts = _artifacts_of(path, header, arrays)

    try:
        sources = SourceSpace(
            arrays["source_positions_m"],
            arrays["source_normals"],
            arrays["source_areas_m2"],
            arrays["source_hemisphere"],
            as_frame(header["source_frame"]),
            header["source_space_name"],
            arrays["source_triangles"],
        )
        if header["source_unit"] != "m":
            raise BundleSchemaError(f"source_unit {header['source_unit']!r} (bundles store metres)")
        return OperatorBundle(
            kernel=arrays["kernel"],
            noise_norm=arrays["noise_norm"],
            n_orient=header["n_orient"],
            method=header["method"],
            output_unit=header["output_unit"],
            ch_names=tuple(header["ch_names"]),
            ch_types=tuple(header["ch_types"]),
            ch_units=tuple(header["ch_units"]),
            reference=header["reference"],
            sfreq=float(header["sfreq"]),
            sources=sources,
            channel_positions_m=arrays["channel_positions_m"],
            channel_frame=as_frame(header["channel_frame"]),
            params=header["params"],
            provenance=header["provenance"],
            gain=arrays.get("gain"),
            noise_cov=arrays.get("noise_cov"),
            source_rotation=arrays.get("source_rotation"),
            data_cov=arrays.get("data_cov"),
            source_weights=arrays.get("source_weights"),
            artifacts=artifacts,
            rtsource_version=header["rtsource_version"],
            created_utc=header["created_utc"],
        )
    except BundleError as exc:
        raise _fail(path, str(exc)) from None
    except RtsourceError as exc:
        raise _fail(path, f"invalid content: {exc}") from None


def _artifacts_of(path: Path, header: dict, arrays: dict):
    """The artifact calibration of a loaded bundle (None if it has none), checked."""
    entry = header.get("artifacts")
    if entry is None:
        if any(n in arrays for n in _ARTIFACT_ARRAYS):
            raise _fail(path, "artifact arrays without an 'artifacts' header entry")
        return None
    from .artifacts.calibration import from_bundle

    try:
        return from_bundle(entry, {n: arrays[n] for n in _ARTIFACT_ARRAYS if n in arrays})
    except (ValueError, TypeError, KeyError) as exc:
        raise _fail(path, f"invalid artifact calibration: {str(exc)[:300]}") from None


# ---- reading an untrusted archive ---------------------------------------------------------

def _json_depth(text: str) -> int:
    """Deepest nesting of objects and arrays in JSON text (strings skipped)."""
    import re

    skeleton = re.sub(r'"(?:[^"\\]|\\.)*"', "", text).encode("utf-8", "replace")
    b = np.frombuffer(skeleton, dtype=np.uint8)
    step = ((b == ord("[")) | (b == ord("{"))).astype(np.int32) - ((b == ord("]")) | (b == ord("}")))
    return int(np.cumsum(step).max()) if len(step) else 0


def _npy_layout(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from a member's .npy header, reading nothing else."""
    name = info.filename[:-4]
    try:
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f".npy format version {version}")
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f, max_header_size=2000)
    except Exception as exc:  # numpy's own wording would suggest loading with allow_pickle
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        reason = "header too long" if "allow_pickle" in reason else reason[:160]
        raise _fail(path, f"array {name!r} has a damaged header ({reason})") from None
    if dtype.hasobject or dtype.kind not in "biuf" or dtype.itemsize > 16:
        raise _fail(path, f"array {name!r} has dtype {dtype}; bundles hold plain numbers only", BundleSchemaError)
    return tuple(shape), bool(fortran), dtype


def _npy_data(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, layout) -> np.ndarray:
    """The member's array; its size was checked against the header before this is called."""
    shape, fortran, dtype = layout
    nbytes = math.prod(shape) * dtype.itemsize
    try:
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(f, max_header_size=2000)
            data = f.read(nbytes)
    except Exception as exc:  # zlib.error, a CRC mismatch, a truncated member
        raise _fail(path, f"array {info.filename[:-4]!r} is damaged ({type(exc).__name__}: {str(exc)[:160]})") from None
    if len(data) != nbytes:
        raise _fail(path, f"array {info.filename[:-4]!r} is truncated ({len(data)} of {nbytes} bytes)")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _read_header(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Any:
    layout = _npy_layout(path, archive, info)
    shape, _, dtype = layout
    if dtype != np.uint8 or len(shape) != 1:
        raise _fail(path, f"the header member is {dtype} of shape {shape}, not JSON bytes", BundleSchemaError)
    if shape[0] > MAX_HEADER_BYTES:
        raise _fail(path, f"the header is {shape[0] / 1e6:.1f} MB; a bundle's header is a few kB (limit {MAX_HEADER_BYTES / 1e6:.0f} MB)")
    try:
        text = _npy_data(path, archive, info, layout).tobytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(path, f"the header is not valid JSON ({exc})") from None
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise _fail(path, f"the header nests {depth} levels deep; rtsource reads at most {MAX_JSON_DEPTH}")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise _fail(path, f"the header is not valid JSON ({exc})") from None


def _read_arrays(path: Path, archive: zipfile.ZipFile, members: dict, header: dict) -> dict[str, np.ndarray]:
    """Every array, after each one's dtype, shape and size were checked against the header."""
    known = {**_REQUIRED_ARRAYS, **_OPTIONAL_ARRAYS}
    extra = sorted(n[:-4] if n.endswith(".npy") else n for n in members if n != "header.npy" and (not n.endswith(".npy") or n[:-4] not in known))
    if extra:
        raise _fail(path, f"unexpected members {extra}", BundleSchemaError)
    missing = [n for n in _REQUIRED_ARRAYS if n + ".npy" not in members]
    if missing:
        raise _fail(path, f"array {missing[0]!r} is missing", BundleSchemaError)
    layouts = {n[:-4]: _npy_layout(path, archive, info) for n, info in members.items() if n != "header.npy"}
    for name, (shape, _, dtype) in layouts.items():
        kind, ndim = known[name]
        if dtype.kind not in (kind, "u" if kind == "i" else kind) or len(shape) != ndim:
            raise _fail(path, f"array {name!r} has dtype {dtype} and {len(shape)} dims, expected kind {kind!r} with {ndim}", BundleSchemaError)
    expected = _expected_shapes(header, layouts["source_positions_m"][0][0])
    for name, (shape, _, _) in layouts.items():
        ok = expected.get(name, lambda s: True)
        if not ok(shape):
            raise _fail(path, f"array {name!r} has shape {shape}, which does not fit {len(header['ch_names'])} channels and {layouts['source_positions_m'][0][0]} sources (n_orient {header['n_orient']})")
    total = sum(math.prod(shape) * dtype.itemsize for shape, _, dtype in layouts.values())
    if total > MAX_BUNDLE_BYTES:
        raise _fail(path, f"its arrays would take {total / 1e9:.1f} GB once decompressed, more than a bundle may hold ({MAX_BUNDLE_BYTES / 1e9:.1f} GB)")
    return {name: _npy_data(path, archive, members[name + ".npy"], layout) for name, layout in layouts.items()}


def _expected_shapes(header: dict, n_src: int) -> dict:
    """Shape predicates per array, from the header's channels and the number of sources."""
    n_chan, n_orient = len(header["ch_names"]), header["n_orient"]
    return {
        "kernel": lambda s: s == (n_src * n_orient, n_chan),
        "noise_norm": lambda s: s == (n_src,),
        "source_positions_m": lambda s: s[1:] == (3,),
        "source_normals": lambda s: s == (n_src, 3),
        "source_areas_m2": lambda s: s == (n_src,),
        "source_hemisphere": lambda s: s == (n_src,),
        "source_triangles": lambda s: s[1:] == (3,) and s[0] <= 10 * n_src,
        "channel_positions_m": lambda s: s == (n_chan, 3),
        "gain": lambda s: s == (n_chan, 3 * n_src),
        "noise_cov": lambda s: s == (n_chan, n_chan),
        "data_cov": lambda s: s == (n_chan, n_chan),
        "source_rotation": lambda s: s == (n_src, 3, 3),
        "source_weights": lambda s: s[0] in (n_src, n_orient * n_src, 3 * n_src) and s[1] in (1, 3, 9),
        # the calibration's channels: the bundle's at setup (a rebuild without bad channels keeps them)
        "artifact_asr_mixing": lambda s: s[0] == s[1] <= 100_000,
        "artifact_asr_thresholds": lambda s: s[0] == s[1] <= 100_000,
        "artifact_asr_filter_b": lambda s: 1 <= s[0] <= 64,
        "artifact_asr_filter_a": lambda s: 1 <= s[0] <= 64,
        "artifact_regression_coefficients": lambda s: s[0] <= 64 and s[1] <= 100_000,
        "artifact_projection_vectors": lambda s: s[0] <= 100_000 and s[1] <= 64,
        "artifact_projection_explained": lambda s: s[0] <= 64,
    }


# ---- what the content means ----------------------------------------------------------------

def _text_ok(value: Any, limit: int = 256) -> bool:
    return isinstance(value, str) and len(value) <= limit and value.isprintable()


def _check_meaning(header: dict, arrays: dict[str, np.ndarray]) -> str | None:
    """The first thing in a (checksum-consistent) bundle that cannot be right, or None."""
    if header["method"] not in METHODS:
        return f"method {str(header['method'])[:80]!r} is not one of {', '.join(METHODS)}"
    if header["output_unit"] not in OUTPUT_UNITS:
        return f"output_unit {str(header['output_unit'])[:80]!r} is not one of {', '.join(repr(u) for u in OUTPUT_UNITS)}"
    sfreq = header["sfreq"]
    if not (isinstance(sfreq, (int, float)) and math.isfinite(sfreq) and 1.0 <= sfreq <= 100000.0):
        return f"sfreq = {sfreq!r} Hz is not a sampling rate (1 to 100000 Hz)"
    for key in ("ch_names", "ch_types", "ch_units"):
        bad = [v for v in header[key] if not _text_ok(v, 128) or not v]
        if bad:
            return f"{key} holds {str(bad[0])[:80]!r}, not a channel label"
    for i, (t, u) in enumerate(zip(header["ch_types"], header["ch_units"])):
        if CHANNEL_UNITS.get(t) != u:
            return f"channel {header['ch_names'][i]!r} has type {t!r} and unit {u!r}; types and their SI units are {CHANNEL_UNITS}"
    for key in ("reference", "source_space_name", "rtsource_version", "created_utc", "source_frame", "channel_frame"):
        if not _text_ok(header[key]):
            return f"{key} = {str(header[key])[:80]!r} is not a short printable text"
    for name, a in arrays.items():
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            return f"array {name!r} has {int(np.size(a) - np.count_nonzero(np.isfinite(a)))} non-finite values (NaN or Inf)"
    for name in ("source_positions_m", "channel_positions_m"):
        if arrays[name].size and np.max(np.abs(arrays[name])) > 1.0:
            return f"array {name!r} reaches {np.max(np.abs(arrays[name])):.3g} m from the origin; positions are metres and a head fits in 1 m"
    if np.any(arrays["source_areas_m2"] < 0):
        return "array 'source_areas_m2' has negative areas"
    if not np.all(np.isin(arrays["source_hemisphere"], (-1, 0, 1))):
        return "array 'source_hemisphere' holds values other than -1 (none), 0 (left), 1 (right)"
    rot = arrays.get("source_rotation")
    if rot is not None and rot.size:
        err = np.abs(np.einsum("sij,skj->sik", rot, rot) - np.eye(3)).max()
        if err > 1e-3:
            return f"array 'source_rotation' is not made of rotations (|R R^T - I| reaches {err:.3g})"
    for name in ("noise_cov", "data_cov"):
        c = arrays.get(name)
        if c is None or not c.size:
            continue
        scale = float(np.max(np.abs(c)))
        if scale == 0 or np.max(np.abs(c - c.T)) > 1e-6 * scale:
            return f"array {name!r} is {'zero' if scale == 0 else 'not symmetric'}; a covariance is symmetric positive semi-definite"
        low = float(np.linalg.eigvalsh(c)[0])
        if low < -1e-6 * scale:
            return f"array {name!r} has a negative eigenvalue ({low:.3g}, largest entry {scale:.3g}); a covariance is positive semi-definite"
    return None


def _record_problem(header: dict) -> str | None:
    """The typed parameter record's own verdict on the header's params (None: it builds)."""
    try:
        OperatorRecord.from_json(header["params"], method=header["method"], reference=header["reference"])
    except RtsourceError as exc:
        message = str(exc)
        return message if message.startswith("params") else f"params {message}"
    return None


def _check_params(params: dict, method: str) -> str | None:
    """Ranges of the header's flat parameter layout, checked before anything is built.

    The typed :class:`OperatorRecord` validates its own fields when the bundle is constructed;
    this catches the numbers it keeps as provenance (lambda2, rank, noise level) too.
    """
    def number(key, lo, hi, optional=True):
        v = params.get(key)
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and lo <= v <= hi):
            return f"params {key} = {v!r} (must be a number in {lo:g}..{hi:g})"
        return None

    if "method" in params and params["method"] != method:
        return f"params method {str(params['method'])[:80]!r} differs from the bundle's method {method!r}"
    problems = (
        number("snr", 1e-6, 1e6), number("lambda2", 0.0, 1e12), number("loose", 0.0, 1.0), number("depth", 0.0, 100.0),
        number("depth_limit", 0.0, 1e6), number("reg", 0.0, 1e6), number("rank", 0, 1e6), number("noise_level", 0.0, 1e300),
    )
    problem = next((p for p in problems if p), None)
    bad = params.get("bad_channels") or []
    if problem is None and not (isinstance(bad, list) and all(_text_ok(c, 128) for c in bad)):
        problem = "params bad_channels holds something that is not a channel name"
    return problem
