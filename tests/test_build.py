"""The build: the default build compiles and links the CUDA part where torch is a CUDA build and nvcc is
found, and a CPU-only build (FUSEDRNN_CUDA=0) builds, imports and runs."""

import os
import shutil
import subprocess
import sys

import torch

import fusedrnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def nvcc_found():
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    return os.path.exists(os.path.join(cuda_home, "bin", "nvcc")) or shutil.which("nvcc") is not None


def test_cuda_part_built_when_detectable():
    detectable = torch.version.cuda is not None and nvcc_found()
    if os.environ.get("FUSEDRNN_CUDA", "auto") == "0":
        detectable = False
    assert fusedrnn.built_with_cuda() == detectable
    if detectable:
        # cudart linked and answers (a CUDA 13 toolkit reports 13000 and up)
        assert fusedrnn.backends.cuda.runtime_version() >= 11000
    else:
        assert fusedrnn.backends.cuda.runtime_version() == 0


def test_cpu_only_build_imports_and_runs(tmp_path):
    for name in ["setup.py", "pyproject.toml", "README.md"]:
        if os.path.exists(os.path.join(ROOT, name)):
            shutil.copy(os.path.join(ROOT, name), tmp_path / name)
    shutil.copytree(os.path.join(ROOT, "csrc"), tmp_path / "csrc")
    shutil.copytree(os.path.join(ROOT, "fusedrnn"), tmp_path / "fusedrnn",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    env = dict(os.environ, FUSEDRNN_CUDA="0", MAX_JOBS=os.environ.get("MAX_JOBS", "2"))
    build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "building the CPU ops only" in build.stdout
    script = (
        "import torch, fusedrnn\n"
        "assert fusedrnn.__file__.startswith(%r), fusedrnn.__file__\n"
        "assert not fusedrnn.built_with_cuda()\n"
        "x = torch.randn(5, 2, 3, dtype=torch.float64)\n"
        "w_ih, w_hh = torch.randn(12, 3, dtype=torch.float64), torch.randn(12, 4, dtype=torch.float64)\n"
        "y, h = fusedrnn.functional.gru(x, None, w_ih, w_hh)\n"
        "y_ref, h_ref = fusedrnn.reference.gru(x, None, w_ih, w_hh)\n"
        "assert torch.allclose(y, y_ref, atol=1e-12) and torch.allclose(h, h_ref, atol=1e-12)\n"
        "print('cpu-only build ok')\n" % str(tmp_path)
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "cpu-only build ok" in run.stdout
