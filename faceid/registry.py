"""A small name -> factory registry, one per family (losses, backbones, ...), in the style of timm."""

import inspect
from collections.abc import Callable
from typing import Any


def option_names(factory: Callable[..., Any], skip: int = 0) -> list[str] | None:
    """The keyword options `factory` accepts after its first `skip` positional parameters.

    None when it takes **kwargs (any name is accepted). A class is read through its __init__.
    """
    signature = inspect.signature(factory)
    parameters = list(signature.parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    named = [p for p in parameters if p.kind in keyword_kinds]
    return [p.name for p in named[skip:]]


def check_options(label: str, factory: Callable[..., Any], options: dict, skip: int = 0) -> None:
    """Raise ValueError naming every option `factory` does not take, and the ones it does."""
    valid = option_names(factory, skip)
    if valid is None:
        return
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {label}; valid: {valid or 'none'}")


class Registry:
    """Maps names to factories; `register` is a decorator, `get` fails with the list of valid names,
    and `build` checks option names before calling the factory."""

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

    def build(self, name: str, *args: Any, **options: Any) -> Any:
        """`factory(*args, **options)` for `name`, after checking that every option name is one the
        factory takes: a ValueError names the bad keys and the valid ones instead of a TypeError."""
        factory = self.get(name)
        check_options(f"{self.family} {name!r}", factory, options, skip=len(args))
        return factory(*args, **options)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
