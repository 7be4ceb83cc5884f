"""Exact byte-level (and character-level) decoding of token-level LMs. See README.md."""
from .byte_lm import END, ByteLM
from .canonicality import CanonicalityChecker
from .char_lm import END_OF_TEXT, CharLM
from .cover import Branch
from .ensemble import ByteEnsemble, ProxyTunedByteLM
from .language_model import LanguageModel, TransformersLM
from .vocabulary import TokenVocabulary

__all__ = ["ByteEnsemble", "ByteLM", "Branch", "CanonicalityChecker", "CharLM", "END", "END_OF_TEXT", "LanguageModel",
           "ProxyTunedByteLM", "TokenVocabulary", "TransformersLM"]
