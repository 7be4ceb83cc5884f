"""The vLLM engine (V1 ``AsyncLLM``), with contrastive pairs and Braid-preprocessed images.
Public: `VLLMEngine` and the error it raises for a split pair, `ContrastivePairSplit`; vLLM loads
``plugin.register`` through its entry point. Importing this package does not import vLLM."""
from ..._lazy import lazy_exports

__all__ = ["VLLMEngine", "ContrastivePairSplit"]

__getattr__, __dir__ = lazy_exports(__name__, __all__, {".engine": ["VLLMEngine", "ContrastivePairSplit"]})
