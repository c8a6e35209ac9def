"""The partition registry: `@PARTITIONS.register("name")` adds a factory; `PARTITIONS.create(spec)` builds one.

Plugin packages add more through the ``geoscout.partitions`` entry-point group.
"""

from geoscout._registry import Registry

PARTITIONS: Registry = Registry("partition", group="geoscout.partitions")
