"""Which sources a build compiled: the git revision and a digest of the kernel sources per device.

setup.py records them in fusedrnn/_build_info.py when it builds (it loads this file by path, before
torch or the extension exist, so nothing here imports either). The benchmark writes them into each result
file, and tests/test_bench.py compares a result file's digest with the tree's, so that results from older
kernels are marked as such until re-measured.
"""

from __future__ import annotations

import hashlib
import os
import subprocess

SOURCE_SUFFIXES = (".h", ".cuh", ".cpp", ".cu")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _files(root: str, device: str) -> list[str]:
    """The kernel sources a device's results depend on: all of csrc/ for CUDA (its kernels include the
    core headers and the shared host code), csrc/ without csrc/cuda/ for the CPU."""
    found = []
    for folder, _, names in os.walk(os.path.join(root, "csrc")):
        rel = os.path.relpath(folder, root)
        if device == "cpu" and (rel + os.sep).startswith(os.path.join("csrc", "cuda") + os.sep):
            continue
        found += [os.path.join(rel, name) for name in names if name.endswith(SOURCE_SUFFIXES)]
    return sorted(found)


def source_digest(device: str, root: str = ROOT) -> str | None:
    """sha256 (first 16 hex digits) over the paths and contents of `device`'s kernel sources under
    `root`; None when root has no csrc/ (an installed package without its sources)."""
    if not os.path.isdir(os.path.join(root, "csrc")):
        return None
    digest = hashlib.sha256()
    for rel in _files(root, device):
        digest.update(rel.replace(os.sep, "/").encode() + b"\0")
        with open(os.path.join(root, rel), "rb") as f:
            digest.update(f.read() + b"\0")
    return digest.hexdigest()[:16]


def git_revision(root: str = ROOT) -> tuple[str | None, bool | None]:
    """(commit, True when the tree has uncommitted changes) of the checkout at root; (None, None) outside
    git."""
    def git(*args):
        return subprocess.run(["git", "-C", root, *args], check=False, capture_output=True, text=True, timeout=30)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None, None
        status = git("status", "--porcelain", "--untracked-files=no")
        return head.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def describe(root: str = ROOT) -> dict:
    """The record setup.py writes: git revision, dirty flag and the per-device source digests."""
    revision, dirty = git_revision(root)
    return {"git_revision": revision, "git_dirty": dirty,
            "source_digest": {device: source_digest(device, root) for device in ("cpu", "cuda")}}
