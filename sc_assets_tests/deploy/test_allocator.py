"""``tune_allocator``: a freed large numpy buffer stays in the heap for the next chunk instead of being
unmapped (and mapped and zeroed afresh on the next allocation)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import os, sys
import numpy as np
from sc_assets.deploy.profiles import tune_allocator
tuned = sys.argv[1] == "tuned" and tune_allocator()
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
a = np.ones(12_500_000)                   # 100 MB, every page touched
held = rss()
del a
print(int(tuned), held - rss())           # bytes given back to the OS by the free
"""


def _probe(mode: str) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True, check=True)
    tuned, released = out.stdout.split()
    return tuned == "1", int(released)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tuned_allocator_keeps_a_freed_array_for_reuse():
    tuned, released = _probe("tuned")
    assert tuned
    assert released < 10_000_000  # the 100 MB stay in the heap for the next allocation
    untuned, released_default = _probe("default")
    assert not untuned
    assert released_default > 90_000_000  # glibc's default unmaps it: the next chunk faults it in again


def test_allocator_settings_left_alone_when_the_environment_sets_them(monkeypatch):
    from sc_assets.deploy.profiles import tune_allocator

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert tune_allocator() is False
