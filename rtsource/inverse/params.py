"""Typed parameters of every inverse method, and the record a bundle keeps of them.

One place for each default: the configuration (``[inverse]``), the offline build, the
bad-channel rebuild and the operator bundle all carry these frozen objects, never a
dictionary of parameter names.

- :class:`MinimumNormParams`: MNE, dSPM, sLORETA and eLORETA (with :class:`EloretaOptions`).
- :class:`LcmvParams`: the LCMV beamformers.
- :class:`OperatorRecord`: what a bundle records about its operator: the parameters it
  was built with plus what the build found (kept whitener rank, eLORETA convergence,
  LCMV loading, dropped channels). Its JSON form is the ``params`` object of a bundle's
  header; the record is also a read-only mapping over that JSON (``bundle.params["rank"]``)
  for readers that only display or publish it.

JSON: ``to_json()`` gives plain data; ``from_json()`` is strict (an unknown key or a value
out of range is an error naming the key, the value and the fix). Bundles written before
these types existed carry the same keys without a ``"layout"`` marker; they are read by
:meth:`OperatorRecord.from_json` leniently (missing keys take the defaults, foreign keys
are kept as ``notes``), as the old code read them.

This module imports nothing heavy: the configuration loads it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from ..errors import InverseError

#: Methods of the minimum-norm family (:func:`~.minimum_norm.make_inverse_operator`).
MINIMUM_NORM_METHODS = ("MNE", "dSPM", "sLORETA", "eLORETA")
#: Every method an operator can have (LCMV: :func:`~.beamformer.make_lcmv`).
METHODS = MINIMUM_NORM_METHODS + ("LCMV",)
#: LCMV weight normalisations ("unit-gain": none; MNE-Python spells it None).
WEIGHT_NORMS = ("unit-gain", "unit-noise-gain", "unit-noise-gain-invariant", "nai")
#: LCMV source orientations (MNE-Python's ``pick_ori``: None, "normal", "max-power").
ORIENTATIONS = ("fixed", "free", "max-power")

# Layout marker of the record's JSON; bundles without it predate these types.
RECORD_LAYOUT = 2


def canonical_method(method: Any) -> str:
    """``method`` spelled as in :data:`METHODS` (case-insensitive match), else an error."""
    for m in METHODS:
        if isinstance(method, str) and method.lower() == m.lower():
            return m
    raise InverseError(f"method is {method!r}; use one of {', '.join(METHODS)}")


# ---- value checks (each names the key, the value and the fix) ---------------------------


def _number(key: str, value: Any, fix: str, *, low: float, low_open: bool = False,
            high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InverseError(f"{key} is {value!r}; {fix}")
    v = float(value)
    ok = math.isfinite(v) and (v > low if low_open else v >= low)
    if high is not None:
        ok = ok and v <= high
    if not ok:
        raise InverseError(f"{key} is {value!r}; {fix}")
    return v


def _optional_number(key: str, value: Any, fix: str, **kw) -> float | None:
    return None if value is None else _number(key, value, fix, **kw)


def _choice(key: str, value: Any, allowed: tuple) -> Any:
    if value not in allowed:
        raise InverseError(f"{key} is {value!r}; use one of {', '.join(map(repr, allowed))}")
    return value


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool) and type(value).__name__ not in ("bool_", "bool"):
        raise InverseError(f"{key} is {value!r}; pass true or false")
    return bool(value)


def _rank(key: str, value: Any) -> int | Mapping[str, int] | None:
    """A requested whitener rank: None (numerical), an int, or one int per sensor block."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if k not in ("eeg", "meg") or isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise InverseError(
                    f"{key} has {k!r}: {v!r}; give positive integers for 'eeg' and/or 'meg' "
                    "(e.g. {'eeg': 63}) or null for the numerical rank"
                )
            out[str(k)] = int(v)
        return types.MappingProxyType(out)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InverseError(
            f"{key} is {value!r}; pass a positive integer, a mapping per sensor block "
            "({'eeg': 63, 'meg': 102}) or null for the numerical rank"
        )
    return int(value)


def _rank_json(rank) -> Any:
    return dict(rank) if isinstance(rank, Mapping) else rank


def _strict_keys(what: str, data: Any, allowed) -> Mapping:
    if not isinstance(data, Mapping):
        raise InverseError(f"{what} is a {type(data).__name__}; expected a JSON object")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise InverseError(
            f"{what} has unknown key(s) {', '.join(map(repr, unknown))}; allowed keys are "
            f"{', '.join(sorted(allowed))}"
        )
    return data


