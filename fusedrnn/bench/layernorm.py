"""python -m fusedrnn.bench --layernorm / --regularisers: fusedrnn's layers beyond torch.nn (the
layer-normalised LSTM and GRU; the LSTM and GRU with zoneout and recurrent dropout) against what a PyTorch
user writes without fusedrnn, side by side in one run on the same weights and inputs:

- eager: a step loop of nn.Linear (and nn.LayerNorm; the input side's product hoisted out of the loop, one
  nn.Linear over the whole sequence; each side's bias is its LayerNorm's shift, the same math), the
  regularisers' masks drawn per call as the fused layer draws them;
- compiled: that loop with its step under torch.compile (the Python loop stays: compiling the whole loop
  unrolls all T steps);
- scripted: the whole loop under torch.jit.script, as PyTorch's fastrnns benchmark writes its custom LSTMs;
- plain: fusedrnn's plain LSTM / GRU of the same size (what layer normalisation or the regularisers cost);
- floor: the layer's matrix products alone as torch.mm (inference: x W_ih^T over the sequence and h W_hh^T
  per step; training also dX = dG W_ih, dW_ih = dG^T X, dh = dG_t W_hh per step, dW_hh = dG^T H).

Interleaved repetitions after warm-up, medians. Inference: under no_grad; training: forward + backward of
the output's sum.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from typing import List, Tuple  # noqa: UP035 - TorchScript reads these annotations

import torch
from torch import Tensor, nn

import fusedrnn

from . import machine

T = 100
POINTS = tuple((cell, B, H) for cell in ("lstm", "gru") for H in (256, 1024) for B in (8, 64))
MODES = ("inference", "training")
SIDES = ("fused", "plain", "eager", "compiled", "scripted", "floor")
VARIANTS = ("layernorm", "regularisers")
ZONEOUT, RECURRENT_DROPOUT = 0.1, 0.25  # the regularisers variant's


class StepLoop(nn.Module):
    """A layer as a user writes it: the input side's nn.Linear over the sequence, then a loop of its step.
    step(xw_t, h, c, keep_t, d): keep_t zoneout's weights of the previous h and c, d the recurrent-dropout
    mask (zero-sized for the layer-normalised loops, which use neither)."""

    def __init__(self, states: int = 2, zoneout: float = 0.0, recurrent_dropout: float = 0.0):
        super().__init__()
        self.states, self.zoneout, self.recurrent_dropout = states, zoneout, recurrent_dropout

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> Tensor:
        xw = self.ih(x)
        keep, d = self.masks(x.shape[0], x.shape[1], h.shape[1], x)
        outputs: List[Tensor] = []  # noqa: UP006
        for t in range(x.shape[0]):
            h, c = self.step(xw[t], h, c, keep[t], d)
            outputs.append(h)
        return torch.stack(outputs)

    def masks(self, steps: int, batch: int, hidden: int, x: Tensor) -> Tuple[Tensor, Tensor]:  # noqa: UP006
        """zoneout's weights [T, B, S*H] (Bernoulli draws in training, p in evaluation) and the recurrent-dropout
        mask [B, H] (ones in evaluation), as fusedrnn draws them; zero-sized when the loop has neither."""
        if self.zoneout == 0.0 and self.recurrent_dropout == 0.0:
            return x.new_empty(steps, 0), x.new_empty(0)
        if not self.training:
            return x.new_full((steps, batch, self.states * hidden), self.zoneout), x.new_ones(batch, hidden)
        keep = torch.empty(steps, batch, self.states * hidden).bernoulli_(self.zoneout)
        d = torch.empty(batch, hidden).bernoulli_(1 - self.recurrent_dropout) / (1 - self.recurrent_dropout)
        return keep, d


class LoopLSTM(StepLoop):
    """A layer-normalised LSTM as a user writes it: nn.Linear and nn.LayerNorm in a step loop."""

    def __init__(self, I: int, H: int):
        super().__init__()
        self.ih, self.hh = nn.Linear(I, 4 * H, bias=False), nn.Linear(H, 4 * H, bias=False)
        self.ln_ih, self.ln_hh, self.ln_c = nn.LayerNorm(4 * H), nn.LayerNorm(4 * H), nn.LayerNorm(H)

    def step(self, xw: Tensor, h: Tensor, c: Tensor, keep: Tensor, d: Tensor) -> Tuple[Tensor, Tensor]:  # noqa: UP006
        gates = self.ln_ih(xw) + self.ln_hh(self.hh(h))
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(self.ln_c(c)), c


class LoopGRU(StepLoop):
    """A layer-normalised GRU as a user writes it."""

    def __init__(self, I: int, H: int):
        super().__init__()
        self.ih, self.hh = nn.Linear(I, 3 * H, bias=False), nn.Linear(H, 3 * H, bias=False)
        self.ln_ih, self.ln_hh = nn.LayerNorm(3 * H), nn.LayerNorm(3 * H)

    def step(self, xw: Tensor, h: Tensor, c: Tensor, keep: Tensor, d: Tensor) -> Tuple[Tensor, Tensor]:  # noqa: UP006
        xr, xz, xn = self.ln_ih(xw).chunk(3, 1)
        hr, hz, hn = self.ln_hh(self.hh(h)).chunk(3, 1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h, c


class LoopZoneoutLSTM(StepLoop):
    """An LSTM with zoneout and recurrent dropout as a user writes it."""

    def __init__(self, I: int, H: int, zoneout: float, recurrent_dropout: float):
        super().__init__(2, zoneout, recurrent_dropout)
        self.ih, self.hh = nn.Linear(I, 4 * H), nn.Linear(H, 4 * H)

    def step(self, xw: Tensor, h: Tensor, c: Tensor, keep: Tensor, d: Tensor) -> Tuple[Tensor, Tensor]:  # noqa: UP006
        i, f, g, o = (xw + self.hh(h * d)).chunk(4, 1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        m_h, m_c = keep.chunk(2, 1)
        return m_h * h + (1 - m_h) * h_new, m_c * c + (1 - m_c) * c_new


class LoopZoneoutGRU(StepLoop):
    """A GRU with zoneout and recurrent dropout as a user writes it (c unused)."""

    def __init__(self, I: int, H: int, zoneout: float, recurrent_dropout: float):
        super().__init__(1, zoneout, recurrent_dropout)
        self.ih, self.hh = nn.Linear(I, 3 * H), nn.Linear(H, 3 * H)

    def step(self, xw: Tensor, h: Tensor, c: Tensor, keep: Tensor, d: Tensor) -> Tuple[Tensor, Tensor]:  # noqa: UP006
        xr, xz, xn = xw.chunk(3, 1)
        hr, hz, hn = self.hh(h * d).chunk(3, 1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return keep * h + (1 - keep) * ((1 - z) * n + z * h), c


def loop_twin(fused) -> nn.Module:
    """The step-loop module with fused's weights (copies) and its regularisers."""
    lstm = fused.mode == "LSTM"
    I, H = fused.input_size, fused.hidden_size
    with torch.no_grad():
        if isinstance(fused, (fusedrnn.LayerNormLSTM, fusedrnn.LayerNormGRU)):
            loop = (LoopLSTM if lstm else LoopGRU)(I, H)
            for side in ("ih", "hh"):
                getattr(loop, f"ln_{side}").weight.copy_(getattr(fused, f"ln_{side}_weight_l0"))
                getattr(loop, f"ln_{side}").bias.copy_(getattr(fused, f"bias_{side}_l0"))
            if lstm:
                loop.ln_c.weight.copy_(fused.ln_c_weight_l0)
                loop.ln_c.bias.copy_(fused.ln_c_bias_l0)
        else:
            loop = (LoopZoneoutLSTM if lstm else LoopZoneoutGRU)(I, H, fused.zoneout, fused.recurrent_dropout)
            loop.ih.bias.copy_(fused.bias_ih_l0)
            loop.hh.bias.copy_(fused.bias_hh_l0)
        loop.ih.weight.copy_(fused.weight_ih_l0)
        loop.hh.weight.copy_(fused.weight_hh_l0)
    return loop


