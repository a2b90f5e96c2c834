"""python -m fusedrnn.bench: fused layers vs torch.nn on the CPU, side by side, medians of interleaved runs."""

from __future__ import annotations

import argparse
import platform

import torch

from .runner import bench_case, format_table


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fusedrnn.bench", description=__doc__)
    parser.add_argument("--cells", default="lstm,gru", help="comma-separated: lstm, gru, rnn")
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256, help="hidden size (input size is the same)")
    parser.add_argument("--mode", default="inference,training")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    print(f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, float32")
    results = []
    for cell in args.cells.split(","):
        for mode in args.mode.split(","):
            results.append(bench_case(cell, args.seq, args.batch, args.hidden, mode, repeats=args.repeats))
            print(f"  done {cell} {mode}", flush=True)
    print(format_table(results))


if __name__ == "__main__":
    main()
