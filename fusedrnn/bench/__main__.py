"""python -m fusedrnn.bench: fusedrnn against torch.nn (cuDNN on GPU, oneDNN/ATen on CPU), side by side on
the same weights and inputs. Prints a table; --out DIR (or --json/--markdown/--plot) writes the results."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys

import torch

import fusedrnn

from . import layernorm, machine, report
from .grid import GRIDS, MEMORY, loop_cases
from .runner import Case, run_case


def parse_list(text, kind=str):
    return tuple(kind(v) for v in text.split(",")) if text else None


def build_cases(args) -> list[Case]:
    if args.loop:
        return loop_cases(args.device)
    size = "autocast" if args.autocast else "quick" if args.quick else "full" if args.full else "default"
    grid = GRIDS[args.device][size]
    grid = dataclasses.replace(grid, cells=parse_list(args.cells) or grid.cells,
                               dtypes=parse_list(args.dtypes) or grid.dtypes, T=args.seq or grid.T,
                               batches=parse_list(args.batch, int) or grid.batches,
                               hiddens=parse_list(args.hidden, int) or grid.hiddens,
                               modes=parse_list(args.mode) or grid.modes)
    if args.layers or args.bidirectional:
        grid = dataclasses.replace(grid, stacks=((args.layers or 1, args.bidirectional),))
    # Picking sizes or stacks asks for those cases only: no extra stacked ones.
    if args.layers or args.bidirectional or args.batch or args.hidden:
        grid = dataclasses.replace(grid, stacked_at=None)
    return grid.cases(args.device)


def memory_cases(args) -> list[Case]:
    """Peak memory of training forward + backward at T=512 (grid.MEMORY)."""
    return MEMORY.cases(args.device)


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
    parser.add_argument("--full", action="store_true",
                        help="the full grid (CPU: more sizes; CUDA: also rnn and float16)")
    parser.add_argument("--autocast", action="store_true",
                        help="mixed precision: float32 modules under torch.autocast (CPU: bfloat16; CUDA: float16 "
                        "and bfloat16); writes <device>_autocast.* with --out")
    parser.add_argument("--loop", action="store_true",
                        help="step by step: cells and T=1 layer calls, 20 per timed call from a Python loop; "
                        "writes <device>_loop.* with --out")
    parser.add_argument("--layernorm", action="store_true",
                        help="the layer-normalised LSTM and GRU against a user's eager, compiled and scripted step "
                        "loops (CPU, T=100); writes cpu_layernorm.* with --out")
    parser.add_argument("--regularisers", action="store_true",
                        help="the LSTM and GRU with zoneout and recurrent dropout against a user's eager, compiled and "
                        "scripted step loops (CPU, T=100); writes cpu_regularisers.* with --out")
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
        fusedrnn.backends.cuda.set_algorithm(args.algo)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")

    command = "python -m fusedrnn.bench " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if args.layernorm or args.regularisers:
        variant = "layernorm" if args.layernorm else "regularisers"
        if args.device != "cpu":
            parser.error(f"--{variant} runs on the CPU only (these layers are not fused on CUDA yet)")
        if args.out:
            os.makedirs(args.out, exist_ok=True)
        stem = os.path.join(args.out, f"cpu_{variant}") if args.out else None
        layernorm.run(variant, args.repeats, args.json or (stem and stem + ".json"),
                      args.markdown or (stem and stem + ".md"), command, progress)
        return

    info = machine.describe(args.device)
    line = machine.headline(info)
    print(line, flush=True)

    min_seconds = args.min_seconds
    if min_seconds is None:
        min_seconds = 1.0 if args.device == "cpu" and not args.quick else 0.0
    results = [run_case(case, repeats=args.repeats, min_seconds=min_seconds)
               for case in progress(build_cases(args), "benchmark")]
    memory = [] if args.no_memory or args.quick or args.autocast or args.loop else [
        run_case(case, repeats=1, warmup=1, first_calls=1)
        for case in progress(memory_cases(args), "memory (T=512)")]

    print()
    print(report.markdown_table(results))
    if memory:
        print("\nPeak memory, training forward + backward at T=512:")
        print(report.markdown_table(memory))

    paths = {"json": args.json, "markdown": args.markdown, "plot": args.plot}
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        for key, ext in (("json", "json"), ("markdown", "md"), ("plot", "png")):
            stem = args.device + ("_autocast" if args.autocast else "_loop" if args.loop else "")
            paths[key] = paths[key] or os.path.join(args.out, f"{stem}.{ext}")
    if paths["json"]:
        report.write_json(paths["json"], info, command, results, memory)
    if paths["markdown"]:
        report.write_markdown(paths["markdown"], info, command, results, memory, min_seconds)
    if paths["plot"] and not report.write_plot(paths["plot"], line, results):
        print("matplotlib is not installed: no plot written", file=sys.stderr)
    written = [p for p in paths.values() if p and os.path.exists(p)]
    if written:
        print("\nwrote " + ", ".join(written))


if __name__ == "__main__":
    main()