# ---- the parameters ---------------------------------------------------------------------


@dataclass(frozen=True)
class EloretaOptions:
    """eLORETA's fixed-point iteration (Pascual-Marqui 2007; defaults as MNE-Python).

    Attributes
    ----------
    eps : float
        Converged when the relative change of the weights falls below this (> 0).
    max_iter : int
        Iteration limit (>= 1).
    force_equal : bool
        One weight per source row instead of 3 x 3 blocks.
    """

    eps: float = 1e-6
    max_iter: int = 20
    force_equal: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "eps", _number("eloreta.eps", self.eps, "pass a positive tolerance (1e-6)",
                                  low=0.0, low_open=True))
        mi = self.max_iter
        if isinstance(mi, bool) or not isinstance(mi, numbers.Integral) or mi < 1:
            raise InverseError(f"eloreta.max_iter is {mi!r}; pass a positive integer (20)")
        set_(self, "max_iter", int(mi))
        set_(self, "force_equal", _flag("eloreta.force_equal", self.force_equal))

    def to_json(self) -> dict:
        return {"eps": self.eps, "max_iter": self.max_iter, "force_equal": self.force_equal}

    @classmethod
    def from_json(cls, data: Mapping) -> "EloretaOptions":
        return cls(**_strict_keys("eloreta", data, _field_names(cls)))


@dataclass(frozen=True)
class MinimumNormParams:
    """Parameters of an MNE, dSPM, sLORETA or eLORETA operator (reference section 5).

    Attributes
    ----------
    method : {"MNE", "dSPM", "sLORETA", "eLORETA"}
    snr : float
        Assumed amplitude SNR; ``lambda2 = 1 / snr**2`` unless ``lambda2`` is given.
    lambda2 : float or None
        Regularisation parameter; overrides ``snr``.
    loose : float
        Tangential source variance relative to the normal one, in [0, 1] (1: free).
    depth : float or None
        Depth weighting exponent (Lin et al. 2006, NeuroImage 31:160); None: off. eLORETA
        ignores it (its weights compensate depth).
    depth_limit : float or None
        Largest ratio of gain norms the depth weighting compensates (>= 1; None: no limit).
    fixed : bool
        Orientation fixed along the source normals (one signed row per source).
    rank : int, mapping or None
        Requested rank of the noise whitener (None: numerical; ``{"eeg": n, "meg": m}``
        per sensor block).
    eloreta : EloretaOptions
        eLORETA's iteration (ignored by the other methods).
    """

    method: str = "dSPM"
    snr: float = 3.0
    lambda2: float | None = None
    loose: float = 0.2
    depth: float | None = 0.8
    depth_limit: float | None = 10.0
    fixed: bool = False
    rank: int | Mapping[str, int] | None = None
    eloreta: EloretaOptions = field(default_factory=EloretaOptions)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        method = canonical_method(self.method)
        if method == "LCMV":
            raise InverseError(
                "method is 'LCMV' but these are minimum-norm parameters; use LcmvParams"
            )
        set_(self, "method", method)
        set_(self, "snr", _number("snr", self.snr, "pass a positive finite SNR (e.g. 3)",
                                  low=0.0, low_open=True))
        set_(self, "lambda2", _optional_number(
            "lambda2", self.lambda2,
            "pass a positive finite regularisation (e.g. 1/9) or null to use snr",
            low=0.0, low_open=True))
        set_(self, "loose", _number(
            "loose", self.loose, "pass a value in [0, 1] (0.2 on cortex, 1 for free orientation)",
            low=0.0, high=1.0))
        depth = _optional_number("depth", self.depth,
                                 "pass a non-negative exponent (0.8 is usual) or null to disable",
                                 low=0.0)
        set_(self, "depth", depth or None)  # 0 and None both mean no depth weighting
        set_(self, "depth_limit", _optional_number(
            "depth_limit", self.depth_limit, "pass a ratio >= 1 (10 is usual) or null for no limit",
            low=1.0))
        set_(self, "fixed", _flag("fixed", self.fixed))
        set_(self, "rank", _rank("rank", self.rank))
        if isinstance(self.eloreta, Mapping):
            set_(self, "eloreta", EloretaOptions.from_json(self.eloreta))
        elif not isinstance(self.eloreta, EloretaOptions):
            raise InverseError(f"eloreta is {self.eloreta!r}; pass EloretaOptions(...)")

    @property
    def effective_lambda2(self) -> float:
        """The regularisation the operator uses: ``lambda2``, else ``1 / snr**2``."""
        return self.lambda2 if self.lambda2 is not None else 1.0 / self.snr**2

    def to_json(self) -> dict:
        return {
            "method": self.method, "snr": self.snr, "lambda2": self.lambda2,
            "loose": self.loose, "depth": self.depth, "depth_limit": self.depth_limit,
            "fixed": self.fixed, "rank": _rank_json(self.rank),
            "eloreta": self.eloreta.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping) -> "MinimumNormParams":
        data = dict(_strict_keys("minimum-norm parameters", data, _field_names(cls)))
        if "eloreta" in data:
            data["eloreta"] = EloretaOptions.from_json(data["eloreta"])
        return cls(**data)


