"""The build record: show_config() describes the build, a mismatched torch gets a clear ImportError before
the extension loads, and the sdist carries every source the build uses."""

import os
import subprocess
import sys
import tarfile

import pytest
import torch

import fusedrnn
from fusedrnn import _config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = _config.build_info()


def run_python(code):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                          check=False)


def test_show_config_describes_the_build_and_the_running_torch(capsys):
    fusedrnn.show_config()
    text = capsys.readouterr().out
    assert f"fusedrnn {fusedrnn.__version__}" in text
    assert f"built against: torch {BUILD['torch']}" in text and f"running:       torch {torch.__version__}" in text
    assert f"CPU kernels:   {fusedrnn.backends.cpu.isa()}" in text
    assert ("CUDA kernels:  compiled" if fusedrnn.built_with_cuda() else "CUDA kernels:  not compiled") in text


def test_another_torch_version_is_refused_at_import():
    run = run_python("import torch; torch.__version__ = '2.0.0'; import fusedrnn")
    assert run.returncode != 0
    message = run.stderr.strip().splitlines()[-1]
    assert message.startswith("ImportError: fusedrnn was built against torch " + BUILD["torch"])
    assert "torch 2.0.0 is running" in message and "pip install --no-deps --force-reinstall" in message


def test_a_cpu_only_torch_is_refused_by_a_cuda_build_only():
    run = run_python("import torch; torch.version.cuda = None; import fusedrnn; print('imported')")
    if BUILD["with_cuda"]:
        assert run.returncode != 0 and "is a CPU-only build" in run.stderr and "FUSEDRNN_CUDA=0" in run.stderr
    else:
        assert run.returncode == 0 and "imported" in run.stdout, run.stderr


@pytest.mark.skipif(not os.path.isdir(os.path.join(ROOT, ".git")), reason="needs the git checkout")
def test_sdist_carries_every_source_the_build_uses(tmp_path):
    build = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)], cwd=ROOT,
                           env=dict(os.environ, FUSEDRNN_CUDA="0"), capture_output=True, text=True, timeout=600,
                           check=False)
    assert build.returncode == 0, build.stderr[-2000:]
    (archive,) = tmp_path.glob("fusedrnn-*.tar.gz")
    with tarfile.open(archive) as tar:
        packed = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    tracked = subprocess.run(["git", "ls-files", "csrc", "fusedrnn", "build_backend", "setup.py", "pyproject.toml",
                              "README.md", "LICENSE"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert tracked and not set(tracked) - packed, sorted(set(tracked) - packed)
    assert "fusedrnn/_build_info.py" not in packed  # this checkout's build record is not the sdist's
