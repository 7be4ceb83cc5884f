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
for _ in range(2000):  # 100 KiB blocks (under glibc's mmap threshold: they live in the heap) ...
    blocks.append(bytearray(100 * 1024))
    pins.append(bytearray(64))  # ... each followed by a small one that stays, so the freed space is not at the top
before_free = rss()
del blocks
freed = rss()
released = release_free_memory()
after = rss()
print(before_free, freed, after, released)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_freed_heap_memory_goes_back_to_the_os():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    before_free, freed, after, released = out.split()
    before_free, freed, after = int(before_free), int(freed), int(after)
    mib = 1 << 20
    assert freed > before_free - 60 * mib  # freeing alone keeps most of the ~195 MiB resident
    assert after < freed - 150 * mib, (before_free, freed, after)
    assert released == "True"
