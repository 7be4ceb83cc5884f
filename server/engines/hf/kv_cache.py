"""A slot KV cache: per layer, ``[num_slots, num_kv_heads, capacity, head_dim]`` for k and v.

Each running sequence owns one slot; its cached length lives with the scheduler. The cache
grows on demand (slots and capacity) and, when growing along one axis would overshoot the
memory budget, it is re-laid out to exactly what is needed, keeping the live prefix.
"""
from __future__ import annotations

import torch

_LEN_ALIGN = 64


class SlotKVCache:
    def __init__(self, num_layers: int, num_kv_heads: int, head_dim: int, *, dtype: torch.dtype,
                 device: torch.device | str, max_len: int, memory_bytes: int | None = None):
        self.num_layers = num_layers
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.dtype = dtype
        self.device = torch.device(device)
        self.max_len = max_len
        self.memory_bytes = memory_bytes
        self.num_slots = 0
        self.capacity = 0
        self._k: list[torch.Tensor] = []
        self._v: list[torch.Tensor] = []

    @property
    def bytes_per_token(self) -> int:
        """Bytes one cached token costs across all layers, k and v."""
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * itemsize

    @property
    def max_tokens(self) -> int | None:
        """``num_slots * capacity`` the budget allows (None: unbounded)."""
        return None if self.memory_bytes is None else self.memory_bytes // self.bytes_per_token

    def layer(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._k[layer_idx], self._v[layer_idx]

    def ensure(self, num_slots: int, length: int) -> None:
        """Make slots ``[0, num_slots)`` hold at least ``length`` positions each."""
        if num_slots <= self.num_slots and length <= self.capacity:
            return
        want_len = min(self.max_len, -(-length // _LEN_ALIGN) * _LEN_ALIGN)
        slots, cap = max(num_slots, self.num_slots), max(want_len, self.capacity)
        budget = self.max_tokens
        if budget is not None and slots * cap > budget:
            slots, cap = num_slots, want_len
            if slots * cap > budget:
                cap = max(length, budget // slots)
        self._resize(slots, cap)

    def _resize(self, num_slots: int, capacity: int) -> None:
        keep_s, keep_l = min(num_slots, self.num_slots), min(capacity, self.capacity)
        shape = (num_slots, self.num_kv_heads, capacity, self.head_dim)
        for store in (self._k, self._v):
            for i in range(self.num_layers):
                new = torch.zeros(shape, dtype=self.dtype, device=self.device)
                if i < len(store):
                    new[:keep_s, :, :keep_l] = store[i][:keep_s, :, :keep_l]
                    store[i] = new
                else:
                    store.append(new)
        self.num_slots, self.capacity = num_slots, capacity
