"""Exact byte-level (and character-level) decoding of token-level LMs. See README.md."""
from .byte_lm import END, ByteLM
from .canonicality import CanonicalityChecker
from .cover import Branch
from .language_model import LanguageModel, TransformersLM
from .vocabulary import TokenVocabulary

__all__ = ["ByteLM", "Branch", "CanonicalityChecker", "END", "LanguageModel", "TokenVocabulary",
           "TransformersLM"]
