"""The backbone registry: `@BACKBONES.register("name")` adds a factory; `BACKBONES.create(spec)` builds one.

Plugin packages add more through the ``geoscout.backbones`` entry-point group.
"""

from geoscout._registry import Registry

BACKBONES: Registry = Registry("backbone", group="geoscout.backbones")
