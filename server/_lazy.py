"""Lazy package exports (PEP 562): a package names its public API in ``__init__.py`` without
importing the submodules behind it, so ``import braid.server.api`` stays light and torch, vLLM or
transformers load only when a name that needs them is first used."""
from __future__ import annotations

import sys
from importlib import import_module
from typing import Any, Callable, Iterable, Mapping


def lazy_exports(package: str, names: Iterable[str], sources: Mapping[str, Iterable[str]]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` whose public ``names`` (its ``__all__``)
    come from the relative submodules in ``sources`` (``{".app": ["run_server"], ...}``)."""
    home = {name: module for module, members in sources.items() for name in members}
    if set(home) != set(names):
        raise ImportError(f"{package}: __all__ and its lazy sources differ in {sorted(set(home) ^ set(names))}")

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(home[name], package), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this hook
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(home))

    return __getattr__, __dir__
