"""What this build of fusedrnn is, and whether it fits the torch that is running.

setup.py records the build in fusedrnn/_build_info.py (git revision, source digests, the torch and CUDA it
was built against, the CUDA architectures). check_torch() runs at import, before the extension loads: an
extension built against another torch fails to load with an undefined symbol or a missing library that
names neither build, so the check says it first, with the command that rebuilds.
"""

from __future__ import annotations

import os

import torch

REBUILD = ("rebuild fusedrnn against the torch you run: pip install --no-deps --force-reinstall "
           "<fusedrnn source folder> (or `make build` in it)")


def build_info() -> dict | None:
    """What setup.py recorded when it built the extension; None for a build made before it recorded."""
    try:
        from ._build_info import BUILD
    except ImportError:
        return None
    return dict(BUILD)


def check_torch() -> None:
    """ImportError, naming both versions and the rebuild command, when the running torch is not the one
    fusedrnn was built against, or lacks the CUDA that a CUDA build of fusedrnn links to."""
    build = build_info()
    if build is None:
        return
    running = str(torch.__version__)
    if build["with_cuda"] and torch.version.cuda is None:
        raise ImportError(
            f"fusedrnn was built with its CUDA kernels against torch {build['torch']} (CUDA {build['torch_cuda']}), "
            f"but the running torch {running} is a CPU-only build. Install a CUDA build of torch, or "
            f"FUSEDRNN_CUDA=0 {REBUILD} (CPU kernels only)")
    if build["torch"] != running:
        raise ImportError(f"fusedrnn was built against torch {build['torch']}, but torch {running} is running: "
                          f"{REBUILD}")


def describe() -> str:
    """show_config()'s text."""
    from . import __version__, backends

    build = build_info() or {}
    revision = build.get("git_revision")
    state = " with uncommitted changes" if build.get("git_dirty") else ""
    archs = build.get("cuda_arch_list") or "architectures not recorded"
    built_cuda = f", CUDA {build['torch_cuda']} for {archs}" if build.get("with_cuda") else ""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU available"
    lines = [
        f"fusedrnn {__version__}" + (f" (git {revision[:12]}{state})" if revision else ""),
        f"built against: torch {build['torch']}{built_cuda}" if build else "built against: not recorded",
        f"running:       torch {torch.__version__}, CUDA {torch.version.cuda or 'none (CPU-only torch)'}, {gpu}",
    ]
    if backends.cuda.is_built():
        lines.append(f"CUDA kernels:  compiled; algorithm {backends.cuda.algorithm()} "
                     f"(FUSEDRNN_ALGO={os.environ.get('FUSEDRNN_ALGO', 'unset')})")
    else:
        lines.append("CUDA kernels:  not compiled (a CPU-only build)")
    lines.append(f"CPU kernels:   {backends.cpu.isa()} (this CPU runs: {', '.join(backends.cpu.supported_isas())}; "
                 f"FUSEDRNN_CPU_ISA={os.environ.get('FUSEDRNN_CPU_ISA', 'unset')}), "
                 f"{torch.get_num_threads()} torch threads")
    return "\n".join(lines)


def show_config() -> None:
    """Prints what this fusedrnn is: version and git revision, the torch and CUDA it was built against and
    the ones running, the compiled CUDA architectures, and the kernels and settings in use."""
    print(describe())
