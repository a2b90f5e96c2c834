"""GEMM floor of a layer's training step on the CPU: its six matrix products timed as torch.mm.

A training step of one layer (T steps, batch B, hidden H, input H, G gates) multiplies
x W_ih^T and h W_hh^T (forward), dgates W_hh and dgates W_ih (backward: dh, dx) and dgates^T x,
dgates^T h (weight gradients): six products of 2 * N * H * G * H FLOPs each, N = T * B. Their time as
plain torch.mm on the same shapes is what the whole layer would take with nothing but those GEMMs.

    python scripts/gemm_floor.py [--batch 8] [--seq 100] [--threads 2]
"""
import argparse
import time

import torch

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def median_ms(fn, repeats=15):
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[repeats // 2] * 1e3


def product_flops(cell, seq, batch, hidden):
    """FLOPs of one of a layer's products (input size = hidden): 2 N H G H, N = seq * batch."""
    return 2 * seq * batch * hidden * GATES[cell] * hidden


def six_products_ms(cell, seq, batch, hidden):
    """The six products of one layer's training step, timed as torch.mm on the current threads."""
    n, gates = seq * batch, GATES[cell]
    x = torch.randn(n, hidden)
    w = torch.randn(gates * hidden, hidden)
    dgates = torch.randn(n, gates * hidden)
    return 2 * (median_ms(lambda: x @ w.t()) + median_ms(lambda: dgates @ w) + median_ms(lambda: dgates.t() @ x))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=100)
    parser.add_argument("--hidden", default="256,512,1024")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for cell in GATES:
        for hidden in (int(h) for h in args.hidden.split(",")):
            ms = six_products_ms(cell, args.seq, args.batch, hidden)
            flops = 6 * product_flops(cell, args.seq, args.batch, hidden)
            print(f"{cell} T={args.seq} B={args.batch} H={hidden}: {flops / 1e9:.2f} GFLOP, six torch.mm "
                  f"{ms:.2f} ms ({flops / ms / 1e6:.0f} GFLOP/s), {args.threads} threads")


if __name__ == "__main__":
    main()
