"""The CUDA part: how it was built, which algorithm runs (step-wise or persistent), and the grid-barrier
probe. Without a CUDA build or device they say so (0, zero counts, None) instead of raising."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from .. import _C

# The extension reads this variable on every call: unset, empty or 'auto' lets the batch and hidden
# sizes decide; 'step' or 'persistent' forces one (persistent where the layer allows it).
ALGORITHM_VARIABLE = "FUSEDRNN_ALGO"
ALGORITHMS = ("auto", "step", "persistent")


def is_built() -> bool:
    """True when this build compiled the CUDA part (torch was a CUDA build and nvcc was found)."""
    return _C.built_with_cuda()


def runtime_version() -> int:
    """The CUDA runtime version the CUDA part was linked against (e.g. 13000), 0 without a CUDA build."""
    return _C.cuda_runtime_version()


def _check(name: str) -> str:
    """name, when it is one of ALGORITHMS; ValueError otherwise."""
    if name not in ALGORITHMS:
        raise ValueError(f"fusedrnn: the CUDA algorithm must be 'auto', 'step' or 'persistent', got {name!r}")
    return name


def algorithm() -> str:
    """The CUDA algorithm requested now: 'auto', 'step' or 'persistent' (from FUSEDRNN_ALGO). Raises
    ValueError when the variable holds anything else, as the CUDA ops would."""
    return _check(os.environ.get(ALGORITHM_VARIABLE) or "auto")


def set_algorithm(name: str) -> None:
    """Forces the CUDA algorithm of later calls: 'step' or 'persistent'; 'auto' lets the batch and hidden
    sizes decide again. Sets FUSEDRNN_ALGO, which the extension reads on every call."""
    if _check(name) == "auto":
        os.environ.pop(ALGORITHM_VARIABLE, None)
    else:
        os.environ[ALGORITHM_VARIABLE] = name  # os.environ's assignment calls putenv: the C++ getenv sees it


@contextlib.contextmanager
def use_algorithm(name: str) -> Iterator[str]:
    """Runs the block with the CUDA algorithm `name`, then restores FUSEDRNN_ALGO as it was (unset
    included)."""
    _check(name)
    before = os.environ.get(ALGORITHM_VARIABLE)
    set_algorithm(name)
    try:
        yield name
    finally:
        if before is None:
            os.environ.pop(ALGORITHM_VARIABLE, None)
        else:
            os.environ[ALGORITHM_VARIABLE] = before


def algorithm_counts() -> dict[str, int]:
    """Layer directions run by each CUDA algorithm since import: 'forward_step', 'forward_persistent',
    'backward_step' and 'backward_persistent' (all 0 without CUDA)."""
    return _C.cuda_algorithm_counts()


def barrier_microseconds(iterations: int = 2000) -> float | None:
    """Microseconds per grid-wide barrier of a cooperative launch (one block per SM) on the current
    device, averaged over `iterations` barriers: the floor of each time step of the persistent algorithm. None
    without a CUDA build or device; RuntimeError when the probe fails on the device."""
    if not is_built() or not torch.cuda.is_available():
        return None
    return _C.cuda_barrier_microseconds(iterations)
