"""The benchmark CLI runs and writes its table, JSON, Markdown and plot."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_benchmark_writes_its_outputs(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-m", "fusedrnn.bench", "--quick", "--device", "cpu", "--repeats", "2",
                          "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| lstm | float32 | 32 | 16 | 128 |" in run.stdout
    data = json.loads((tmp_path / "cpu.json").read_text())
    assert data["machine"]["device"] == "cpu" and data["machine"]["torch_threads"] >= 1
    assert len(data["results"]) == 8
    for r in data["results"]:
        assert r["torch_ms"] > 0 and r["fused_ms"] > 0 and r["speedup"] > 0
        assert r["max_abs_err"] < 1e-4  # both sides computed the same function
    assert "| cell |" in (tmp_path / "cpu.md").read_text()
    png = (tmp_path / "cpu.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_timed_repeats_fill_the_minimum_time():
    from fusedrnn.bench.runner import timed_repeats
    assert timed_repeats(5.0, 10, 1.0) == 200  # 200 calls of 5 ms: one second per side
    assert timed_repeats(500.0, 10, 1.0) == 10  # never fewer than asked
    assert timed_repeats(0.01, 10, 1.0) == 500  # capped
    assert timed_repeats(5.0, 10, 0.0) == 10
