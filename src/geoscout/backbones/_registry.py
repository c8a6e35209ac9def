"""The backbone registry: `@BACKBONES.register("name")` adds a factory; `BACKBONES.create(spec)` builds one."""

from geoscout._registry import Registry

BACKBONES: Registry = Registry("backbone")
