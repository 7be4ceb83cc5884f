"""The transformers/PyTorch engine: batched scheduling over a slot KV cache."""
