"""What the benchmark ran on, for the JSON and the report headers."""

from __future__ import annotations

import datetime
import os
import platform

import torch

import fusedrnn


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
