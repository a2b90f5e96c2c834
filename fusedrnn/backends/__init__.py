"""Diagnostics and switches of fusedrnn's kernels, in the spirit of torch.backends.

`fusedrnn.backends.cpu`: the instruction set of the CPU kernels, the packed-weight cache and the
scratch-memory pool. `fusedrnn.backends.cuda`: how the CUDA part was built, which CUDA algorithm runs
(step-wise or persistent) and how often each ran, and the grid-barrier probe.
"""

from . import cpu, cuda

__all__ = ["cpu", "cuda"]
