"""The benchmark itself: the CLI writes its outputs; each side runs in the mode a user runs it in; cold
memory starts from empty caches; training rows compare gradients; committed results name their build
and are marked stale once the kernels they measured have changed."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest
import torch

import fusedrnn
from fusedrnn import _sources
from fusedrnn.bench import runner
from fusedrnn.bench.floor import make_floor_step
from fusedrnn.bench.report import markdown_table
from fusedrnn.bench.runner import Case

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def test_quick_benchmark_writes_its_outputs(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-m", "fusedrnn.bench", "--quick", "--device", "cpu", "--repeats", "2",
                          "--out", str(tmp_path)], check=False, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| lstm | float32 | 32 | 16 | 128 |" in run.stdout
    data = json.loads((tmp_path / "cpu.json").read_text())
    assert data["machine"]["device"] == "cpu" and data["machine"]["torch_threads"] >= 1
    assert data["machine"]["build"]["source_digest"]["cpu"] == _sources.source_digest("cpu")
    assert len(data["results"]) == 8
    for r in data["results"]:
        assert r["torch_ms"] > 0 and r["fused_ms"] > 0 and r["speedup"] > 0
        assert r["torch_first_ms"] > 0 and r["fused_first_ms"] > 0
        assert r["torch_cold_peak_mb"] is not None and r["fused_steady_peak_mb"] is not None
        assert r["max_rel_err"] < 1e-5  # both sides computed the same function
        assert r["worst_tensor"].endswith("grad") or r["mode"] == "inference"
    report = (tmp_path / "cpu.md").read_text()
    assert "| cell |" in report and "eval mode" in report
    assert f"cpu kernel sources {_sources.source_digest('cpu')}" in report
    png = (tmp_path / "cpu.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_timed_repeats_fill_the_minimum_time():
    from fusedrnn.bench.runner import timed_repeats
    assert timed_repeats(5.0, 10, 1.0) == 200  # 200 calls of 5 ms: one second per side
    assert timed_repeats(500.0, 10, 1.0) == 10  # never fewer than asked
    assert timed_repeats(0.01, 10, 1.0) == 500  # capped
    assert timed_repeats(5.0, 10, 0.0) == 10


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_both_sides_run_in_the_cases_mode(monkeypatch, mode):
    """Inference: both modules in eval mode without grad; training: both in train mode with grad."""
    seen = {"torch": set(), "fused": set()}

    def recording_pair(case):
        plain, fused, x = build_pair(case)
        for name, module in (("torch", plain), ("fused", fused)):
            module.register_forward_pre_hook(
                lambda m, args, name=name: seen[name].add((m.training, torch.is_grad_enabled())))
        return plain, fused, x

    build_pair = runner.build_pair
    monkeypatch.setattr(runner, "build_pair", recording_pair)
    runner.run_case(Case("gru", "float32", 3, 2, 8, mode=mode), repeats=2, warmup=1, first_calls=1)
    # compare() runs inference without grad and training with it, so each side sees one combination.
    expected = {(False, False)} if mode == "inference" else {(True, True)}
    assert seen == {"torch": expected, "fused": expected}


def test_cold_peak_is_measured_from_empty_caches():
    """The cold measurement starts with fusedrnn's packed-weight cache and scratch pool empty, so a cached
    inference call's packing counts; the steady one starts from the warm cache."""
    case = Case("lstm", "float32", 4, 1, 512)
    _plain, fused, x = runner.build_pair(case)
    step = runner.make_step(case, fused, x)
    cache, pool = fusedrnn.backends.cpu.weight_cache_stats, fusedrnn.backends.cpu.scratch_pool_stats
    at_start = []

    def probed():
        at_start.append((cache()["entries"], pool()["idle_bytes"]))
        step()

    step()  # fill the cache, as the error comparison and warm-up do
    assert cache()["entries"] > 0
    cold = runner.peak_memory_mb(probed, "cpu", cold=True)
    assert at_start[-1] == (0, 0) and cache()["entries"] > 0
    steady = runner.peak_memory_mb(probed, "cpu", cold=False)
    assert at_start[-1][0] > 0
    # W_hh packed is 4H x H float32 = 4 MB; the cold call allocates it, the steady one reuses it.
    assert cold - steady > 2.0, (cold, steady)


