"""The benchmark's outputs: a Markdown table, JSON, and a PNG plot of speed-up against batch size."""

from __future__ import annotations

import json

from . import machine


def _ms(v):
    return "n/a" if v is None else f"{v:.2f}"


def _mb(v):
    return "n/a" if v is None else f"{v:.1f}"


def _x(v):
    return "n/a" if v is None else f"{v:.2f}x"


def markdown_table(results) -> str:
    gpu = any(r.case.device == "cuda" for r in results)
    head = ["cell", "dtype", "T", "B", "H", "layers", "mode", "torch.nn ms", "fusedrnn ms", "speed-up"]
    if gpu:
        head += ["torch.nn graph ms", "fusedrnn graph ms", "graph speed-up", "fusedrnn graph us/step", "algorithm"]
    else:
        head += ["torch.nn first ms", "fusedrnn first ms", "first speed-up"]
    loop = any(r.case.loop for r in results)
    if loop:
        head += ["floor ms", "fusedrnn / floor"]
    head += ["torch.nn peak MB cold", "fusedrnn peak MB cold", "torch.nn peak MB steady", "fusedrnn peak MB steady",
             "max rel err"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        c = r.case
        length = f"{c.T} x {c.loop} calls" if c.loop else str(c.T)
        stack = "cell" if c.cell.endswith("cell") else f"{c.layers}{' bi' if c.bidirectional else ''}"
        row = [c.cell, c.precision, length, str(c.B), str(c.H), stack,
               c.mode, _ms(r.torch_ms), _ms(r.fused_ms), _x(r.speedup)]
        if gpu:
            per_step = "n/a" if r.fused_graph_ms is None else f"{r.fused_graph_ms * 1e3 / c.T:.2f}"
            row += [_ms(r.torch_graph_ms), _ms(r.fused_graph_ms), _x(r.graph_speedup), per_step, r.algorithm or "n/a"]
        else:
            row += [_ms(r.torch_first_ms), _ms(r.fused_first_ms), _x(r.first_speedup)]
        if loop:
            row += [_ms(r.floor_ms), _x(r.over_floor)]
        row += [_mb(r.torch_cold_peak_mb), _mb(r.fused_cold_peak_mb), _mb(r.torch_steady_peak_mb),
                _mb(r.fused_steady_peak_mb), f"{r.max_rel_err:.1e}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_json(path, machine, command, results, memory_results) -> None:
    with open(path, "w") as f:
        json.dump({"machine": machine, "command": command, "results": [r.to_dict() for r in results],
                   "memory": [r.to_dict() for r in memory_results]}, f, indent=1)


def method_lines(device: str, results, min_seconds: float = 0.0) -> list[str]:
    """What each column means, for the report's header."""
    repeats = f" until each side ran ~{min_seconds:g} s (10-500 calls)" if min_seconds > 0 else ""
    lines = [
        ("modes: inference = both modules in eval mode under no_grad; training = both in train mode, forward "
         "+ backward of the output's sum"),
        (f"time: same weights and inputs, warm-up, interleaved repetitions{repeats}, medians (steady state: "
         "fusedrnn's CPU calls reuse their packed weights)"),
        ("peak MB cold: memory one call adds right after fusedrnn's packed-weight cache and scratch pool are "
         "emptied and freed memory is handed back (what a first call needs); steady: one call after warm-up, "
         "caches kept (fusedrnn's packed weights and idle scratch stay resident between calls and are not "
         "counted there)"),
        ("max rel err: max |fusedrnn - torch.nn| / max |torch.nn| per tensor, the largest over the output and "
         "final states (inference) and also the input's and every weight's gradient for a random output "
         "gradient (training)"),
    ]
    if any(r.case.loop for r in results):
        lines.insert(1, "step by step: each timed call is a Python loop of module calls (a cell, or a layer with "
                        "T = 1) with the state fed back; training: one backward of the sum of all outputs")
        lines.insert(2, "floor: the same calls' matrix products alone as torch.mm over the same weights (inference: "
                        "x W_ih^T and h W_hh^T; training also dG W_ih, dG W_hh, dW_ih += dG^T x, dW_hh += dG^T h), "
                        "timed in the same rounds; fusedrnn / floor = how far the fused calls are above it")
    if any(r.case.autocast for r in results):
        lines.insert(1, "autocast: float32 modules, the input in the autocast dtype (as an autocast nn.Linear before them "
                        "gives it), the forward under torch.autocast(device, dtype)")
    if device == "cpu":
        lines.insert(2, "first ms: one call right after the caches are emptied (packing and first touch "
                        "included), median of 3, alternating sides")
    else:
        lines.insert(2, "graph: each side captured in a CUDA graph and replayed; algorithm: what the fused "
                        "call ran (from fusedrnn.backends.cuda.algorithm_counts())")
    return lines


def write_markdown(path, info, command, results, memory_results, min_seconds=0.0) -> None:
    device = info["device"]
    header = [f"machine: {machine.headline(info)}", f"build: {machine.build_line(info, device)}",
              f"command: `{command}`"]
    with open(path, "w") as f:
        f.write("# fusedrnn vs torch.nn\n\n")
        f.write("".join(f"- {line}\n" for line in header + method_lines(device, results, min_seconds)) + "\n")
        f.write(markdown_table(results) + "\n")
        if memory_results:
            f.write("\n## Peak memory, training forward + backward at T=512\n\n")
            f.write(markdown_table(memory_results) + "\n")


def write_plot(path, machine_line, results) -> bool:
    """Speed-up against batch size, one line per cell, dtype and size, one panel per mode. False without
    matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    modes = sorted({r.case.mode for r in results})
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.5), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        lines = {}
        for r in results:
            c = r.case
            if c.mode != mode:
                continue
            key = f"{c.cell} {c.precision} H={c.H} {c.layers}L{' bi' if c.bidirectional else ''}"
            lines.setdefault(key, []).append((c.B, r.speedup))
        for key, points in sorted(lines.items()):
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=key)
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        batches = sorted({r.case.B for r in results})
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("batch size")
        ax.set_ylabel("speed-up over torch.nn (log scale; > 1x: fusedrnn faster)")
        ax.set_title(mode)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"fusedrnn vs torch.nn: {machine_line}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


SUMMARY = (("cell", "cell"), ("dtype", "dtype"), ("B", "B"), ("H", "H"), ("layers", "layers"), ("mode", "mode"),
           ("torch_ms", "torch.nn ms"), ("fused_ms", "fused ms"), ("speedup", "x"), ("graph_speedup", "graph x"),
           ("algorithm", "algorithm"), ("max_rel_err", "rel err"))


def summary(path) -> str:
    """A narrow table of a JSON result file: the columns a terminal summary needs."""
    with open(path) as f:
        data = json.load(f)

    def cell(v):
        return "n/a" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(title for _, title in SUMMARY) + " |", "|" + "---|" * len(SUMMARY)]
    lines += ["| " + " | ".join(cell(r.get(key)) for key, _ in SUMMARY) + " |" for r in data["results"]]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys
    print(summary(sys.argv[1]))
