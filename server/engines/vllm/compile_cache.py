"""Make vLLM's torch.compile cache load on CPU, so warm starts skip the compile (1-2 min on 2 cores).

vLLM 0.32 saves the compiled model once (``VLLM_USE_AOT_COMPILE``, on by default with torch >= 2.10)
under ``$VLLM_CACHE_ROOT/torch_compile_cache/torch_aot_compile/<hash>/rank_0_0/model`` and loads it
on the next start (``vllm.compilation.decorators._try_load_aot_compiled_fn``). On CPU that load
always failed::

    [backbone] Compiling model again due to a load failure from .../rank_0_0/model,
    reason: 'function' object has no attribute 'finalize_loading'

vLLM's CPU platform (``CpuPlatform.check_and_update_config``) turns mode ``VLLM_COMPILE`` into
``DYNAMO_TRACE_ONCE`` with torch's own ``"inductor"`` backend, so the compiled function torch
deserializes is a ``BundledAOTAutogradSerializableCallable`` around a plain function (AOTAutograd's
bundled cache entry: the inductor kernels, complete once loaded). The loader, right after
checking the traced sources, unconditionally calls ``compiled_fn.finalize_loading(vllm_config)``,
a method only the artifact of vLLM's own backend has (``VllmSerializableFunction``, mode
``VLLM_COMPILE``, the GPU default): the AttributeError lands in its ``except`` and it recompiles.

The fix gives such a loaded function a no-op ``finalize_loading``, by wrapping
``torch.compiler.load_compiled_function`` (the one call the loader makes to torch) in the processes
that compile: vLLM spawns its engine core and workers, so the wrapper is installed there by Braid's
vLLM plugin (``plugin.register``) when ``VLLMEngine.start`` has set ``BRAID_VLLM_AOT_LOAD_FIX=1``
in the environment they inherit. Other vLLM processes (e.g. ``vllm serve`` run from the same
environment) stay untouched. Where the function already has ``finalize_loading`` (vLLM's backend,
or a vLLM release that fixed this), nothing changes.
"""
from __future__ import annotations

import logging
import os
from typing import Any

__all__ = ["ENV", "enable", "install", "wanted"]

ENV = "BRAID_VLLM_AOT_LOAD_FIX"

log = logging.getLogger(__name__)


def _nothing_to_finalize(vllm_config: Any) -> None:
    """Stands in for ``VllmSerializableFunction.finalize_loading``: a plain inductor-compiled
    function is ready to run when deserialized."""


def wanted() -> bool:
    return os.environ.get(ENV) == "1"


def enable() -> None:
    """In the process that starts the engine: mark the environment for the processes vLLM spawns
    (their plugin hook installs the fix) and install it here too (in-process engine core)."""
    os.environ[ENV] = "1"
    install()


def install() -> None:
    """Wrap ``torch.compiler.load_compiled_function`` once per process."""
    import torch.compiler

    original = torch.compiler.load_compiled_function
    if getattr(original, "_braid_aot_load_fix", False):
        return

    def load_compiled_function(*args: Any, **kwargs: Any) -> Any:
        loaded = original(*args, **kwargs)
        artifacts = getattr(loaded, "_artifacts", None)
        compiled = getattr(artifacts, "compiled_fn", None)
        if compiled is not None and not hasattr(compiled, "finalize_loading"):
            try:
                compiled.finalize_loading = _nothing_to_finalize
            except (AttributeError, TypeError):  # not a plain function: leave vLLM's error to show
                log.debug("cannot add finalize_loading to %r", type(compiled))
        return loaded

    load_compiled_function._braid_aot_load_fix = True  # type: ignore[attr-defined]
    load_compiled_function.__wrapped__ = original  # type: ignore[attr-defined]
    load_compiled_function.__doc__ = original.__doc__
    torch.compiler.load_compiled_function = load_compiled_function
