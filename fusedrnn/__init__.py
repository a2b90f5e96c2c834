"""fusedrnn: fused CPU (and, later, CUDA) kernels for LSTM, GRU and vanilla RNN layers.

`fusedrnn.functional` runs one layer in one direction over a whole sequence through the fused ops;
`fusedrnn.reference` is the plain PyTorch oracle with the same signatures.
"""

import torch  # noqa: F401  (loads libtorch, which the extension links against)

from . import _C, _ops, functional, reference  # noqa: F401,E402

__version__ = "0.1.0"


def built_with_cuda() -> bool:
    """True when this build compiled the CUDA part (torch was a CUDA build and nvcc was found)."""
    return _C.built_with_cuda()


__all__ = ["functional", "reference", "built_with_cuda", "__version__"]