@dataclass(frozen=True)
class LcmvParams:
    """Parameters of an LCMV beamformer (reference section 6).

    Attributes
    ----------
    reg : float
        Diagonal loading as a fraction of the mean eigenvalue of the whitened data
        covariance (>= 0; 0.05 as MNE-Python, 0.3-0.5 for template heads).
    weight_norm : {"unit-gain", "unit-noise-gain", "unit-noise-gain-invariant", "nai"}
        Weight normalisation; unit gain gives A*m, the others are dimensionless. None is
        read as "unit-gain" (MNE-Python's spelling).
    orientation : {"max-power", "free", "fixed"}
        Source orientation (MNE-Python's ``pick_ori``).
    depth : float or None
        Depth weighting exponent as MNE-Python's ``make_lcmv(depth=...)``; None (default,
        as MNE-Python) for none. With unit gain it makes the output arbitrary units.
    rank : int, mapping or None
        Requested rank of the noise whitener, as :attr:`MinimumNormParams.rank`.
    """

    method: ClassVar[str] = "LCMV"

    reg: float = 0.05
    weight_norm: str = "unit-noise-gain-invariant"
    orientation: str = "max-power"
    depth: float | None = None
    rank: int | Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "reg", _number(
            "reg", self.reg, "pass a non-negative fraction of the mean eigenvalue (0.05 is usual)",
            low=0.0))
        wn = "unit-gain" if self.weight_norm is None else self.weight_norm
        set_(self, "weight_norm", _choice("weight_norm", wn, WEIGHT_NORMS))
        set_(self, "orientation", _choice("orientation", self.orientation, ORIENTATIONS))
        depth = _optional_number("depth", self.depth,
                                 "pass a non-negative exponent or null to disable", low=0.0)
        set_(self, "depth", depth or None)
        set_(self, "rank", _rank("rank", self.rank))

    @property
    def output_unit(self) -> str:
        """Unit of the beamformer's output: A*m for unit gain (a.u. with depth weighting,
        which rescales every source), dimensionless for the normalised weights."""
        if self.weight_norm != "unit-gain":
            return ""
        return "a.u." if self.depth else "A*m"

    def to_json(self) -> dict:
        return {
            "method": self.method, "reg": self.reg, "weight_norm": self.weight_norm,
            "orientation": self.orientation, "depth": self.depth, "rank": _rank_json(self.rank),
        }

    @classmethod
    def from_json(cls, data: Mapping) -> "LcmvParams":
        data = dict(_strict_keys("LCMV parameters", data, _field_names(cls) | {"method"}))
        if data.pop("method", "LCMV") != "LCMV":
            raise InverseError("LCMV parameters have a method other than 'LCMV'")
        return cls(**data)


#: The parameters of any operator.
InverseParams = Union[MinimumNormParams, LcmvParams]


def _field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def params_for(method: str, **overrides: Any) -> InverseParams:
    """Parameters of ``method`` with the defaults, except ``overrides``."""
    method = canonical_method(method)
    if method == "LCMV":
        return LcmvParams(**overrides)
    return MinimumNormParams(method=method, **overrides)


def params_from_json(data: Mapping) -> InverseParams:
    """:meth:`MinimumNormParams.to_json` or :meth:`LcmvParams.to_json` back (strict)."""
    if not isinstance(data, Mapping) or "method" not in data:
        raise InverseError(
            f"inverse parameters {data!r} have no 'method'; expected the JSON of "
            "MinimumNormParams or LcmvParams"
        )
    if canonical_method(data["method"]) == "LCMV":
        return LcmvParams.from_json(data)
    return MinimumNormParams.from_json(data)


