"""Vanishing and exploding gradients, measured with the fused layers.

A plain RNN, h_t = tanh(W_hh h_{t-1} + W_ih x_t + b), passes the gradient from step T back to step t
through T - t factors diag(1 - h^2) W_hh. With W_hh small the product shrinks with the distance (the
gradient vanishes); with W_hh large enough it grows (explodes). This script shows both, the cure for the
second (clipping the gradient's norm), and how the LSTM's and GRU's gated state carry the gradient.

1. For each layer, the norm of the gradient of the last step's output with respect to every input x_t,
   against the distance T - t. One backward pass gives all of them: the last output depends on every
   x_t. The RNN runs at several spectral radii of W_hh (set exactly, printed); LSTM and GRU at their
   default initialisation, and with the gate that keeps their state (forget, update) opened by a bias.
   A table is printed and a PNG plot written.
2. A short training run of the RNN at a large spectral radius, with and without
   torch.nn.utils.clip_grad_norm_ (if ||g|| >= threshold, g <- threshold / ||g|| * g).

    python examples/gradient_flow.py                    # CPU, fusedrnn
    python examples/gradient_flow.py --backend torch    # the same with torch.nn
    python examples/gradient_flow.py --device cuda --plot flow.png
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fusedrnn  # noqa: E402

KINDS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def make_layer(kind: str, hidden: int, backend: str, device: str, dtype: torch.dtype, seed: int,
               radius: float | None = None) -> torch.nn.Module:
    """One layer (input size = hidden size), torch.nn's initialisation; for radius, W_hh is a Gaussian
    matrix rescaled so that its spectral radius (largest |eigenvalue|) is exactly radius."""
    torch.manual_seed(seed)
    layer = KINDS[kind](hidden, hidden, dtype=dtype)
    if radius is not None:
        with torch.no_grad():
            w = torch.randn(hidden, hidden, dtype=torch.float64)
            w *= radius / torch.linalg.eigvals(w).abs().max()
            layer.weight_hh_l0.copy_(w)
    if backend == "fused":
        layer = fusedrnn.convert(layer)
    return layer.to(device)


def spectral_radius(layer: torch.nn.Module) -> float:
    return torch.linalg.eigvals(layer.weight_hh_l0.detach().double().cpu()).abs().max().item()


def gradient_norms(layer: torch.nn.Module, steps: int, seed: int, input_scale: float) -> list[float]:
    """||d (u . h_T) / d x_t|| for t = 1..T, for a fixed random unit vector u and Gaussian inputs of
    standard deviation input_scale, from one backward pass; in order of distance T - t = 0, 1, ..."""
    p = next(layer.parameters())
    g = torch.Generator().manual_seed(seed)
    x = input_scale * torch.randn(steps, 1, layer.input_size, generator=g, dtype=torch.float64).to(p)
    u = torch.randn(layer.hidden_size, generator=g, dtype=torch.float64).to(p)
    x.requires_grad_()
    out, _ = layer(x)
    (out[-1, 0] @ (u / u.norm())).backward()
    return x.grad[:, 0].norm(dim=1).flip(0).tolist()


def flow_table(args) -> dict[str, list[float]]:
    """Gradient norm against distance for the RNN at each radius, and LSTM and GRU at their defaults."""
    dtype = getattr(torch, args.dtype)
    rows = {}
    for radius in args.radii:
        layer = make_layer("rnn", args.hidden, args.backend, args.device, dtype, args.seed, radius)
        rows[f"rnn rho={spectral_radius(layer):.2f}"] = gradient_norms(layer, args.steps, args.seed, args.input_scale)
    for kind, gate in (("lstm", "forget"), ("gru", "update")):
        layer = make_layer(kind, args.hidden, args.backend, args.device, dtype, args.seed)
        rows[f"{kind} default init"] = gradient_norms(layer, args.steps, args.seed, args.input_scale)
        # The gate that keeps the state (the LSTM's f, the GRU's z; both the second chunk of torch.nn's
        # layout) opened by its bias: the state, and with it the gradient, is carried across steps.
        with torch.no_grad():
            layer.bias_ih_l0[args.hidden:2 * args.hidden] = args.gate_bias
        rows[f"{kind} {gate} bias {args.gate_bias:g}"] = gradient_norms(layer, args.steps, args.seed,
                                                                         args.input_scale)
    return rows


def print_flow(rows: dict[str, list[float]], steps: int) -> None:
    distances = sorted({0, 1, 10, 50, 100, steps - 1} & set(range(steps)))
    print("norm of d(last output)/d x_t by distance T - t")
    print(f"| layer | {' | '.join(f'd={d}' for d in distances)} |")
    print("|---|" + "---|" * len(distances))
    for name, norms in rows.items():
        print(f"| {name} | {' | '.join(f'{norms[d]:.2e}' for d in distances)} |")


def plot_flow(rows: dict[str, list[float]], path: str, title: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, norms in rows.items():
        ax.plot(range(len(norms)), [max(n, 1e-300) for n in norms], label=name)
    ax.set_yscale("log")
    ax.set_xlabel("distance T - t (steps back from the last output)")
    ax.set_ylabel("||d output_T / d x_t|| (log scale)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def train(args, clip: float | None) -> list[float]:
    """SGD on an RNN at spectral radius args.train_radius: predict the last input's first feature from the
    last hidden state, an easy target; the gradient still crosses the whole sequence into W_hh. Returns
    the losses."""
    dtype = getattr(torch, args.dtype)
    layer = make_layer("rnn", args.hidden, args.backend, args.device, dtype, args.seed, args.train_radius)
    torch.manual_seed(args.seed)
    head = torch.nn.Linear(args.hidden, 1, dtype=dtype).to(args.device)
    params = list(layer.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(params, lr=args.lr)
    g = torch.Generator().manual_seed(args.seed + 1)
    losses = []
    for _ in range(args.train_steps):
        x = torch.randn(args.train_length, args.batch, args.hidden, generator=g, dtype=dtype).to(args.device)
        target = x[-1, :, :1]
        out, _ = layer(x)
        loss = torch.nn.functional.mse_loss(head(out[-1]), target)
        optimizer.zero_grad()
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        losses.append(loss.item())
    return losses


def describe(losses: list[float]) -> str:
    finite = [v for v in losses if math.isfinite(v)]
    first_bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
    text = f"first {losses[0]:.3g}, last {losses[-1]:.3g}, max {max(finite):.3g}" if finite else "no finite loss"
    return text + (f"; not finite from step {first_bad}" if first_bad is not None else "")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["fused", "torch"], default="fused")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "float64"],
                        help="default: float64 on the CPU (no underflow in the table), float32 on CUDA")
    parser.add_argument("--steps", type=int, default=200, help="sequence length T of the gradient measurement")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--radii", type=float, nargs="+", default=[0.5, 1.0, 1.5, 3.0],
                        help="spectral radii of the RNN's W_hh")
    parser.add_argument("--input-scale", type=float, default=0.1,
                        help="standard deviation of the inputs x_t of the measurement (small inputs keep tanh "
                        "out of saturation, where the linear picture holds)")
    parser.add_argument("--gate-bias", type=float, default=5.0,
                        help="bias of the LSTM's forget gate and the GRU's update gate in the extra rows")
    parser.add_argument("--train-radius", type=float, default=3.0)
    parser.add_argument("--train-length", type=int, default=50)
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--clip", type=float, default=1.0, help="the gradient-norm threshold")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default="gradient_flow.png", help="PNG path ('' for none)")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.dtype = args.dtype or ("float64" if args.device == "cpu" else "float32")
    rows = flow_table(args)
    unclipped, clipped = train(args, None), train(args, args.clip)
    if not args.quiet:
        print(f"{args.backend} on {args.device}, {args.dtype}, H = {args.hidden}, T = {args.steps}\n")
        print_flow(rows, args.steps)
        print(f"\nRNN at spectral radius {args.train_radius}, SGD lr {args.lr}, {args.train_steps} steps of "
              f"T = {args.train_length}, B = {args.batch}:")
        print(f"  without clipping:          {describe(unclipped)}")
        print(f"  clip_grad_norm_ at {args.clip:g}:     {describe(clipped)}")
    if args.plot and plot_flow(rows, args.plot, f"gradient flow, {args.backend}, H = {args.hidden}") \
            and not args.quiet:
        print(f"\nwrote {args.plot}")
    return {"flow": rows, "unclipped": unclipped, "clipped": clipped}


if __name__ == "__main__":
    main()
