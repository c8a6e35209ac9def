"""The contract every geolocation head follows (scikit-learn conventions).

A head maps image embeddings ``X`` (N, D) to a probability distribution over places.
``fit(X, y)`` takes ``y`` as (N, 2) latitude/longitude in degrees; ``__init__`` only stores
parameters; fitted attributes end with ``_``; calling ``predict*`` before ``fit`` raises
:class:`~geoscout.errors.NotFittedError`. State is exported as a JSON-able config plus
named numpy arrays, so bundles are written with safetensors and never pickled.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidInput, NotFittedError
from ..geo import validate_latlon
from ..types import Candidate
from ._registry import HEADS

__all__ = [
    "Distribution",
    "GeoHead",
    "TrainingOptions",
    "check_embeddings",
    "check_targets",
    "create_head",
    "head_from_state",
    "list_heads",
]


@dataclass
class Distribution:
    """A discrete distribution over places for each of N inputs.

    ``lat``/``lon`` hold the M support points: shape (M,) when shared by all inputs (cell
    centroids, a GPS gallery) or (N, M) when they differ per input (hybrid offsets).
    ``prob`` is (N, M) with rows summing to 1. ``cell`` optionally names each support point.
    """

    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    prob: NDArray[np.float64]
    cell: list[str] | None = None

    def __post_init__(self) -> None:
        self.prob = np.asarray(self.prob, dtype=np.float64)
        if self.prob.ndim != 2:
            raise ValueError(f"prob must be (N, M), got shape {self.prob.shape}")
        self.lat = np.asarray(self.lat, dtype=np.float64)
        self.lon = np.asarray(self.lon, dtype=np.float64)
        m = self.prob.shape[1]
        if self.lat.shape[-1] != m or self.lon.shape != self.lat.shape:
            raise ValueError(f"support points {self.lat.shape} do not match prob {self.prob.shape}")

    @property
    def n(self) -> int:
        return self.prob.shape[0]

    def points(self, i: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Support points (lat, lon) of input ``i``."""
        if self.lat.ndim == 1:
            return self.lat, self.lon
        return self.lat[i], self.lon[i]

    def topk_indices(self, k: int) -> NDArray[np.int64]:
        """(N, k') indices of the k most probable support points, best first (k' = min(k, M))."""
        k = max(1, min(int(k), self.prob.shape[1]))
        part = np.argpartition(-self.prob, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(self.prob, part, axis=1), axis=1, kind="stable")
        return np.take_along_axis(part, order, axis=1)


@dataclass(frozen=True)
class TrainingOptions:
    """How a trainable head's network is trained (the same for every head that trains one): AdamW with learning
    rate ``lr`` and ``weight_decay`` over at most ``epochs`` passes of ``batch_size`` rows, stopping after
    ``patience`` epochs without a better validation GeoGuessr score; ``val_fraction`` of the locations is held out
    for that score when ``fit`` gets no validation set; ``seed`` fixes initialisation, split and shuffling;
    ``threads`` torch threads (None: chosen by the head). A value, like a number: replace fields with
    :func:`dataclasses.replace`, or ``head.set_params(options__lr=3e-4)``."""

    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 5
    val_fraction: float = 0.1
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        def bad(name: str, want: str) -> InvalidInput:
            return InvalidInput(f"training option {name}={getattr(self, name)!r}: expected {want}")

        for name in ("epochs", "batch_size", "patience"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, "a whole number >= 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise bad("seed", "a whole number")
        for name in ("lr", "weight_decay"):  # lr 0 trains nothing (a frozen start, e.g. a warm start's check)
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise bad(name, "a number >= 0")
        v = self.val_fraction
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise bad("val_fraction", "a share in [0, 1)")
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0
        ):
            raise bad("threads", "None (automatic) or a whole number >= 1")

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The option names (``epochs``, ``batch_size``, ...)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingOptions:
        """From :meth:`to_dict` output (names this version does not know are ignored)."""
        return cls(**{k: v for k, v in d.items() if k in cls.fields()})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_embeddings(X: Any, *, dim: int | None = None, what: str = "embeddings") -> NDArray[np.float32]:
    """Validate an (N, D) finite float matrix; returns float32."""
    try:
        arr = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what}: expected a numeric (N, D) matrix ({exc})") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise InvalidInput(f"{what}: expected a non-empty (N, D) matrix, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise InvalidInput(
            f"{what}: expected {dim}-dimensional vectors (the head was fitted on them), got {arr.shape[1]}; "
            "use the same backbone for training and prediction"
        )
    if not np.isfinite(arr).all():
        bad = int(np.argwhere(~np.isfinite(arr).all(axis=1))[0, 0])
        raise InvalidInput(f"{what}: row {bad} has NaN or infinite values (a failed image?); drop it first")
    return arr


