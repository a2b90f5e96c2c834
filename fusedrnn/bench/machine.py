"""What the benchmark ran on, for the JSON and the report headers."""

from __future__ import annotations

import datetime
import os
import platform

import torch

import fusedrnn
from fusedrnn import _sources
from fusedrnn._config import build_info




def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(device: str) -> dict:
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": device,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "fusedrnn_cpu_isa": fusedrnn.backends.cpu.isa(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "fusedrnn": fusedrnn.__version__,
        "fusedrnn_built_with_cuda": fusedrnn.built_with_cuda(),
        "build": build_info(),
        # The sources in the tree now: they differ from the build's when the extension was not rebuilt.
        "tree_source_digest": {d: _sources.source_digest(d) for d in ("cpu", "cuda")},
        # The Python code that ran is the tree's (an editable install), which can be newer than the build.
        "tree_git": dict(zip(("revision", "dirty"), _sources.git_revision())),
    }
    if device == "cuda":
        info.update({
            "gpu": torch.cuda.get_device_name(),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "sm_count": torch.cuda.get_device_properties().multi_processor_count,
            "grid_barrier_us": round(fusedrnn.backends.cuda.barrier_microseconds(2000), 3),
            "fusedrnn_algo": fusedrnn.backends.cuda.algorithm(),
        })
    return info


def headline(info: dict) -> str:
    if info["device"] == "cuda":
        return (f"{info['gpu']}, torch {info['torch']}, CUDA {info['cuda']}, cuDNN {info['cudnn']}, "
                f"TF32 allowed for cuDNN: {info['cudnn_allow_tf32']}; fusedrnn algorithm {info['fusedrnn_algo']}, "
                f"grid barrier {info['grid_barrier_us']} us; {info['date']}")
    return (f"{info['cpu']}, {info['torch_threads']} threads, fusedrnn CPU passes: {info['fusedrnn_cpu_isa']}, "
            f"torch {info['torch']}; {info['date']}")


def build_line(info: dict, device: str) -> str:
    """Which build produced the results: git revision, the digest of the device's kernel sources, and
    which kernels ran (CPU: one instruction set for every row; CUDA: the table's algorithm column)."""
    build = info.get("build")
    if not build:
        return "unknown (fusedrnn/_build_info.py missing: built before setup.py recorded it)"
    revision = (build["git_revision"] or "unknown")[:12]
    state = {True: " with uncommitted changes", False: "", None: ""}[build["git_dirty"]]
    line = (f"fusedrnn {info['fusedrnn']} built at git {revision}{state}, {device} kernel sources "
            f"{build['source_digest'][device]}, built against torch {build['torch']}")
    tree = info.get("tree_git") or {}
    if tree.get("revision") and (tree["revision"] != build["git_revision"] or tree["dirty"] != build["git_dirty"]):
        changes = " with uncommitted changes" if tree["dirty"] else ""
        line += f"; Python code from the tree at git {tree['revision'][:12]}{changes}"
    if info.get("tree_source_digest", {}).get(device) not in (None, build["source_digest"][device]):
        line += " (WARNING: the tree's sources differ from the build's: rebuild)"
    if device == "cpu":
        return line + f"; every row ran the {info['fusedrnn_cpu_isa']} CPU kernels"
    return line + f"; FUSEDRNN_ALGO={info['fusedrnn_algo']}, the algorithm each row ran is in its row"
