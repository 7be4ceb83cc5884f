"""The byte-level engine: exact byte-level models, cross-tokenizer ensembles and proxy-tuning.

Public: `ByteLevelEngine`; `build_recipe` / `describe` (a config entry -> the tree it serves);
`SourcePool` / `load_source` (token-level models loaded once, read at byte level); and the exact
prompt boundary for token-level models (`PromptBoundaryReader`, `HandOff`).
"""
from ..._lazy import lazy_exports

__all__ = ["ByteLevelEngine", "build_recipe", "describe", "SourcePool", "load_source", "PromptBoundaryReader",
           "HandOff"]

__getattr__, __dir__ = lazy_exports(__name__, __all__, {
    ".engine": ["ByteLevelEngine"],
    ".recipe": ["build_recipe", "describe"],
    ".sources": ["SourcePool", "load_source"],
    ".prompt_boundary": ["PromptBoundaryReader", "HandOff"],
})
