"""The floor of a step-by-step case: each call's matrix products alone, as torch.mm over the same weights.

At a small batch a step reads all of W_ih and W_hh and does little else with them, so no implementation
can beat the time it takes to read them once per call: this is that time, measured beside both sides.
Inference: x_t W_ih^T and h W_hh^T per call. Training adds the backward's products: the input's and the
state's gradient (dG W_ih, dG W_hh) and the weights' (dW_ih += dG^T x_t, dW_hh += dG^T h)."""

from __future__ import annotations

import torch


def weight_pairs(module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(W_ih, W_hh) of every layer and direction of a cell or a layer module, detached."""
    params = dict(module.named_parameters())
    return [(w.detach(), params[name.replace("weight_ih", "weight_hh")].detach())
            for name, w in params.items() if name.startswith("weight_ih")]


def make_floor_step(case, module, x):
    """One timed call of the floor for case (a step-by-step case): case.loop steps of the products."""
    g = torch.Generator(device=x.device).manual_seed(2)
    dtype = x.dtype if not case.autocast else torch.float32

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype, device=x.device)

    work = []
    for w_ih, w_hh in weight_pairs(module):
        gates = w_hh.shape[0]
        work.append({"w_ih": w_ih.to(dtype), "w_hh": w_hh.to(dtype), "x": rand(case.B, w_ih.shape[1]),
                     "h": rand(case.B, w_hh.shape[1]), "gx": rand(case.B, gates), "gh": rand(case.B, gates),
                     "dx": rand(case.B, w_ih.shape[1]), "dh": rand(case.B, w_hh.shape[1]),
                     "dw_ih": torch.zeros_like(w_ih, dtype=dtype), "dw_hh": torch.zeros_like(w_hh, dtype=dtype)})
    training = case.mode == "training"

    def step():
        for _ in range(case.loop):
            for p in work:
                torch.mm(p["x"], p["w_ih"].t(), out=p["gx"])
                torch.mm(p["h"], p["w_hh"].t(), out=p["gh"])
                if training:
                    torch.mm(p["gx"], p["w_ih"], out=p["dx"])
                    torch.mm(p["gh"], p["w_hh"], out=p["dh"])
                    p["dw_ih"].addmm_(p["gx"].t(), p["x"])
                    p["dw_hh"].addmm_(p["gh"].t(), p["h"])
    return step
