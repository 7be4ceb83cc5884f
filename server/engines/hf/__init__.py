"""The transformers/PyTorch engine: batched scheduling over a slot KV cache. Public: `HFEngine`;
the other modules (scheduler, model runner, attention, sampler, methods) are its internals."""
from ..._lazy import lazy_exports

__all__ = ["HFEngine"]

__getattr__, __dir__ = lazy_exports(__name__, __all__, {".engine": ["HFEngine"]})
