"""The head registry: `@HEADS.register("name")` adds a factory; `HEADS.create(spec)` builds one."""

from geoscout._registry import Registry

HEADS: Registry = Registry("head")