def test_training_error_compares_every_gradient():
    case = Case("lstm", "float32", 5, 3, 6, layers=2, bidirectional=True, mode="training")
    plain, fused, x = runner.build_pair(case)
    errors = runner.compare(case, plain, fused, x)
    params = [f"{name} grad" for name, _ in plain.named_parameters()]
    assert set(errors) == {"output", "state 0", "state 1", "input grad", *params}
    assert max(errors.values()) < 1e-5
    assert all(p.grad is None for p in fused.parameters())  # compare() leaves no gradients behind

    # A gradient off by 1% shows in the error column, although every output still agrees.
    fused.weight_hh_l1_reverse.register_hook(lambda g: g * 1.01)
    errors = runner.compare(case, plain, fused, x)
    assert errors["output"] < 1e-5
    assert max(errors, key=errors.get) == "weight_hh_l1_reverse grad"
    assert errors["weight_hh_l1_reverse grad"] == pytest.approx(0.01, rel=0.01)

    inference = runner.compare(dataclasses.replace(case, mode="inference"), plain.eval(), fused.eval(), x)
    assert set(inference) == {"output", "state 0", "state 1"}


def read_result(name):
    with open(os.path.join(RESULTS, name)) as f:
        return f.read()


# The committed reports `python -m fusedrnn.bench` wrote: benchmarks/results/<device>*.md.
REPORTS = [name for name in sorted(os.listdir(RESULTS)) if name.endswith(".md") and name.startswith(("cpu", "cuda"))
           and read_result(name).startswith("# fusedrnn vs torch.nn")]


@pytest.mark.parametrize("name", REPORTS)
def test_committed_results_match_the_kernels_or_say_stale(name):
    """A report names the build that produced it; once its device's kernel sources change, it carries a
    '- stale:' line until re-measured."""
    text = read_result(name)
    device = "cuda" if name.startswith("cuda") else "cpu"
    measured = re.search(rf"^- build: .*\b{device} kernel sources ([0-9a-f]{{16}})", text, re.MULTILINE)
    current = _sources.source_digest(device)
    if measured and measured.group(1) == current:
        return
    assert re.search(r"^- stale: ", text, re.MULTILINE), (
        f"benchmarks/results/{name} was measured on other {device} kernel sources than the tree's "
        f"({measured.group(1) if measured else 'unrecorded'} vs {current}): re-run the benchmark, or add a "
        "'- stale: ...' line saying what changed since")
    if device == "cuda":
        with open(os.path.join(ROOT, "README.md")) as f:
            assert "not re-measured since" in f.read(), "README: say the CUDA results predate the kernels"


@pytest.mark.parametrize("cell", ["grucell", "lstm"])
def test_step_by_step_cases_loop_over_single_steps(cell):
    """A --loop case times `loop` module calls per step (cells get [B, I], layers [1, B, I]), the state fed
    back, and compares the whole chain's outputs and gradients."""
    case = Case(cell, "float64", 1, 2, 5, mode="training", loop=3)
    plain, fused, x = runner.build_pair(case)
    shapes = []
    fused.register_forward_pre_hook(lambda m, args: shapes.append((tuple(args[0].shape), args[1] is None)))
    runner.make_step(case, fused, x)()
    one_step = (2, 5) if cell == "grucell" else (1, 2, 5)
    assert shapes == [(one_step, True), (one_step, False), (one_step, False)]
    errors = runner.compare(case, plain, fused, x)
    assert "input grad" in errors and max(errors.values()) < 1e-10
    assert runner.forward(case, fused, x)[0].shape == (3, 2, 5)


