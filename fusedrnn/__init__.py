"""fusedrnn: fused CPU and CUDA kernels for LSTM, GRU and vanilla RNN layers (on CUDA, a persistent
algorithm and a step-wise one).

Drop-in modules: LSTM, GRU, RNN, LSTMCell, GRUCell, RNNCell (subclasses of their torch.nn classes), and
convert(model) / to_torch(model) to swap them inside a model. Beyond torch.nn: LayerNormLSTM, LayerNormGRU
and their cells, and zoneout= / recurrent_dropout= on every module. `fusedrnn.functional` runs layers through
the fused ops; `fusedrnn.reference` is the plain PyTorch oracle with the same single-layer signatures.
"""

import torch  # noqa: F401  (loads libtorch, which the extension links against)

from . import _config  # noqa: E402

_config.check_torch()  # before the extension loads: a mismatched build fails there with an obscure error

from . import _C, _ops, backends, functional, reference  # noqa: F401,E402
from .conversion import convert, to_torch  # noqa: E402
from .modules import (GRU, LSTM, RNN, GRUCell, LayerNormGRU, LayerNormGRUCell, LayerNormLSTM,  # noqa: E402
                      LayerNormLSTMCell, LSTMCell, RNNCell)
from . import _compile_support, _onnx, _quantization_support  # noqa: E402
from ._config import show_config  # noqa: E402

_compile_support.install()
_onnx.install()
_quantization_support.install()

__version__ = "0.1.0"


def built_with_cuda() -> bool:
    """True when this build compiled the CUDA part (torch was a CUDA build and nvcc was found)."""
    return _C.built_with_cuda()


__all__ = ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell", "LayerNormLSTM", "LayerNormGRU",
           "LayerNormLSTMCell", "LayerNormGRUCell", "convert", "to_torch", "functional",
           "reference", "backends", "built_with_cuda", "show_config", "__version__"]
