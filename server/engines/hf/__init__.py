"""The transformers/PyTorch engine: batched scheduling over a slot KV cache."""
from .engine import HFEngine

__all__ = ["HFEngine"]
