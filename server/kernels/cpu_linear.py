"""Linear layers for decoding on a CPU: a few rows through ``weight @ x.T``.

Decode steps put a handful of rows (1 per plain sequence, 2 per contrastive pair) through every
linear layer. For such shapes PyTorch's ``F.linear`` (``x @ W.T``) takes an MKL path that runs on
one thread whatever ``torch.get_num_threads()`` says: on the 2-core EPYC measured here, a
SmolLM2-135M decode step costs the same with 1 or 2 threads, and 2 rows cost ~1.45x one row. The
same product as ``(W @ x.T).T`` takes a GEMM path that uses all threads; one row is padded to two
because the single-column product falls back to the one-thread path. Measured (float32,
SmolLM2-135M decode step over a 60-token cache, median of 8), with 2 threads: 1 row 65 -> 55 ms,
2 rows 92 -> 68 ms, 4 rows 105 -> 71 ms, 8 rows 122 -> 93 ms; with 1 thread that GEMM is slower
than ``F.linear`` (1 row 64 -> 83 ms, 8 rows 120 -> 157 ms), so with one thread ``F.linear`` is
kept.

The result differs from ``F.linear`` only by float rounding (another summation order). Larger
inputs (prefills) keep ``F.linear``.
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["install_small_batch_linears", "small_batch_linear"]

MAX_ROWS = 32  # above this ``F.linear`` was as fast or faster


def small_batch_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                       max_rows: int = MAX_ROWS) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` computed as ``(weight @ x.T).T`` for at most ``max_rows`` rows
    when torch may use more than one thread (checked per call: the thread count can change)."""
    rows = x.reshape(-1, x.shape[-1])
    n = rows.shape[0]
    if n == 0 or n > max_rows or torch.get_num_threads() < 2:
        return F.linear(x, weight, bias)
    if n == 1:
        out = (weight @ torch.cat([rows, rows]).t())[:, :1].t()
    else:
        out = (weight @ rows.t()).t()
    if bias is not None:
        out = out + bias
    return out.reshape(*x.shape[:-1], weight.shape[0])


def _forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return small_batch_linear(x, self.weight, self.bias)


def install_small_batch_linears(model: nn.Module) -> int:
    """Give every float32 CPU ``nn.Linear`` of ``model`` the small-batch forward; returns how many.
    GPU and reduced-precision layers are left alone (not measured there)."""
    count = 0
    for module in model.modules():
        if type(module) is nn.Linear and module.weight.device.type == "cpu" and module.weight.dtype == torch.float32:
            module.forward = types.MethodType(_forward, module)
            count += 1
    return count
