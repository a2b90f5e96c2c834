"""The fused modules under DistributedDataParallel (gloo, 2 processes on the CPU): the averaged gradients
equal a single-process run over the whole batch."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import fusedrnn
from conftest import assert_close_relative

WORLD = 2
T, B, I, H = 6, 4, 3, 5


class Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = fusedrnn.LSTM(I, H, num_layers=2, bidirectional=True, dtype=torch.float64)
        self.cell = fusedrnn.GRUCell(2 * H, H, dtype=torch.float64)

    def forward(self, x):
        y, _ = self.rnn(x)
        return y.square().mean() + self.cell(y[-1]).square().mean()


def make_model():
    torch.manual_seed(0)
    return Encoder()


def make_batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(T, B, I, generator=g, dtype=torch.float64)


def worker(rank, init_file, out_dir):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        model = make_model()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        share = B // WORLD
        ddp(make_batch()[:, rank * share:(rank + 1) * share]).backward()
        torch.save([p.grad for p in model.parameters()], os.path.join(out_dir, f"grads{rank}.pt"))
        # Both ranks done before either tears gloo down: a rank that destroyed its group while the other
        # was still finishing aborted intermittently ("terminate called without an active exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_ddp_gradients_equal_single_process(tmp_path):
    mp.spawn(worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    # each rank's loss is a mean over its half; DDP averages the halves' gradients, which is the gradient
    # of the mean over the whole batch
    model = make_model()
    model(make_batch()).backward()
    expected = [p.grad for p in model.parameters()]
    for rank in range(WORLD):
        grads = torch.load(tmp_path / f"grads{rank}.pt")
        assert len(grads) == len(expected)
        for g, e in zip(grads, expected):
            assert_close_relative(g, e, 1e-10)
