"""``release_free_memory`` gives memory freed inside the heap back to the OS, measured as RSS."""
from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = r"""
import psutil
from braid.server.engines.heap import release_free_memory

rss = lambda: psutil.Process().memory_info().rss
blocks, pins = [], []
start = rss()
for _ in range(2000):  # 100 KiB blocks (under glibc's mmap threshold: they live in the heap) ...
    blocks.append(bytearray(100 * 1024))
    pins.append(bytearray(64))  # ... each followed by a small one that stays, so the freed space is not at the top
before_free = rss()
del blocks
freed = rss()
released = release_free_memory()
after = rss()
print(start, before_free, freed, after, released)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_freed_heap_memory_goes_back_to_the_os():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    *sizes, released = out.split()
    start, before_free, freed, after = (int(size) for size in sizes)
    mib = 1 << 20
    assert before_free - start > 150 * mib, sizes  # the ~195 MiB of blocks were resident
    # Freeing alone keeps most of it (glibc may trim the heap's top itself, never the pinned middle).
    assert freed - start > (before_free - start) / 2, sizes
    assert after - start < 30 * mib, sizes  # trimming gives back nearly all of what freeing kept
    assert released == "True"