def check_targets(y: Any, n: int) -> NDArray[np.float64]:
    """Validate (N, 2) latitude/longitude targets in degrees."""
    arr = np.asarray(y, dtype=np.float64)
    if arr.shape != (n, 2):
        raise InvalidInput(f"targets: expected shape ({n}, 2) = (lat, lon) degrees per embedding, got {arr.shape}")
    validate_latlon(arr[:, 0], arr[:, 1], what="targets")
    return arr


class GeoHead:
    """Base class of all heads. Subclasses implement ``fit``, ``predict_distribution``,
    ``get_state`` and ``from_state``; set ``name`` to their registry name."""

    name: ClassVar[str] = ""
    #: attribute set by ``fit``; its absence means "not fitted"
    _fitted_attr: ClassVar[str] = "n_features_in_"
    n_features_in_: int

    # -- scikit-learn parameter protocol -------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind in kinds]

    @classmethod
    def _default(cls, name: str) -> Any:
        return inspect.signature(cls.__init__).parameters[name].default

    @classmethod
    def with_options(cls, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` with flat training keywords (``epochs=5``, ``lr=3e-4``, as ``create_head``, ``--param`` and
        bundles written before :class:`TrainingOptions` give them) and ``options`` as a dict folded into one
        :class:`TrainingOptions` over the head's default options; unchanged for heads without ``options``."""
        if "options" not in cls._param_names():
            return dict(params)
        out = {k: v for k, v in params.items() if k not in TrainingOptions.fields()}
        flat = {k: v for k, v in params.items() if k in TrainingOptions.fields()}
        base = out.get("options")
        if base is None:
            base = cls._default("options")
        elif isinstance(base, dict):
            base = TrainingOptions.from_dict({**cls._default("options").to_dict(), **base})
        elif not isinstance(base, TrainingOptions):
            raise InvalidInput(f"{cls.__name__}: options must be a TrainingOptions, got {type(base).__name__}")
        out["options"] = dataclasses.replace(base, **flat) if flat else base
        return out

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters (``options`` a :class:`TrainingOptions` value); ``deep`` changes nothing."""
        return {k: getattr(self, k) for k in self._param_names()}

    def params_json(self) -> dict[str, Any]:
        """:meth:`get_params` as JSON values (``options`` as a dict), as bundles store them."""
        return {k: (v.to_dict() if isinstance(v, TrainingOptions) else v) for k, v in self.get_params().items()}

    def set_params(self, **params: Any) -> GeoHead:
        """Set parameters; with ``options``, also its fields flat (``epochs=5``) or nested (``options__lr=3e-4``)."""
        valid = set(self._param_names())
        has_options = "options" in valid
        nested = {k.split("__", 1)[1]: params.pop(k) for k in list(params) if k.startswith("options__") and has_options}
        flat = {k: params.pop(k) for k in list(params) if has_options and k in TrainingOptions.fields()}
        for k in params:
            if k not in valid:
                names = sorted(valid | (set(TrainingOptions.fields()) if has_options else set()))
                raise InvalidInput(f"{type(self).__name__} has no parameter {k!r}; valid: {names}")
        for k in nested:
            if k not in TrainingOptions.fields():
                raise InvalidInput(f"options__{k}: no such training option; valid: {list(TrainingOptions.fields())}")
        for k, v in params.items():
            setattr(self, k, v)
        if flat or nested:
            current = self.with_options({"options": vars(self).get("options")})["options"]
            self.options = dataclasses.replace(current, **flat, **nested)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- the contract ----------------------------------------------------------------------
    def fit(  # pragma: no cover - abstract
        self,
        X: Any,
        y: Any,
        *,
        partition: Any = None,
        aux: Any = None,
        X_val: Any = None,
        y_val: Any = None,
        groups: Any = None,
        progress: bool = False,
    ) -> GeoHead:
        raise NotImplementedError

    def predict_distribution(self, X: Any) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_state(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_state(  # pragma: no cover - abstract
        cls, config: dict[str, Any], tensors: dict[str, NDArray[Any]], *, partition: Any = None
    ) -> GeoHead:
        raise NotImplementedError

    @classmethod
    def _params_from_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The constructor parameters a state's config stores (flat training keywords of old bundles folded in)."""
        params = cls.with_options(dict(config.get("params") or {}))
        names = set(cls._param_names())
        return {k: v for k, v in params.items() if k in names}

    # -- derived ---------------------------------------------------------------------------
    def check_is_fitted(self) -> None:
        if not hasattr(self, self._fitted_attr):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(embeddings, latlon) first or load a bundle"
            )

    def predict(self, X: Any) -> NDArray[np.float64]:
        """Most probable place per input: (N, 2) latitude/longitude in degrees."""
        dist = self.predict_distribution(X)
        best = dist.topk_indices(1)[:, 0]
        if dist.lat.ndim == 1:
            return np.stack([dist.lat[best], dist.lon[best]], axis=1)
        rows = np.arange(dist.n)
        return np.stack([dist.lat[rows, best], dist.lon[rows, best]], axis=1)

    def predict_topk(self, X: Any, k: int = 5) -> list[list[Candidate]]:
        """The k most probable places per input, best first, as :class:`Candidate` lists."""
        dist = self.predict_distribution(X)
        idx = dist.topk_indices(k)
        out: list[list[Candidate]] = []
        for i in range(dist.n):
            lat, lon = dist.points(i)
            out.append(
                [
                    Candidate(
                        lat=float(lat[j]),
                        lon=float(lon[j]),
                        probability=float(dist.prob[i, j]),
                        cell=(dist.cell[j] if dist.cell is not None else None),
                    )
                    for j in idx[i]
                ]
            )
        return out


def create_head(name: str, **params: Any) -> GeoHead:
    """Build an unfitted head by registry name, e.g. ``create_head("classifier", tau=75, epochs=10)`` (training
    keywords go into the head's :class:`TrainingOptions`)."""
    factory = HEADS.get(name)
    if isinstance(factory, type) and issubclass(factory, GeoHead):
        params = factory.with_options(params)
    return HEADS.create(name, **params)


def list_heads(pattern: str = "*") -> list[str]:
    """Registered head names."""
    return HEADS.list(pattern)


def head_from_state(config: dict[str, Any], tensors: dict[str, NDArray[Any]], *, partition: Any = None) -> GeoHead:
    """Rebuild a fitted head from :meth:`GeoHead.get_state` output (dispatches on ``config['name']``).

    ``partition`` is the partition the head was trained on (a bundle's ``partition.geojson``): heads that
    predict cells take their cell ids and centroids from it (states written before geoscout stored the
    partition once carry their own copy, which is used then)."""
    if "name" not in config:
        raise InvalidInput("head config has no 'name'; is this a geoscout bundle?")
    cls: Any = HEADS.get(config["name"])
    if "partition" in inspect.signature(cls.from_state).parameters:
        head: GeoHead = cls.from_state(config, tensors, partition=partition)
    else:  # a plugin head that predicts no cells
        head = cls.from_state(config, tensors)
    return head