def compiled_forward(loop: nn.Module):
    step = torch.compile(loop.step, dynamic=False)

    def forward(x, h, c):
        xw = loop.ih(x)
        keep, d = loop.masks(x.shape[0], x.shape[1], h.shape[1], x)
        outputs = []
        for t in range(x.shape[0]):
            h, c = step(xw[t], h, c, keep[t], d)
            outputs.append(h)
        return torch.stack(outputs)
    return forward


def floor_step(fused, x, training: bool):
    """The layer's matrix products alone, on preallocated outputs."""
    w_ih, w_hh = fused.weight_ih_l0.detach(), fused.weight_hh_l0.detach()
    steps, batch = x.shape[0], x.shape[1]
    X = x.reshape(steps * batch, -1)
    g = torch.Generator().manual_seed(3)
    G = torch.randn(steps * batch, w_hh.shape[0], generator=g)
    Hs = torch.randn(steps * batch, w_hh.shape[1], generator=g)
    XW, HW = torch.empty_like(G), torch.empty(batch, w_hh.shape[0])
    dX, dh = torch.empty_like(X), torch.empty(batch, w_hh.shape[1])
    dW_ih, dW_hh = torch.empty_like(w_ih), torch.empty_like(w_hh)

    def step():
        torch.mm(X, w_ih.t(), out=XW)
        for t in range(steps):
            torch.mm(Hs[t * batch:(t + 1) * batch], w_hh.t(), out=HW)
        if training:
            for t in range(steps):
                torch.mm(G[t * batch:(t + 1) * batch], w_hh, out=dh)
            torch.mm(G, w_ih, out=dX)
            torch.mm(G.t(), X, out=dW_ih)
            torch.mm(G.t(), Hs, out=dW_hh)
    return step


