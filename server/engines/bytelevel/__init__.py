"""The byte-level engine: exact byte-level models, cross-tokenizer ensembles and proxy-tuning."""
from .engine import ByteLevelEngine
from .recipe import EnsembleNode, ProxyNode, SourceLeaf, build_recipe, describe
from .tokenizer import END_ID, ByteTokenizer

__all__ = ["ByteLevelEngine", "ByteTokenizer", "END_ID", "EnsembleNode", "ProxyNode", "SourceLeaf", "build_recipe",
           "describe"]
