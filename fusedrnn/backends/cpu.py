"""The CPU kernels: their instruction set, the packed-weight cache and the scratch-memory pool."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

from .. import _C

ISAS = ("default", "avx2", "avx512")  # portable first, widest last


def isa() -> str:
    """The instruction set the CPU kernels use now: 'avx512', 'avx2' or 'default' (portable)."""
    return _C.cpu_isa()


def set_isa(name: str) -> bool:
    """Uses the CPU kernels of `name` ('default', 'avx2' or 'avx512'); False, changing nothing, when this
    CPU lacks it. Raises ValueError for any other name."""
    return _C.set_cpu_isa(name)


@functools.cache
def supported_isas() -> tuple[str, ...]:
    """The instruction sets this CPU can run, portable first: ('default', ...)."""
    # The extension only answers by trying, so try each once and put the active one back; the CPU does
    # not change while the process runs, hence the cache.
    before = isa()
    try:
        return tuple(name for name in ISAS if set_isa(name))
    finally:
        set_isa(before)


@contextlib.contextmanager
def use_isa(name: str) -> Iterator[str]:
    """Runs the block with the CPU kernels of `name`, then restores the previous instruction set.
    Raises RuntimeError when this CPU lacks it (ValueError for an unknown name)."""
    before = isa()
    if not set_isa(name):
        raise RuntimeError(f"fusedrnn: this CPU lacks the '{name}' instruction set")
    try:
        yield name
    finally:
        set_isa(before)


def weight_cache_stats() -> dict[str, int]:
    """The cache of packed recurrent weights, which calls reuse while the weights are unchanged:
    {'packs', 'hits'} since import and the 'entries' held now."""
    return _C.cpu_weight_cache_stats()


def clear_weight_cache() -> None:
    """Drops every cached packing of recurrent weights, freeing their memory (the next call packs
    again). Never needed for correctness: the cache notices changed weights by version counter
    and content hash."""
    _C.clear_cpu_weight_cache()


def scratch_pool_stats() -> dict[str, int]:
    """The pool of large CPU temporaries (256 KB and up): {'reuses', 'allocations'} since import, and
    the 'idle_blocks' and 'idle_bytes' it holds now for the next call."""
    return _C.cpu_scratch_pool_stats()


def clear_scratch_pool() -> None:
    """Frees the idle memory the CPU ops keep for their next call's temporaries."""
    _C.clear_cpu_scratch_pool()
