"""Each package's public API (its ``__init__``'s ``__all__``) resolves, and naming it stays light."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from braid.server._lazy import lazy_exports

PACKAGES = ["api", "prompts", "models", "engines", "engines.hf", "engines.vllm", "engines.bytelevel", "decoding",
            "decoding.bytelevel", "kernels", "tool_calling"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves(package):
    module = importlib.import_module(f"braid.server.{package}")
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"braid.server.{package} exports names it cannot import: {missing}"
    assert set(module.__all__) <= set(dir(module))


def test_importing_the_packages_loads_no_heavy_dependency():
    packages = ", ".join(f"braid.server.{package}" for package in PACKAGES if package != "tool_calling")
    code = (f"import sys, {packages}\n"
            "print(sorted(m for m in ('torch', 'vllm', 'transformers', 'fastapi', 'numpy') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert loaded.strip() == "[]"


def test_unknown_names_are_attribute_errors_and_sources_must_match_all():
    import braid.server.api as api

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        api.nope  # noqa: B018
    with pytest.raises(ImportError, match=r"\['extra', 'missing'\]"):
        lazy_exports("braid.server.api", ["run_server", "missing"], {".app": ["run_server", "extra"]})