@pytest.mark.parametrize("mode,per_step", [("inference", 2), ("training", 6)])
def test_the_floor_runs_each_step_matrix_products_on_the_same_weights(mode, per_step):
    """floor: per call, x W_ih^T and h W_hh^T (training adds both data gradients and both weight
    gradients), on the module's own weights; the report gets its column."""
    case = Case("lstm", "float32", 1, 3, 5, layers=2, mode=mode, loop=4)
    plain, fused, x = runner.build_pair(case)
    weights = {p.data_ptr() for name, p in fused.named_parameters() if name.startswith("weight_")}
    products = []

    class Products(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in (torch.mm, torch.Tensor.addmm_):
                products.append({a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor)})
            return func(*args, **(kwargs or {}))

    step = make_floor_step(case, fused, x)
    with Products():
        step()
    assert len(products) == case.loop * case.layers * per_step
    assert set().union(*products) >= weights
    result = runner.run_case(case, repeats=1, warmup=1, first_calls=0)
    assert result.floor_ms > 0 and result.over_floor == result.fused_ms / result.floor_ms
    assert "| floor ms | fusedrnn / floor |" in markdown_table([result])


def test_autocast_cases_run_float32_modules_under_autocast():
    case = Case("gru", "bfloat16", 4, 2, 8, mode="training", autocast=True)
    plain, fused, x = runner.build_pair(case)
    assert x.dtype == torch.bfloat16 and all(p.dtype == torch.float32 for p in fused.parameters())
    out, expected = runner.make_step(case, fused, x)(), runner.make_step(case, plain, x)()
    assert out.dtype == expected.dtype  # torch.nn's dtype under the same autocast
    assert all(p.grad.dtype == torch.float32 for p in fused.parameters())
    errors = runner.compare(case, plain, fused, x)
    assert max(errors.values()) < 5e-2  # both sides compute in bfloat16 ...
    full = runner.compare(dataclasses.replace(case, autocast=False, dtype="float32"), plain, fused, x.float())
    assert max(errors.values()) > 100 * max(full.values())  # ... which float32 does not


@pytest.mark.parametrize("variant", ["layernorm", "regularisers"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_beyond_torch_nn_baselines_compute_the_fused_math(variant, cell):
    """--layernorm / --regularisers time step loops a user writes: in evaluation (no draws) they compute the
    fused layer's outputs, eagerly and scripted."""
    from fusedrnn.bench import layernorm as beyond

    torch.manual_seed(0)
    plain = fusedrnn.LSTM if cell == "lstm" else fusedrnn.GRU
    fused = ((fusedrnn.LayerNormLSTM if cell == "lstm" else fusedrnn.LayerNormGRU)(6, 6) if variant == "layernorm"
             else plain(6, 6, zoneout=0.3, recurrent_dropout=0.2))
    with torch.no_grad():
        for name, p in fused.named_parameters():
            p.add_(torch.randn_like(p) * 0.1)  # the norms' weights off ones and zeros
    fused.eval()
    x, h0, c0 = torch.randn(5, 3, 6), torch.randn(3, 6), torch.randn(3, 6)
    expected = fused(x, (h0[None], c0[None]) if cell == "lstm" else h0[None])[0]
    for loop in (beyond.loop_twin(fused).eval(), torch.jit.script(beyond.loop_twin(fused).eval())):
        torch.testing.assert_close(loop(x, h0, c0), expected, rtol=1e-5, atol=1e-5)
    loop = beyond.loop_twin(fused).train()
    keep, d = loop.masks(5, 3, 6, x)  # training: fusedrnn's draws, shapes and rates
    if variant == "regularisers":
        assert keep.shape == (5, 3, 6 * (2 if cell == "lstm" else 1)) and d.shape == (3, 6)
        assert set(keep.unique().tolist()) <= {0.0, 1.0} and set(d.unique().tolist()) <= {0.0, 1.25}