@dataclasses.dataclass
class Result:
    variant: str
    cell: str
    B: int
    H: int
    mode: str
    ms: dict  # side -> median ms
    max_rel_err: float  # the baselines' outputs against the fused layer's (in evaluation: the same masks)


def run_point(variant: str, cell: str, B: int, H: int, mode: str, repeats: int) -> Result:
    torch.compiler.reset()  # each point compiles its own step (Dynamo's recompile limit would end in eager)
    torch.manual_seed(0)
    training = mode == "training"
    plain_cls = fusedrnn.LSTM if cell == "lstm" else fusedrnn.GRU
    if variant == "layernorm":
        fused = (fusedrnn.LayerNormLSTM if cell == "lstm" else fusedrnn.LayerNormGRU)(H, H)
    else:
        fused = plain_cls(H, H, zoneout=ZONEOUT, recurrent_dropout=RECURRENT_DROPOUT)
    plain = plain_cls(H, H)
    with torch.no_grad():
        for name, p in fused.named_parameters():
            if name.startswith("ln_"):
                p.add_(torch.randn_like(p) * 0.1)
    loop = loop_twin(fused)
    scripted = torch.jit.script(loop_twin(fused))
    compiled = compiled_forward(loop)
    modules = (fused, loop, scripted)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, H, generator=g).requires_grad_(training)
    h0, c0 = torch.randn(B, H, generator=g), torch.randn(B, H, generator=g)
    hx = (h0[None], c0[None]) if cell == "lstm" else h0[None]  # [layers, B, H] for the modules
    calls = {
        "fused": lambda: fused(x, hx)[0],
        "plain": lambda: plain(x, hx)[0],
        "eager": lambda: loop(x, h0, c0),
        "compiled": lambda: compiled(x, h0, c0),
        "scripted": lambda: scripted(x, h0, c0),
    }
    with torch.no_grad():  # in evaluation, where the regularisers draw nothing
        for m in modules:
            m.eval()
        expected = calls["fused"]()
        errors = [((calls[s]() - expected).abs().max() / expected.abs().max()).item()
                  for s in ("eager", "compiled", "scripted")]
        for m in modules:
            m.train(training)

    def timed(call):
        if training:
            return lambda: call().sum().backward()

        def run():
            with torch.no_grad():
                call()
        return run

    steps = {side: timed(call) for side, call in calls.items()}
    steps["floor"] = floor_step(fused, x.detach(), training)
    for _ in range(2):  # warm-up (the compiled step compiles on its first calls)
        for step in steps.values():
            step()
    times = {side: [] for side in steps}
    for _ in range(repeats):
        for side, step in steps.items():
            start = time.perf_counter()
            step()
            times[side].append((time.perf_counter() - start) * 1e3)
    return Result(variant, cell, B, H, mode, {side: statistics.median(t) for side, t in times.items()}, max(errors))


