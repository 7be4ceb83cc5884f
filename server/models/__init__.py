"""Model loading: settings (`Settings`, one `ModelConfig` per served id, validated at start-up),
the registry of served ids -> started engines (`ModelRegistry`, `ServedModel`) and model sources
(`resolve_source`: bundled name, local folder or Hugging Face id -> a loadable folder).
"""
from .._lazy import lazy_exports

__all__ = ["Settings", "ModelConfig", "WorkflowEntry", "load_settings", "DEFAULT_MODEL", "BYTE_KINDS", "ModelRegistry", "ServedModel",
           "resolve_source"]

__getattr__, __dir__ = lazy_exports(__name__, __all__, {
    ".config": ["Settings", "ModelConfig", "WorkflowEntry", "load_settings", "DEFAULT_MODEL", "BYTE_KINDS"],
    ".registry": ["ModelRegistry", "ServedModel"],
    ".weights": ["resolve_source"],
})
