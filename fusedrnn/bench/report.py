"""The benchmark's outputs: a Markdown table, JSON, and a PNG plot of speed-up against batch size."""

from __future__ import annotations

import json


def _ms(v):
    return "n/a" if v is None else f"{v:.2f}"


def _mb(v):
    return "n/a" if v is None else f"{v:.1f}"


def markdown_table(results) -> str:
    gpu = any(r.case.device == "cuda" for r in results)
    head = ["cell", "dtype", "T", "B", "H", "layers", "mode", "torch.nn ms", "fusedrnn ms", "speed-up"]
    if gpu:
        head += ["torch.nn graph ms", "fusedrnn graph ms", "graph speed-up", "fusedrnn graph us/step", "algorithm"]
    head += ["torch.nn peak MB", "fusedrnn peak MB", "max abs err"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        c = r.case
        row = [c.cell, c.dtype, str(c.T), str(c.B), str(c.H), f"{c.layers}{' bi' if c.bidirectional else ''}",
               c.mode, _ms(r.torch_ms), _ms(r.fused_ms), f"{r.speedup:.2f}x"]
        if gpu:
            gs = r.graph_speedup
            per_step = "n/a" if r.fused_graph_ms is None else f"{r.fused_graph_ms * 1e3 / c.T:.2f}"
            row += [_ms(r.torch_graph_ms), _ms(r.fused_graph_ms), "n/a" if gs is None else f"{gs:.2f}x", per_step,
                    r.algorithm or "n/a"]
        row += [_mb(r.torch_peak_mb), _mb(r.fused_peak_mb), f"{r.max_abs_err:.1e}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_json(path, machine, command, results, memory_results) -> None:
    with open(path, "w") as f:
        json.dump({"machine": machine, "command": command, "results": [r.to_dict() for r in results],
                   "memory": [r.to_dict() for r in memory_results]}, f, indent=1)


def write_markdown(path, machine_line, command, results, memory_results, min_seconds=0.0) -> None:
    repeats = f" until each side ran ~{min_seconds:g} s (10-500 calls)" if min_seconds > 0 else ""
    with open(path, "w") as f:
        f.write(f"# fusedrnn vs torch.nn\n\n- machine: {machine_line}\n- command: `{command}`\n"
                f"- method: same weights and inputs, warm-up, interleaved repetitions{repeats}, medians; "
                "training = forward + backward of the output's sum\n\n")
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
            key = f"{c.cell} {c.dtype} H={c.H} {c.layers}L{' bi' if c.bidirectional else ''}"
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
