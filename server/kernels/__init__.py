"""Compute kernels shared by the engines: `small_batch_linear` (a few rows through
``weight @ x.T`` on a CPU) and `install_small_batch_linears` (swaps a model's linear layers)."""
from .._lazy import lazy_exports

__all__ = ["install_small_batch_linears", "small_batch_linear"]

__getattr__, __dir__ = lazy_exports(__name__, __all__, {".cpu_linear": __all__})
