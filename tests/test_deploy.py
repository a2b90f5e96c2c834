"""AOT deployment on the CPU: torch.export save/load round trip, and an AOTInductor package that calls the
fused ops from C++ (through the dispatcher, with the fusedrnn library loaded by `import fusedrnn`)."""

import zipfile

import pytest
import torch

import fusedrnn
from conftest import assert_close_relative


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = torch.nn.GRU(8, 5, batch_first=True)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.gru(y)


FUSED_OPS = {torch.ops.fusedrnn.lstm_forward.default, torch.ops.fusedrnn.gru_forward.default}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    plain = Model().eval()
    fused = fusedrnn.convert(plain)
    batch, steps = torch.export.Dim("batch", max=64), torch.export.Dim("steps", max=64)
    program = torch.export.export(fused, (torch.randn(2, 5, 3),), dynamic_shapes=({0: batch, 1: steps},))
    # the program holds the fused ops (a fallback to torch.nn's RNN would not)
    assert FUSED_OPS <= {n.target for n in program.graph.nodes}
    return plain, fused, program


def check(outputs, plain, fused, x):
    """outputs equal eager fused outputs, and match torch.nn's."""
    with torch.no_grad():
        eager, expected = fused(x), plain(x)
    for out, e, want, what in zip(outputs, eager, expected, ["y", "h_n"]):
        torch.testing.assert_close(out, e, rtol=0, atol=0)
        assert_close_relative(out, want, 1e-5, what)


def test_export_save_load_round_trip(models, tmp_path):
    plain, fused, program = models
    torch.export.save(program, tmp_path / "model.pt2")
    loaded = torch.export.load(tmp_path / "model.pt2")
    assert FUSED_OPS <= {n.target for n in loaded.graph.nodes}
    x = torch.randn(3, 7, 3)  # another batch and sequence length than the example
    check(loaded.module()(x), plain, fused, x)


def test_aoti_package_on_cpu_calls_the_fused_ops(models, tmp_path):
    plain, fused, program = models
    path = torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_path / "model.pt2"))
    with zipfile.ZipFile(path) as package:
        contents = b"".join(package.read(name) for name in package.namelist())
    assert b"fusedrnn::lstm_forward" in contents and b"fusedrnn::gru_forward" in contents
    runner = torch._inductor.aoti_load_package(path)
    x = torch.randn(2, 9, 3)
    check(runner(x), plain, fused, x)
