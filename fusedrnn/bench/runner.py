"""Side-by-side timing of one fused layer against the torch.nn layer holding the same weights.

Method: warm-up, then interleaved repetitions (torch.nn, fused, torch.nn, ...) so that both sides see
the same machine state; medians. CPU: perf_counter. CUDA: CUDA events around each call.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import torch

from .. import functional

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


@dataclasses.dataclass
class Result:
    cell: str
    dtype: str
    T: int
    B: int
    H: int
    mode: str
    device: str
    torch_ms: float
    fused_ms: float
    max_abs_err: float

    @property
    def speedup(self) -> float:
        return self.torch_ms / self.fused_ms


def _torch_layer(cell, size, dtype, device):
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    torch.manual_seed(0)
    return cls(size, size, dtype=dtype, device=device)


def _fused_call(cell, module):
    weights = (module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0, module.bias_hh_l0)
    if cell == "lstm":
        return lambda x, h: functional.lstm(x, h, *weights)
    return lambda x, h: getattr(functional, cell)(x, h, *weights)


def _initial_state(cell, B, H, dtype, device):
    h0 = torch.randn(B, H, dtype=dtype, device=device)
    return (h0, torch.randn(B, H, dtype=dtype, device=device)) if cell == "lstm" else h0


def _torch_state(cell, state):
    return tuple(s.unsqueeze(0) for s in state) if cell == "lstm" else state.unsqueeze(0)


def _time(fn, device):
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def bench_case(cell, T, B, H, mode, dtype=torch.float32, device="cpu", repeats=20, warmup=3) -> Result:
    module = _torch_layer(cell, H, dtype, device)
    fused = _fused_call(cell, module)
    x = torch.randn(T, B, H, dtype=dtype, device=device)
    state = _initial_state(cell, B, H, dtype, device)
    torch_state = _torch_state(cell, state)
    training = mode == "training"

    def runner(call, initial_state):
        def run():
            if training:
                y, _ = call(x.detach().requires_grad_(), initial_state)
                y.sum().backward()
            else:
                with torch.no_grad():
                    call(x, initial_state)
        return run

    run_torch, run_fused = runner(module, torch_state), runner(fused, state)

    with torch.no_grad():
        y_torch, _ = module(x, torch_state)
        y_fused, _ = fused(x, state)
    err = (y_torch - y_fused).abs().max().item()

    for _ in range(warmup):
        run_torch()
        run_fused()
    torch_times, fused_times = [], []
    for _ in range(repeats):
        torch_times.append(_time(run_torch, device))
        fused_times.append(_time(run_fused, device))
    module.zero_grad(set_to_none=True)
    return Result(cell, str(dtype).replace("torch.", ""), T, B, H, mode, device, statistics.median(torch_times),
                  statistics.median(fused_times), err)


def format_table(results) -> str:
    head = "| device | cell | dtype | T | B | H | mode | torch.nn ms | fusedrnn ms | speed-up | max abs err |"
    rule = "|---|---|---|---|---|---|---|---|---|---|---|"
    rows = [f"| {r.device} | {r.cell} | {r.dtype} | {r.T} | {r.B} | {r.H} | {r.mode} | {r.torch_ms:.2f} | "
            f"{r.fused_ms:.2f} | "
            f"{r.speedup:.2f}x | {r.max_abs_err:.1e} |" for r in results]
    return "\n".join([head, rule, *rows])
