"""python -m fusedrnn.bench: fused layers vs torch.nn, side by side on the same weights and inputs."""

from __future__ import annotations

import argparse
import platform

import torch

from .runner import bench_case, format_table


def describe(device: str) -> str:
    if device == "cuda":
        return (f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
                f"cuDNN {torch.backends.cudnn.version()}, TF32 for cuDNN allowed: {torch.backends.cudnn.allow_tf32}")
    return (f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fusedrnn.bench", description=__doc__)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cells", default="lstm,gru", help="comma-separated: lstm, gru, rnn")
    parser.add_argument("--dtypes", default="float32", help="comma-separated: float32, bfloat16, float16")
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--batch", default="16", help="comma-separated batch sizes")
    parser.add_argument("--hidden", default="256", help="comma-separated hidden sizes (input size is the same)")
    parser.add_argument("--mode", default="inference,training")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    print(describe(args.device))
    results = []
    for cell in args.cells.split(","):
        for dtype in args.dtypes.split(","):
            for batch in args.batch.split(","):
                for hidden in args.hidden.split(","):
                    for mode in args.mode.split(","):
                        results.append(bench_case(cell, args.seq, int(batch), int(hidden), mode,
                                                  dtype=getattr(torch, dtype), device=args.device,
                                                  repeats=args.repeats))
                        print(f"  done {cell} {dtype} B={batch} H={hidden} {mode}", flush=True)
    print(format_table(results))


if __name__ == "__main__":
    main()
