"""The CPU compile-cache fix (``compile_cache``): a loaded torch AOT artifact whose compiled function
lacks vLLM's ``finalize_loading`` (torch's own inductor backend, vLLM's CPU mode) gets a no-op one,
so vLLM loads it instead of compiling again; vLLM's own artifacts are left alone.

A real round trip (compile, save, load in a second engine start) needs a ~70 s inductor compile,
too slow for the suite: ``benchmarks/startup.py`` measures it (warm start: "loaded")."""
from __future__ import annotations

import types

import pytest

torch = pytest.importorskip("torch")

from braid.server.engines.vllm import compile_cache, plugin  # noqa: E402


class _Bundled:
    """Like torch's BundledAOTAutogradSerializableCallable: attribute reads go to the inner function."""

    def __init__(self, fn):
        self.compiled_fn = fn

    def __getattr__(self, name):
        return getattr(self.compiled_fn, name)

    def __call__(self, *args):
        return self.compiled_fn(*args)


class _VllmFunction:
    def __init__(self):
        self.finalized = None

    def finalize_loading(self, vllm_config):
        self.finalized = vllm_config


@pytest.fixture
def fake_loader(monkeypatch):
    """torch.compiler.load_compiled_function returning whatever ``result['compiled']`` holds."""
    result = {}

    def load(file, *, f_globals=None, external_data=None):
        return types.SimpleNamespace(_artifacts=types.SimpleNamespace(compiled_fn=result["compiled"]))

    monkeypatch.setattr(torch.compiler, "load_compiled_function", load)
    return result


def test_plain_inductor_artifact_gets_a_noop_finalize_loading(fake_loader):
    fake_loader["compiled"] = _Bundled(lambda *args: args)
    assert not hasattr(fake_loader["compiled"], "finalize_loading")  # the "load failure" of vLLM 0.32 on CPU
    compile_cache.install()
    loaded = torch.compiler.load_compiled_function(None, f_globals={})
    loaded._artifacts.compiled_fn.finalize_loading(object())  # what vLLM's loader calls: must not raise
    assert loaded._artifacts.compiled_fn(1, 2) == (1, 2)


def test_vllm_artifacts_keep_their_own_finalize_loading(fake_loader):
    fake_loader["compiled"] = own = _VllmFunction()
    compile_cache.install()
    config = object()
    torch.compiler.load_compiled_function(None)._artifacts.compiled_fn.finalize_loading(config)
    assert own.finalized is config


def test_install_wraps_once(fake_loader):
    compile_cache.install()
    wrapped = torch.compiler.load_compiled_function
    compile_cache.install()
    assert torch.compiler.load_compiled_function is wrapped


def test_plugin_installs_only_in_engines_braid_started(fake_loader, monkeypatch):
    original = torch.compiler.load_compiled_function
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    plugin.register()  # e.g. `vllm serve` from the same environment: untouched
    assert torch.compiler.load_compiled_function is original
    monkeypatch.setenv(compile_cache.ENV, "1")  # what VLLMEngine.start sets for the processes vLLM spawns
    plugin.register()
    assert torch.compiler.load_compiled_function is not original