# ---- what a bundle records --------------------------------------------------------------

# Keys of an eLORETA fit report (EloretaFit.report() minus the options).
_ELORETA_FIT = ("iterations", "final_change", "converged")
# Keys of an LCMV fit report (make_lcmv's details).
_LCMV_FIT = ("data_rank", "loading", "noise_level")
# Keys the record itself has in the JSON layout, besides the parameters.
_RECORD_KEYS = {"layout", "reference", "rank", "block_ranks", "bad_channels", "data_cov", "notes"}


@dataclass(frozen=True, eq=False)
class OperatorRecord(Mapping):
    """The bundle's account of its operator: parameters, and what the build found.

    Attributes
    ----------
    inverse : MinimumNormParams or LcmvParams
        The parameters the operator was built with (a rebuild without channels uses them).
    reference : str
        ``"average"`` or the reference channel.
    rank : int or None
        Rank of the whitened data space the operator kept.
    block_ranks : mapping of str to int
        Kept whitener rank per sensor block (``"eeg"``, ``"meg"``).
    bad_channels : tuple of str
        Channels dropped by rebuilds so far.
    fit : mapping
        JSON facts of the fit: eLORETA ``iterations``, ``final_change``, ``converged``;
        LCMV ``data_rank``, ``loading``, ``noise_level``.
    data_cov : mapping or None
        LCMV: ``n_samples`` and ``method`` of the data covariance.
    notes : mapping
        Other JSON facts recorded by whoever made the bundle (e.g. the MNE-Python bridge).

    Notes
    -----
    As a read-only mapping the record shows its JSON layout (``record["loose"]``,
    ``record["eloreta"]["iterations"]``), for display and stream metadata; code that
    builds operators reads the typed attributes.
    """

    inverse: MinimumNormParams | LcmvParams
    reference: str = "average"
    rank: int | None = None
    block_ranks: Mapping[str, int] = field(default_factory=dict)
    bad_channels: tuple[str, ...] = ()
    fit: Mapping[str, Any] = field(default_factory=dict)
    data_cov: Mapping[str, Any] | None = None
    notes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.inverse, (MinimumNormParams, LcmvParams)):
            raise InverseError(
                f"inverse is a {type(self.inverse).__name__}; pass MinimumNormParams or LcmvParams"
            )
        if not isinstance(self.reference, str) or not self.reference:
            raise InverseError(f"reference is {self.reference!r}; pass 'average' or a channel name")
        # a bundle is untrusted input: every field is checked, nothing is coerced blindly
        if self.rank is not None:
            if isinstance(self.rank, bool) or not isinstance(self.rank, numbers.Integral) or self.rank < 0:
                raise InverseError(f"rank is {self.rank!r}; pass the kept rank (a non-negative integer)")
            set_(self, "rank", int(self.rank))
        ranks = _mapping("block_ranks", self.block_ranks)
        if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in ranks.values()):
            raise InverseError(f"block_ranks is {dict(ranks)!r}; pass integers per block, e.g. {{'eeg': 63}}")
        set_(self, "block_ranks", types.MappingProxyType({str(k): int(v) for k, v in ranks.items()}))
        bad = self.bad_channels
        if not isinstance(bad, (list, tuple)) or not all(isinstance(c, str) for c in bad):
            raise InverseError(f"bad_channels is {bad!r}; pass a list of channel names")
        set_(self, "bad_channels", tuple(bad))
        set_(self, "fit", _mapping("fit", self.fit))
        if self.data_cov is not None:
            set_(self, "data_cov", _mapping("data_cov", self.data_cov))
        set_(self, "notes", _mapping("notes", self.notes))
        set_(self, "_json", types.MappingProxyType(self.to_json()))

    @property
    def method(self) -> str:
        return self.inverse.method

    # ---- JSON ----
    def to_json(self) -> dict:
        """The ``params`` object of a bundle header (one flat layout for every method).

        Keys::

            all       layout (2), method, reference, rank (kept), rank_requested,
                      block_ranks, bad_channels, [data_cov: {n_samples, method}], [notes]
            MNE/dSPM/sLORETA/eLORETA
                      snr, lambda2, loose, depth, depth_limit, fixed,
                      eloreta: {eps, max_iter, force_equal[, iterations, final_change,
                      converged]}
            LCMV      reg, weight_norm, orientation, depth, data_rank, loading, noise_level

        The layout is the one bundles had before these types (which lacked ``layout``),
        so older readers of ``bundle.params[...]`` keep working.
        """
        out: dict[str, Any] = {}
        p = self.inverse.to_json()
        # "rank" of the record is the kept rank (a result); the request is rank_requested
        p["rank_requested"] = p.pop("rank")
        if isinstance(self.inverse, MinimumNormParams):
            p["eloreta"] = {**p["eloreta"], **{k: self.fit[k] for k in _ELORETA_FIT if k in self.fit}}
        else:
            p.update({k: self.fit.get(k) for k in _LCMV_FIT})
        out.update(p)
        out.update(
            layout=RECORD_LAYOUT, reference=self.reference, rank=self.rank,
            block_ranks=dict(self.block_ranks), bad_channels=list(self.bad_channels),
        )
        if self.data_cov is not None:
            out["data_cov"] = dict(self.data_cov)
        if self.notes:
            out["notes"] = dict(self.notes)
        return out

    @classmethod
    def from_json(cls, data: Mapping, *, method: str | None = None,
                  reference: str | None = None) -> "OperatorRecord":
        """Read a bundle header's ``params``.

        Parameters
        ----------
        data : mapping
            The JSON object. With ``"layout": 2`` (written by :meth:`to_json`) it is read
            strictly; without it, as bundles written before this layout: missing keys take
            the defaults and keys that are not parameters are kept as ``notes``.
        method, reference : str, optional
            The bundle's method and reference (the old layout may lack them).
        """
        if not isinstance(data, Mapping):
            raise InverseError(f"params is a {type(data).__name__}; expected a JSON object")
        d = dict(data)
        strict = "layout" in d
        if strict and d["layout"] != RECORD_LAYOUT:
            raise InverseError(
                f"params layout is {d['layout']!r}; this rtsource reads layout {RECORD_LAYOUT} "
                "(or older bundles without a layout); rebuild the bundle"
            )
        m = canonical_method(d.get("method", method))
        if method is not None and canonical_method(method) != m:
            raise InverseError(f"params method {d['method']!r} differs from the bundle's {method!r}")
        lcmv = m == "LCMV"
        param_keys = (_field_names(LcmvParams) if lcmv else _field_names(MinimumNormParams)) - {"rank", "method"}
        fit_keys = _LCMV_FIT if lcmv else ()
        known = param_keys | set(fit_keys) | _RECORD_KEYS | {"method", "rank_requested"}
        if strict:
            _strict_keys("params", d, known)
        p = {k: d[k] for k in param_keys if k in d}
        p["rank"] = d.get("rank_requested")
        fit = {k: d[k] for k in fit_keys if k in d}
        if not lcmv and isinstance(p.get("eloreta"), Mapping):
            el = dict(p["eloreta"])
            fit.update({k: el.pop(k) for k in _ELORETA_FIT if k in el})
            p["eloreta"] = EloretaOptions.from_json(el)
        if not strict:
            p = _compat_params(p, lcmv)
        inverse = LcmvParams(**p) if lcmv else MinimumNormParams(method=m, **p)
        notes = d.get("notes", {}) if strict else {k: v for k, v in d.items() if k not in known}
        ref = d.get("reference", reference)
        return cls(
            inverse=inverse, reference=ref if ref is not None else "average",
            rank=d.get("rank"), block_ranks=d.get("block_ranks", {}),
            bad_channels=d.get("bad_channels", ()), fit=fit,
            data_cov=d.get("data_cov"), notes=notes,
        )

    # ---- read-only mapping over the JSON layout ----
    def __getitem__(self, key: str) -> Any:
        return self._json[key]  # type: ignore[attr-defined]

    def __iter__(self):
        return iter(self._json)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self._json)  # type: ignore[attr-defined]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, OperatorRecord):
            return self.to_json() == other.to_json()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def _mapping(key: str, value: Any) -> Mapping:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InverseError(f"{key} is {value!r}; expected a JSON object")
    return types.MappingProxyType(dict(value))


def _compat_params(p: dict, lcmv: bool) -> dict:
    """Parameters of a bundle written before layout 2, as the old code read them: a
    missing key took the default, and so does a null ``snr`` (``operator_params`` wrote one
    when it was not told the SNR; ``lambda2`` was always recorded) or ``eloreta``. LCMV's
    ``weight_norm: null`` is read as unit gain by :class:`LcmvParams` itself."""
    if not lcmv:
        for key in ("snr", "eloreta"):
            if p.get(key, 0) is None:
                del p[key]
    return p
