"""A small name -> factory registry, one per family (losses, backbones, ...), in the style of timm."""

from collections.abc import Callable
from typing import Any


class Registry:
    """Maps names to factories; `register` is a decorator, `get` fails with the list of valid names."""

    def __init__(self, family: str):
        self.family = family
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, *names: str) -> Callable:
        def decorator(factory):
            for name in names:
                if name in self._entries:
                    raise ValueError(f"{self.family} {name!r} is registered twice")
                self._entries[name] = factory
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._entries:
            raise ValueError(f"unknown {self.family} {name!r}; available: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
