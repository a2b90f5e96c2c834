"""python -m fusedrnn.bench: fusedrnn against torch.nn (cuDNN on GPU, oneDNN/ATen on CPU), side by side on
the same weights and inputs. Prints a table; --out DIR (or --json/--markdown/--plot) writes the results."""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import sys

import torch

from . import machine, report
from .runner import Case, run_case

# (cells, dtypes, seq, batches, hiddens, stacks) per device and size; a stack is (layers, bidirectional)
GRIDS = {
    ("cpu", "quick"): (["lstm", "gru"], ["float32"], 32, [1, 16], [128], [(1, False)]),
    ("cpu", "default"): (["lstm", "gru", "rnn"], ["float32"], 64, [1, 16, 64], [256], [(1, False)]),
    ("cpu", "full"): (["lstm", "gru", "rnn"], ["float32"], 100, [1, 8, 64], [256, 512, 1024], [(1, False)]),
    ("cuda", "quick"): (["lstm", "gru"], ["float32", "bfloat16"], 128, [1, 64], [256, 1024], [(1, False)]),
    ("cuda", "default"): (["lstm", "gru"], ["float32", "bfloat16"], 128, [1, 8, 64, 256], [256, 1024],
                          [(1, False)]),
    ("cuda", "full"): (["lstm", "gru", "rnn"], ["float32", "bfloat16", "float16"], 128, [1, 8, 64, 256],
                       [256, 1024], [(1, False)]),
}
# extra stacked cases: 2-layer bidirectional at one batch and size
STACKED = {"cpu": (16, 256), "cuda": (64, 512)}


def parse_list(text, kind=str):
    return [kind(v) for v in text.split(",")] if text else None


def build_cases(args) -> list[Case]:
    size = "quick" if args.quick else "full" if args.full else "default"
    cells, dtypes, seq, batches, hiddens, stacks = GRIDS[(args.device, size)]
    cells = parse_list(args.cells) or cells
    dtypes = parse_list(args.dtypes) or dtypes
    seq = args.seq or seq
    batches = parse_list(args.batch, int) or batches
    hiddens = parse_list(args.hidden, int) or hiddens
    modes = parse_list(args.mode) or ["inference", "training"]
    if args.layers or args.bidirectional:
        stacks = [(args.layers or 1, args.bidirectional)]
    cases = [Case(c, d, seq, b, h, layers, bi, m, args.device)
             for c, d, (layers, bi), h, b, m in itertools.product(cells, dtypes, stacks, hiddens, batches, modes)]
    if not (args.quick or args.layers or args.bidirectional or args.batch or args.hidden):
        b, h = STACKED[args.device]
        cases += [Case(c, dtypes[0], seq, b, h, 2, True, m, args.device) for c in cells for m in modes]
    return cases


def memory_cases(args) -> list[Case]:
    """Peak memory of training forward + backward at T=512 (DESIGN.md: memory linear in T)."""
    return [Case(c, "float32", 512, 16, 256, 1, False, "training", args.device) for c in ("lstm", "gru")]


def progress(items, desc):
    try:
        from tqdm import tqdm
        return tqdm(items, desc=desc, file=sys.stderr, dynamic_ncols=True)
    except ImportError:
        return items


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fusedrnn.bench", description=__doc__)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cells", help="comma-separated: lstm, gru, rnn")
    parser.add_argument("--dtypes", help="comma-separated: float32, bfloat16, float16, float64 (CPU)")
    parser.add_argument("--seq", type=int, help="sequence length T")
    parser.add_argument("--batch", help="comma-separated batch sizes")
    parser.add_argument("--hidden", help="comma-separated hidden sizes (the input size is the same)")
    parser.add_argument("--layers", type=int, help="layers per stack (default: 1, plus a 2-layer bidirectional case)")
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--mode", help="comma-separated: inference, training")
    parser.add_argument("--quick", action="store_true", help="a small grid (seconds)")
    parser.add_argument("--full", action="store_true", help="the full grid of DESIGN.md section 7")
    parser.add_argument("--repeats", type=int, default=10, help="timed repetitions per side (medians), at least")
    parser.add_argument("--min-seconds", type=float, help="repeat until each side has run about this long "
                        "(at most 500 repetitions; default 1 on the CPU, 0 on CUDA and with --quick)")
    parser.add_argument("--no-memory", action="store_true", help="skip the T=512 peak-memory cases")
    parser.add_argument("--algo", choices=["auto", "step", "persistent"],
                        help="CUDA algorithm, forwarded to FUSEDRNN_ALGO (default auto)")
    parser.add_argument("--out", help="folder for <device>.json, <device>.md and <device>.png")
    parser.add_argument("--json", help="write the results as JSON here")
    parser.add_argument("--markdown", help="write the Markdown report here")
    parser.add_argument("--plot", help="write the PNG plot here (needs matplotlib)")
    args = parser.parse_args(argv)
    if args.algo:
        os.environ["FUSEDRNN_ALGO"] = args.algo
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")

    info = machine.describe(args.device)
    line = machine.headline(info)
    command = "python -m fusedrnn.bench " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    print(line, flush=True)

    min_seconds = args.min_seconds
    if min_seconds is None:
        min_seconds = 1.0 if args.device == "cpu" and not args.quick else 0.0
    results = [run_case(case, repeats=args.repeats, min_seconds=min_seconds)
               for case in progress(build_cases(args), "benchmark")]
    memory = [] if args.no_memory or args.quick else [
        run_case(case, repeats=1, warmup=1) for case in progress(memory_cases(args), "memory (T=512)")]

    print()
    print(report.markdown_table(results))
    if memory:
        print("\nPeak memory, training forward + backward at T=512:")
        print(report.markdown_table(memory))

    paths = {"json": args.json, "markdown": args.markdown, "plot": args.plot}
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        for key, ext in (("json", "json"), ("markdown", "md"), ("plot", "png")):
            paths[key] = paths[key] or os.path.join(args.out, f"{args.device}.{ext}")
    if paths["json"]:
        report.write_json(paths["json"], info, command, results, memory)
    if paths["markdown"]:
        report.write_markdown(paths["markdown"], line, command, results, memory, min_seconds)
    if paths["plot"] and not report.write_plot(paths["plot"], line, results):
        print("matplotlib is not installed: no plot written", file=sys.stderr)
    written = [p for p in paths.values() if p and os.path.exists(p)]
    if written:
        print("\nwrote " + ", ".join(written))


if __name__ == "__main__":
    main()
