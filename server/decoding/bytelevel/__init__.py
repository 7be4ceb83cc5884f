"""Exact byte-level (and character-level) decoding of token-level LMs. See README.md.

Public: `ByteLM` (a token LM read exactly over bytes; `END` is its end-of-text outcome) and
`CharLM` (`END_OF_TEXT`) on top of it; `ByteEnsemble` and `ProxyTunedByteLM` (byte LMs over
other byte LMs, any tokenizers); what a `ByteLM` reads: `LanguageModel` (the protocol),
`TransformersLM`, `TokenVocabulary`, `CanonicalityChecker`. The pure float64 steps live in
``next_byte`` (aggregation, sampling) and ``combine`` (mix, product, proxy-tuning).
"""
from ..._lazy import lazy_exports

__all__ = ["ByteLM", "END", "CharLM", "END_OF_TEXT", "ByteEnsemble", "ProxyTunedByteLM", "LanguageModel",
           "TransformersLM", "TokenVocabulary", "CanonicalityChecker"]

__getattr__, __dir__ = lazy_exports(__name__, __all__, {
    ".byte_lm": ["ByteLM", "END"],
    ".char_lm": ["CharLM", "END_OF_TEXT"],
    ".ensemble": ["ByteEnsemble", "ProxyTunedByteLM"],
    ".language_model": ["LanguageModel", "TransformersLM"],
    ".vocabulary": ["TokenVocabulary"],
    ".canonicality": ["CanonicalityChecker"],
})
