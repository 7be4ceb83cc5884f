"""Giving freed heap memory back to the operating system, where the C library can (glibc).

glibc keeps memory a process frees (tensors included: torch on CPU allocates with malloc) in its
heap for reuse, so after a burst the process stays as large as at its peak. ``malloc_trim(0)``
returns the free pages. Elsewhere (musl, macOS) this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["release_free_memory"]


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Return the heap's free pages to the OS; whether anything was released."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
