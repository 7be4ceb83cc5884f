"""Config of the byte-level test server (shared by its fixture and the tests)."""
from __future__ import annotations

API_KEY = "bytes-key"


def bytelevel_settings(tiny_llama_dir, tiny_sentencepiece_dir, tiny_anti_dir) -> dict:
    f64 = {"dtype": "float64"}
    return {
        "api_key": API_KEY,
        "log_level": "info",
        "models": [
            {"id": "tiny", "source": str(tiny_llama_dir), "engine": "transformers", "dtype": "float32"},
            {"id": "bytes", "kind": "bytelevel", "source": str(tiny_llama_dir), **f64},
            {"id": "duo", "kind": "ensemble", "mode": "mix", **f64,
             "members": [{"model": "tiny", "weight": 0.7}, {"source": str(tiny_sentencepiece_dir), "weight": 0.3}]},
            {"id": "prod", "kind": "ensemble", "mode": "product", **f64,
             "members": [{"model": "bytes", "weight": 1.0}, {"source": str(tiny_sentencepiece_dir), "weight": 0.5}]},
            {"id": "px", "kind": "proxy", "alpha": 0.5, **f64, "base": {"source": str(tiny_sentencepiece_dir)},
             "expert": {"model": "bytes"}, "anti_expert": {"source": str(tiny_anti_dir)}},
        ],
    }
