"""One registry type for every component family, in the style of timm / open_clip: register, get, list.

Each family (backbones, partitions, heads, samplers, providers, built-in models) owns one
:class:`Registry`. A name may carry an argument after a colon (``geohash:4``, ``clip:ViT-B-32``);
the registry looks up the part before the colon and passes the rest to the factory as ``arg``.

Components are found two ways, both on first lookup: the family's own built-in ``modules`` are
imported (each registers its components with ``@REGISTRY.register``), then the installed
packages' entry points in the family's ``group`` (``geoscout.backbones``, ``geoscout.heads``...).
An entry point names a factory (``name = "pkg.module:factory"``, registered under its name) or a
module that registers its components itself (``name = "pkg.module"``)::

    [project.entry-points."geoscout.heads"]
    my-head = "my_package.heads:MyHead"
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import warnings
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from .errors import UnknownName

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories of one kind of component."""

    def __init__(self, kind: str, *, group: str | None = None, modules: Sequence[str] = ()) -> None:
        self.kind = kind
        self.group = group
        self.modules = tuple(modules)
        self._factories: dict[str, Callable[..., T]] = {}
        self._help: dict[str, str] = {}
        self._usage: dict[str, str] = {}
        self._loaded = False

    def register(
        self, name: str, *, help: str = "", usage: str | None = None
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``@REGISTRY.register("name")`` above a factory function or class; ``usage`` shows how
        the name is written when it takes an argument (``"zeroshot:<backbone>"``)."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            doc = (factory.__doc__ or "").strip().splitlines()
            self._help[name] = help or (doc[0] if doc else "")
            if usage:
                self._usage[name] = usage
            return factory

        return decorator

    def load(self) -> None:
        """Import the built-in modules and the entry points of :attr:`group` (once; later calls return at once)."""
        if self._loaded:
            return
        self._loaded = True  # first, so a module that looks itself up while registering does not recurse
        try:
            for mod in self.modules:
                importlib.import_module(mod)
        except BaseException:
            self._loaded = False
            raise
        if self.group is None:
            return
        for ep in entry_points(group=self.group):
            if ep.name in self._factories:
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not take the built-in components down with it
                warnings.warn(
                    f"{self.kind} plugin {ep.name!r} ({ep.value}) failed to load: {exc}", RuntimeWarning, stacklevel=2
                )
                continue
            if ep.attr and ep.name not in self._factories:
                self.register(ep.name)(obj)

    def _load_module_named(self, name: str) -> None:
        """Import the built-in module named like ``name`` (``geoscout.heads.classifier`` for ``classifier``), if any."""
        for mod in self.modules:
            if mod.rsplit(".", 1)[-1] == name.replace("-", "_"):
                importlib.import_module(mod)

    def split(self, spec: str) -> tuple[str, str | None]:
        """Split ``"name:arg"`` into ``("name", "arg")``; a bare name gives ``(name, None)``."""
        if not isinstance(spec, str) or not spec.strip():
            raise UnknownName(f"empty {self.kind} name; valid names: {', '.join(self.list())}")
        name, sep, arg = spec.strip().partition(":")
        return name, (arg if sep else None)

    def get(self, spec: str) -> Callable[..., T]:
        """Return the factory registered under the name part of ``spec``."""
        name, _ = self.split(spec)
        if name not in self._factories:
            self._load_module_named(name)  # e.g. a bundle's head: import only its module (no torch for a classifier)
        if name not in self._factories:
            self.load()
        try:
            return self._factories[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._factories, n=3)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownName(f"unknown {self.kind} {spec!r}.{hint} Valid names: {', '.join(self.list())}") from None

    def create(self, spec: str, **kwargs: Any) -> T:
        """Build a component from ``"name"`` or ``"name:arg"`` plus keyword arguments."""
        factory = self.get(spec)
        _, arg = self.split(spec)
        if arg is not None:
            kwargs = {"arg": arg, **kwargs}
        return factory(**kwargs)

    def list(self, pattern: str = "*") -> list[str]:
        """Registered names matching a glob pattern, sorted."""
        self.load()
        return sorted(n for n in self._factories if fnmatch.fnmatch(n, pattern))

    def describe(self) -> dict[str, str]:
        """Name -> one-line help, for ``--help`` texts and ``geoscout list``."""
        return {n: self._help.get(n, "") for n in self.list()}

    def usage(self, name: str) -> str:
        """How ``name`` is written: ``"name:<arg>"`` when registered with a ``usage``, else the name."""
        return self._usage.get(name, name)

    def __contains__(self, spec: object) -> bool:
        if not isinstance(spec, str) or not spec.strip():
            return False
        self.load()
        return self.split(spec)[0] in self._factories

    def __len__(self) -> int:
        self.load()
        return len(self._factories)
