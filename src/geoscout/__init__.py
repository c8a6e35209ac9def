"""geoscout: tell where on Earth a photo was taken.

The public API is imported lazily so that ``import geoscout`` (and the CLI's cold
start) stays fast; heavy dependencies such as torch load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Candidate": "geoscout.types",
    "Prediction": "geoscout.types",
    "GeoscoutError": "geoscout.errors",
    "InvalidInput": "geoscout.errors",
    "UnknownName": "geoscout.errors",
    "NotFittedError": "geoscout.errors",
    "MissingWeights": "geoscout.errors",
    "MissingDependency": "geoscout.errors",
    "ProviderError": "geoscout.errors",
    "UnreadableInput": "geoscout.errors",
    "PhotoFailure": "geoscout.errors",
    "haversine_km": "geoscout.geo",
    "geoguessr_score": "geoscout.geo",
    "Dataset": "geoscout.data",
    "load_dataset": "geoscout.data",
    "reverse_geocode": "geoscout.places",
    "Backbone": "geoscout.backbones",
    "create_backbone": "geoscout.backbones",
    "list_backbones": "geoscout.backbones",
    "EmbeddingStore": "geoscout.embeddings",
    "embed_dataset": "geoscout.embeddings",
    "Partition": "geoscout.cells",
    "create_partition": "geoscout.cells",
    "list_partitions": "geoscout.cells",
    "GeoHead": "geoscout.heads",
    "TrainingOptions": "geoscout.heads",
    "create_head": "geoscout.heads",
    "list_heads": "geoscout.heads",
    "ModelBundle": "geoscout.bundle",
    "train_model": "geoscout.train",
    "load_model": "geoscout.locator",
    "list_models": "geoscout.locator",
    "Locator": "geoscout.locator",
    "locate": "geoscout.locator",
    "evaluate": "geoscout.evaluate",
    "zeroshot_head": "geoscout.zeroshot",
    "fuse_with_prior": "geoscout.zeroshot",
    "finetune": "geoscout.clip_finetune",
    "compare": "geoscout.photo_distance",
    "Comparison": "geoscout.photo_distance",
    "play": "geoscout.game",
    "FinetuneConfig": "geoscout.clip_finetune",
}

__all__ = [
    "Backbone",
    "Candidate",
    "Comparison",
    "Dataset",
    "EmbeddingStore",
    "FinetuneConfig",
    "GeoHead",
    "GeoscoutError",
    "InvalidInput",
    "Locator",
    "MissingDependency",
    "MissingWeights",
    "ModelBundle",
    "NotFittedError",
    "Partition",
    "PhotoFailure",
    "Prediction",
    "ProviderError",
    "TrainingOptions",
    "UnknownName",
    "UnreadableInput",
    "__version__",
    "compare",
    "create_backbone",
    "create_head",
    "create_partition",
    "embed_dataset",
    "evaluate",
    "finetune",
    "fuse_with_prior",
    "geoguessr_score",
    "haversine_km",
    "list_backbones",
    "list_heads",
    "list_models",
    "list_partitions",
    "load_dataset",
    "load_model",
    "locate",
    "play",
    "reverse_geocode",
    "train_model",
    "zeroshot_head",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'geoscout' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
