"""The head registry: `@HEADS.register("name")` adds a factory; `HEADS.create(spec)` builds one.

Built-in heads live in the modules below and register on first lookup; plugin packages add
heads through the ``geoscout.heads`` entry-point group.
"""

from geoscout._registry import Registry

HEADS: Registry = Registry(
    "head",
    group="geoscout.heads",
    modules=(
        "geoscout.heads.classifier",
        "geoscout.heads.hybrid",
        "geoscout.heads.multitask",
        "geoscout.heads.knn",
        "geoscout.heads.contrastive",
        "geoscout.heads.geoclip",
    ),
)
