"""Engines: token ids in, token deltas out. ``base`` is the contract every engine implements;
``hf`` (transformers), ``vllm`` and ``bytelevel`` are the engines, each its own package that
imports no other engine.
"""
from .._lazy import lazy_exports

__all__ = ["Engine", "EngineRequest", "EngineOutput", "EngineStats", "EngineError", "TokenLogprob", "ChatConversation"]

__getattr__, __dir__ = lazy_exports(__name__, __all__, {".base": __all__})