def table(results) -> str:
    head = ["layer", "B", "H", "mode", "fused ms", "plain fused ms", "eager loop ms", "compiled loop ms",
            "scripted loop ms", "floor ms", "vs eager", "vs best of compiled/scripted", "fused / floor",
            "fused / plain", "max rel err"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        ms = r.ms
        best = min(ms["compiled"], ms["scripted"])
        row = [LAYER_NAMES[r.variant] % r.cell.upper(), str(r.B), str(r.H), r.mode] + [f"{ms[s]:.1f}" for s in SIDES[:5]] + [f"{ms['floor']:.1f}"]
        row += [f"{ms['eager'] / ms['fused']:.2f}x", f"{best / ms['fused']:.2f}x", f"{ms['fused'] / ms['floor']:.2f}x",
                f"{ms['fused'] / ms['plain']:.2f}x", f"{r.max_rel_err:.1e}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


LAYER_NAMES = {"layernorm": "LayerNorm%s", "regularisers": f"%s zoneout={ZONEOUT} rec.dropout={RECURRENT_DROPOUT}"}
TITLES = {"layernorm": "fusedrnn's layer-normalised layers vs a user's step loops",
          "regularisers": "fusedrnn's zoneout and recurrent dropout vs a user's step loops"}
METHOD = {
    "layernorm": [
        "T = 100, float32, input size = hidden size, one layer; fused = fusedrnn.LayerNormLSTM / LayerNormGRU",
        "eager loop: nn.Linear + nn.LayerNorm per step (the input product hoisted: one nn.Linear over the sequence)"],
    "regularisers": [
        (f"T = 100, float32, input size = hidden size, one layer; fused = fusedrnn.LSTM / GRU with zoneout={ZONEOUT}, "
         f"recurrent_dropout={RECURRENT_DROPOUT} (training draws masks; inference is evaluation: zoneout blends "
         "with p, no recurrent dropout)"),
        ("eager loop: nn.Linear per step on h * d, the zoneout blend (the input product hoisted: one nn.Linear over "
         "the sequence; the masks drawn per call as fusedrnn draws them)")],
}
METHOD_COMMON = [
    ("compiled loop: that step under torch.compile (dynamic=False), the loop in Python; scripted loop: the whole "
     "loop under torch.jit.script (PyTorch's fastrnns custom_lstms style)"),
    ("plain fused: fusedrnn.LSTM / GRU of the same size; floor: the layer's matrix products alone as torch.mm "
     "(inference: x W_ih^T over the sequence, h W_hh^T per step; training also dG W_ih, dG^T X, dG_t W_hh per "
     "step, dG^T H)"),
    ("time: same weights and inputs, 2 warm-up rounds, interleaved repetitions, medians; inference under "
     "no_grad, training = forward + backward of the output's sum"),
    "max rel err: the loops' outputs against the fused layer's in evaluation, max |a - b| / max |b|",
]


def run(variant: str, repeats: int, out_json: str | None, out_md: str | None, command: str,
        progress=lambda items, _: items):
    info = machine.describe("cpu")
    print(machine.headline(info), flush=True)
    results = [run_point(variant, cell, B, H, mode, repeats)
               for cell, B, H, mode in progress([(*p, m) for p in POINTS for m in MODES], variant)]
    text = table(results)
    print("\n" + text)
    if out_json:
        with open(out_json, "w") as f:
            json.dump({"machine": info, "command": command,
                       "results": [dataclasses.asdict(r) for r in results]}, f, indent=1)
    if out_md:
        header = [f"machine: {machine.headline(info)}", f"build: {machine.build_line(info, 'cpu')}",
                  f"command: `{command}`"] + METHOD[variant] + METHOD_COMMON
        with open(out_md, "w") as f:
            f.write(f"# {TITLES[variant]}\n\n")
            f.write("".join(f"- {line}\n" for line in header) + "\n" + text + "\n")
    return results
