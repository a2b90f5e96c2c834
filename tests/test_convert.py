"""fusedrnn.convert / to_torch on whole models."""

import pytest
import torch

import fusedrnn
from conftest import assert_close_relative


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.encoder = torch.nn.LSTM(4, 6, num_layers=2, bidirectional=True, dropout=0.3)
        self.blocks = torch.nn.ModuleDict({"gru": torch.nn.GRU(12, 5, batch_first=True),
                                           "cell": torch.nn.GRUCell(5, 5)})
        self.extra = torch.nn.Sequential(torch.nn.RNN(5, 3, nonlinearity="relu"), torch.nn.LSTMCell(3, 2),
                                         torch.nn.RNNCell(2, 2))

    def forward(self, tokens):
        x = self.embed(tokens)                       # [T, B, 4]
        y, _ = self.encoder(x)                       # [T, B, 12]
        y, _ = self.blocks["gru"](y.transpose(0, 1))  # [B, T, 5]
        h = self.blocks["cell"](y[:, -1])
        z, _ = self.extra[0](y.transpose(0, 1))
        h2, _ = self.extra[1](z[-1])
        return h.sum() + self.extra[2](h2).sum()


def recurrent_types(model):
    return [type(m) for m in model.modules() if isinstance(m, (torch.nn.RNNBase, torch.nn.RNNCellBase))]


def test_convert_replaces_every_recurrent_module_and_keeps_the_original():
    torch.manual_seed(0)
    model = Model().double().eval()
    fused = fusedrnn.convert(model)
    assert fused is not model
    assert recurrent_types(fused) == [fusedrnn.LSTM, fusedrnn.GRU, fusedrnn.GRUCell, fusedrnn.RNN,
                                      fusedrnn.LSTMCell, fusedrnn.RNNCell]
    assert recurrent_types(model) == [torch.nn.LSTM, torch.nn.GRU, torch.nn.GRUCell, torch.nn.RNN,
                                      torch.nn.LSTMCell, torch.nn.RNNCell]
    assert not fused.training and all(not m.training for m in fused.modules())
    for (name, p), (_, q) in zip(model.named_parameters(), fused.named_parameters()):
        assert torch.equal(p, q) and p is not q and q.dtype == torch.float64, name
    tokens = torch.randint(0, 10, (7, 3))
    assert_close_relative(fused(tokens), model(tokens), 1e-10)


def test_convert_inplace_and_back():
    torch.manual_seed(1)
    model = Model()
    params = list(model.parameters())
    same = fusedrnn.convert(model, inplace=True)
    assert same is model and type(model.encoder) is fusedrnn.LSTM
    assert all(p is q for p, q in zip(params, model.parameters()))  # the very same parameters
    back = fusedrnn.to_torch(model)
    assert recurrent_types(back)[0] is torch.nn.LSTM and type(model.encoder) is fusedrnn.LSTM
    tokens = torch.randint(0, 10, (6, 2))
    model.eval()
    back.eval()
    assert_close_relative(model(tokens), back(tokens), 1e-5)


def test_convert_a_bare_module_keeps_training_mode():
    lstm = torch.nn.LSTM(3, 4)
    lstm.train()
    fused = fusedrnn.convert(lstm)
    assert type(fused) is fusedrnn.LSTM and fused.training
    lstm.eval()
    assert not fusedrnn.convert(lstm).training


def test_user_subclasses_are_left_alone():
    class MyLSTM(torch.nn.LSTM):
        def forward(self, x, hx=None):
            return super().forward(x * 2, hx)

    model = torch.nn.Sequential(MyLSTM(3, 4))
    assert type(fusedrnn.convert(model)[0]) is MyLSTM


@pytest.mark.parametrize("cls", [torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN])
def test_convert_is_idempotent(cls):
    once = fusedrnn.convert(cls(3, 4))
    twice = fusedrnn.convert(once)
    assert type(twice) is type(once)
