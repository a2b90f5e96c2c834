"""The project's CPU speed targets checked against a bench result, with the GEMM floor of every missed point.

Reads the JSON of `python -m fusedrnn.bench --device cpu --full` and, for each point of the full CPU
grid's one-layer product (float32, T=100: fusedrnn/bench/grid.py), prints the target speed-up over
torch.nn, the measured one, and whether it is met. For a missed point it also prints what meeting it
would take: the fusedrnn time (torch.nn / target), the GFLOP/s that is, and the time of the layer's
matrix products alone as plain torch.mm on this machine now (two for inference, six for training: see
gemm_floor.py; the fastest of three timings), so a target that asks the whole fused layer to beat its
own GEMMs shows as such. Run it on the machine the JSON came from, with nothing else running.

    python scripts/cpu_targets.py benchmarks/results/cpu.json [--threads 2]
"""
import argparse
import json

import torch
from gemm_floor import GATES, median_ms, product_flops, six_products_ms

from fusedrnn.bench.grid import GRIDS

FULL = GRIDS["cpu"]["full"]

# The targets: LSTM >= 1.0x everywhere; GRU and RNN >= 1.5x inference and >= 3x training at B <= 8,
# >= 1.2x elsewhere.


def target(cell, mode, batch):
    if cell == "lstm":
        return 1.0
    if batch <= 8:
        return 1.5 if mode == "inference" else 3.0
    return 1.2


# Matrix products of a layer call: x W_ih^T and h W_hh^T; training adds dh, dx, dW_ih and dW_hh.
PRODUCTS = {"inference": 2, "training": 6}


def products_ms(cell, mode, seq, batch, hidden):
    """The layer's matrix products as torch.mm: x W_ih^T and h W_hh^T, or all six of training."""
    if mode == "training":
        return six_products_ms(cell, seq, batch, hidden)
    x = torch.randn(seq * batch, hidden)
    w = torch.randn(GATES[cell] * hidden, hidden)
    return 2 * median_ms(lambda: x @ w.t())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="cpu.json written by python -m fusedrnn.bench --device cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with open(args.results) as f:
        data = json.load(f)
    print(f"{args.results}: {data['machine']['date']}, {data['machine']['cpu']}, "
          f"{data['machine']['torch_threads']} threads; torch.mm timed now on {args.threads} threads\n")
    print("| cell | B | H | mode | target | torch.nn ms | fusedrnn ms | speed-up | met | fusedrnn ms needed "
          "| GFLOP/s needed | fusedrnn GFLOP/s | products as torch.mm ms | needed / torch.mm |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in data["results"]:
        stack = (r["layers"], r["bidirectional"])
        if r["dtype"] not in FULL.dtypes or r["T"] != FULL.T or stack not in FULL.stacks:
            continue
        goal = target(r["cell"], r["mode"], r["B"])
        flops = PRODUCTS[r["mode"]] * product_flops(r["cell"], r["T"], r["B"], r["H"])
        row = (f"| {r['cell']} | {r['B']} | {r['H']} | {r['mode']} | {goal:.1f}x | {r['torch_ms']:.2f} | "
               f"{r['fused_ms']:.2f} | {r['speedup']:.2f}x | ")
        if r["speedup"] >= goal:
            print(row + "yes | | | | | |")
            continue
        needed = r["torch_ms"] / goal
        # The fastest of three timings: a floor, and this machine's timings move by 10% or more.
        floor = min(products_ms(r["cell"], r["mode"], r["T"], r["B"], r["H"]) for _ in range(3))
        print(row + f"no | {needed:.2f} | {flops / needed / 1e6:.0f} | {flops / r['fused_ms'] / 1e6:.0f} | "
              f"{floor:.2f} | {needed / floor:.2f} |")


if __name__ == "__main__":
    main()
