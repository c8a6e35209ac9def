"""The partition registry: `@PARTITIONS.register("name")` adds a factory; `PARTITIONS.create(spec)` builds one."""

from geoscout._registry import Registry

PARTITIONS: Registry = Registry("partition")
