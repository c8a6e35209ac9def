"""A tiny registry in the style of timm / open_clip: register, get, list.

Each component family (backbones, partitions, heads, samplers, providers) owns one
:class:`Registry`. A name may carry an argument after a colon (``geohash:4``,
``clip:ViT-B-32``); the registry looks up the part before the colon and passes the
rest to the factory as ``arg``.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .errors import UnknownName

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories of one kind of component."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, *, help: str = "") -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``@REGISTRY.register("name")`` above a factory function or class."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            doc = help or (factory.__doc__ or "").strip().splitlines()[0:1]
            self._help[name] = doc if isinstance(doc, str) else (doc[0] if doc else "")
            return factory

        return decorator

    def split(self, spec: str) -> tuple[str, str | None]:
        """Split ``"name:arg"`` into ``("name", "arg")``; a bare name gives ``(name, None)``."""
        if not isinstance(spec, str) or not spec.strip():
            raise UnknownName(f"empty {self.kind} name; valid names: {', '.join(self.list())}")
        name, sep, arg = spec.strip().partition(":")
        return name, (arg if sep else None)

    def get(self, spec: str) -> Callable[..., T]:
        """Return the factory registered under the name part of ``spec``."""
        name, _ = self.split(spec)
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
        return sorted(n for n in self._factories if fnmatch.fnmatch(n, pattern))

    def describe(self) -> dict[str, str]:
        """Name -> one-line help, for ``--help`` texts and ``geoscout list``."""
        return {n: self._help.get(n, "") for n in self.list()}

    def __contains__(self, spec: object) -> bool:
        return isinstance(spec, str) and self.split(spec)[0] in self._factories

    def __len__(self) -> int:
        return len(self._factories)
