"""The build backend (build_backend/fusedrnn_build.py) builds against the installed torch under pip's build
isolation, and asks for torch only where none is installed.

The isolation is simulated as pip sets it up: the same interpreter, its site-packages removed from
sys.path, setuptools reachable from another folder."""

import json
import os
import subprocess
import sys

import setuptools
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ISOLATED = """
import importlib.util, json, site, sys
hidden = set(site.getsitepackages())
sys.path[:] = [p for p in sys.path if p not in hidden] + [{overlay!r}]
for name in [m for m in sys.modules if m.split(".")[0] in ("setuptools", "_distutils_hack", "pkg_resources")]:
    del sys.modules[name]
assert importlib.util.find_spec("torch") is None, "torch is still importable: not isolated"
sys.path.insert(0, {backend!r})
import fusedrnn_build
{body}
"""


def run_isolated(tmp_path, body):
    """Runs body under a pip-like isolation; returns the JSON it prints last."""
    overlay = tmp_path / "isolated"
    overlay.mkdir()
    site_packages = os.path.dirname(os.path.dirname(setuptools.__file__))
    for name in ("setuptools", "pkg_resources", "_distutils_hack"):
        if os.path.exists(os.path.join(site_packages, name)):
            os.symlink(os.path.join(site_packages, name), overlay / name)
    code = ISOLATED.format(overlay=str(overlay), backend=os.path.join(ROOT, "build_backend"), body=body)
    env = dict(os.environ, FUSEDRNN_CUDA="0", PYTHONNOUSERSITE="1")
    env.pop("PYTHONPATH", None)
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_isolated_build_uses_the_installed_torch(tmp_path):
    out = run_isolated(tmp_path, """
requires = fusedrnn_build.get_requires_for_build_wheel()
import torch
print(json.dumps({"requires": requires, "torch": torch.__file__, "version": torch.__version__}))
""")
    assert not [r for r in out["requires"] if r.startswith("torch")]
    assert out["torch"] == torch.__file__ and out["version"] == torch.__version__


def test_without_an_installed_torch_the_build_asks_for_one(tmp_path):
    out = run_isolated(tmp_path, """
fusedrnn_build.installed_sites = lambda: []
print(json.dumps({"wheel": fusedrnn_build.get_requires_for_build_wheel(),
                  "editable": fusedrnn_build.get_requires_for_build_editable()}))
""")
    assert out == {"wheel": ["torch"], "editable": ["torch"]}


def test_the_wheel_asks_for_the_torch_it_was_built_against(tmp_path):
    out = run_isolated(tmp_path, f"""
name = fusedrnn_build.prepare_metadata_for_build_wheel({str(tmp_path)!r})
print(json.dumps(open({str(tmp_path)!r} + "/" + name + "/METADATA").read()))
""")
    assert f"Requires-Dist: torch=={torch.__version__.split('+')[0]}" in out.splitlines()
