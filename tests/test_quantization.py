"""torch.ao.quantization.quantize_dynamic quantizes a converted model exactly as the torch.nn model with the
same weights: the same quantized module types (what torch leaves in float stays fused) and equal outputs."""

import pytest
import torch
from torch.ao.nn.quantized import dynamic as nnqd
from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

import fusedrnn
from conftest import assert_close_relative
from fusedrnn.conversion import TO_FUSED

I, H, T, B = 3, 4, 3, 2
pytestmark = [  # torch deprecates eager-mode quantization (in favour of torchao) but still ships it
    pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning"),
]
nn = torch.nn
DYNAMIC = [nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell, nn.RNNCell, nn.Linear]
SPECS = {  # qconfig_spec, dtype
    "set": (set(DYNAMIC), torch.qint8),
    "dict": ({cls: default_dynamic_qconfig for cls in DYNAMIC}, torch.qint8),
    "default": (None, torch.qint8),
    "default_float16": (None, torch.float16),
    "lstm_only": ({nn.LSTM}, torch.qint8),
    "whole_model": ({"": default_dynamic_qconfig}, torch.qint8),  # every submodule inherits the qconfig
}


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(I, H, num_layers=2, bidirectional=True)
        self.gru = nn.GRU(2 * H, H)
        self.rnn = nn.RNN(H, H)  # torch has no dynamic quantized RNN: it stays in float
        self.lstm_cell = nn.LSTMCell(H, H)
        self.gru_cell = nn.GRUCell(H, H)
        self.rnn_cell = nn.RNNCell(H, H)
        self.head = nn.Linear(H, 2)

    def forward(self, x):
        y, _ = self.lstm(x)
        y, _ = self.gru(y)
        y, _ = self.rnn(y)
        h, _ = self.lstm_cell(y[-1])
        return self.head(self.rnn_cell(self.gru_cell(h)))


@pytest.mark.parametrize("spec", list(SPECS))
def test_quantize_dynamic_matches_torch_nn(spec):
    torch.manual_seed(0)
    plain = Model()
    fused = fusedrnn.convert(plain)
    qconfig_spec, dtype = SPECS[spec]
    q_plain = quantize_dynamic(plain, qconfig_spec, dtype=dtype)
    q_fused = quantize_dynamic(fused, qconfig_spec, dtype=dtype)
    assert type(q_plain.lstm) is nnqd.LSTM  # torch quantized its LSTM in every spelling
    for (name, p), (_, f) in zip(q_plain.named_children(), q_fused.named_children(), strict=True):
        assert type(f) is TO_FUSED.get(type(p), type(p)), name
    assert type(fused.lstm) is fusedrnn.LSTM  # the converted model itself is left as it was
    x = torch.randn(T, B, I)
    assert_close_relative(q_fused(x), q_plain(x), 1e-5)
