"""One benchmark case: a torch.nn layer stack and its fused twin (same weights, same inputs, both in eval
mode for inference and train mode for training), timed side by side, with peak memory from a cold and a
warm state and the largest relative difference between what they compute (outputs; gradients too in
training).

Method: the first call after the caches are emptied (CPU), then warm-up and interleaved repetitions
(torch.nn, fused, torch.nn, ...) so that both sides see the same machine state; medians. CPU:
perf_counter. CUDA: CUDA events around each call, and the same step captured in a CUDA graph and
replayed, for both sides. Step-by-step cases also time their floor (bench/floor.py) in the same rounds.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import statistics
import time

import torch

import fusedrnn

from .floor import make_floor_step

MODULES = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN, "lstmcell": torch.nn.LSTMCell,
           "grucell": torch.nn.GRUCell, "rnncell": torch.nn.RNNCell}
CELLS = ("lstmcell", "grucell", "rnncell")


@dataclasses.dataclass(frozen=True)
class Case:
    cell: str
    dtype: str
    T: int
    B: int
    H: int
    layers: int = 1
    bidirectional: bool = False
    mode: str = "inference"  # or "training": forward + backward
    device: str = "cpu"
    autocast: bool = False  # float32 weights, input in dtype, run under torch.autocast(device, dtype)
    loop: int = 0  # step by step: this many calls from a Python loop (cells, or layers with T = 1)

    @property
    def label(self) -> str:
        shape = f"{self.layers}L{'-bi' if self.bidirectional else ''}"
        steps = f" x{self.loop} calls" if self.loop else ""
        return f"{self.cell} {self.precision} T={self.T}{steps} B={self.B} H={self.H} {shape} {self.mode}"

    @property
    def precision(self) -> str:
        return f"{self.dtype} autocast" if self.autocast else self.dtype

    def context(self):
        """The context each call runs in: torch.autocast for autocast cases."""
        if self.autocast:
            return torch.autocast(self.device, dtype=getattr(torch, self.dtype))
        return contextlib.nullcontext()


@dataclasses.dataclass
class Result:
    case: Case
    torch_ms: float  # steady state: median of the timed repetitions after warm-up
    fused_ms: float
    torch_first_ms: float | None  # CPU: a call right after reset_caches() (median of a few); None on CUDA
    fused_first_ms: float | None
    torch_graph_ms: float | None  # CUDA-graph replay (GPU only; None where capture failed)
    fused_graph_ms: float | None
    torch_cold_peak_mb: float | None  # peak memory of one call after reset_caches()
    fused_cold_peak_mb: float | None
    torch_steady_peak_mb: float | None  # peak memory of one call after warm-up, caches kept
    fused_steady_peak_mb: float | None
    max_rel_err: float  # see compare(): output (inference) or output, dx and weight gradients (training)
    worst_tensor: str  # where max_rel_err was found
    algorithm: str | None = None  # CUDA: which fused algorithm ran (step, persistent or mixed)
    floor_ms: float | None = None  # step by step: the calls' matrix products alone (bench/floor.py)

    @property
    def speedup(self) -> float:
        return self.torch_ms / self.fused_ms

    @property
    def first_speedup(self) -> float | None:
        if self.torch_first_ms is None or self.fused_first_ms is None:
            return None
        return self.torch_first_ms / self.fused_first_ms

    @property
    def over_floor(self) -> float | None:
        return None if self.floor_ms is None else self.fused_ms / self.floor_ms

    @property
    def graph_speedup(self) -> float | None:
        if self.torch_graph_ms is None or self.fused_graph_ms is None:
            return None
        return self.torch_graph_ms / self.fused_graph_ms

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(d.pop("case"))
        d["speedup"] = self.speedup
        d["first_speedup"] = self.first_speedup
        d["graph_speedup"] = self.graph_speedup
        d["over_floor"] = self.over_floor
        return d


def build_pair(case: Case):
    """The torch.nn stack and its fused copy, plus the input. Both modules are in the mode a user runs
    them in: eval for inference (torch.nn passes `training` on to cuDNN, which otherwise runs its
    training forward and keeps a reserve for backward), train for training."""
    torch.manual_seed(0)
    dtype = torch.float32 if case.autocast else getattr(torch, case.dtype)
    if case.cell in CELLS:
        plain = MODULES[case.cell](case.H, case.H, dtype=dtype, device=case.device)
    else:
        plain = MODULES[case.cell](case.H, case.H, num_layers=case.layers, bidirectional=case.bidirectional,
                                   dtype=dtype, device=case.device)
    fused = fusedrnn.convert(plain)
    training = case.mode == "training"
    plain.train(training)
    fused.train(training)
    g = torch.Generator(device=case.device).manual_seed(1)
    # Under autocast the input comes in the autocast dtype, as a preceding autocast layer (an nn.Linear)
    # hands it over; torch.nn's oneDNN LSTM fails on a float32 input under CPU autocast.
    x = torch.randn(case.loop or case.T, case.B, case.H, generator=g, dtype=getattr(torch, case.dtype),
                    device=case.device)
    return plain, fused, x


def forward(case: Case, module, x):
    """(output, final state) of the case's forward: one call on the whole sequence x, or, step by step,
    one call per step of x from a Python loop with the state fed back (cells get x[t], layers x[t:t+1])."""
    if not case.loop:
        return module(x)
    state, outputs = None, []
    for t in range(case.loop):
        if case.cell in CELLS:
            state = module(x[t], state)
            outputs.append(state[0] if isinstance(state, tuple) else state)
        else:
            out, state = module(x[t:t + 1], state)
            outputs.append(out[0])
    return torch.stack(outputs), state


def make_step(case: Case, module, x):
    """One timed call: the forward under no_grad (inference), or forward + backward of the output's sum
    (training); the forward in the case's context (torch.autocast for autocast cases)."""
    if case.mode == "inference":
        def step():
            with torch.no_grad(), case.context():
                return forward(case, module, x)[0]
    else:
        x_leaf = x.detach().requires_grad_()

        def step():
            with case.context():
                out = forward(case, module, x_leaf)[0]
            out.float().sum().backward()
            return out
    return step


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|, in float64."""
    actual, expected = actual.detach().double(), expected.detach().double()
    scale = expected.abs().max().item()
    return (actual - expected).abs().max().item() / (scale if scale > 0 else 1.0)


def compare(case: Case, plain, fused, x) -> dict[str, float]:
    """The relative error (relative_error) of each tensor the fused side computes, against torch.nn.
    Inference: the output and the final states. Training: also the input's gradient and every weight's,
    from one backward of a random output gradient (the same on both sides). Leaves no gradients behind."""
    training = case.mode == "training"

    def run(module):
        x_leaf = x.detach().requires_grad_(training)
        with torch.set_grad_enabled(training), case.context():
            out, state = forward(case, module, x_leaf)
        found = {"output": out}
        for i, s in enumerate(state if isinstance(state, tuple) else (state,)):
            found[f"state {i}"] = s
        if training:
            g = torch.Generator(device=x.device).manual_seed(2)
            grad = torch.randn(out.shape, generator=g, dtype=out.dtype, device=out.device)
            module.zero_grad(set_to_none=True)  # earlier calls may have left gradients
            out.backward(grad)
            found["input grad"] = x_leaf.grad
            for name, p in module.named_parameters():
                found[f"{name} grad"] = p.grad
            module.zero_grad(set_to_none=True)
        return found

    expected, actual = run(plain), run(fused)
    return {name: relative_error(actual[name], expected[name]) for name in expected}


def reset_caches(device: str) -> None:
    """The state a first call sees: fusedrnn's packed-weight cache and scratch pool emptied, freed
    memory handed back (malloc on the CPU, the caching allocator on CUDA)."""
    fusedrnn.backends.cpu.clear_weight_cache()
    fusedrnn.backends.cpu.clear_scratch_pool()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    else:
        _malloc_trim()


def _time_cpu(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def _time_cuda(fn) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def _graph_of(step):
    """step captured in a CUDA graph (after a warm-up on a side stream); None if capture fails."""
    try:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                step()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        return graph.replay
    except Exception:  # noqa: BLE001 - a side that cannot be captured is reported as n/a
        torch.cuda.synchronize()
        return None


_libc = None


def _malloc_trim() -> None:
    global _libc
    try:
        _libc = _libc or ctypes.CDLL("libc.so.6")
        _libc.malloc_trim(0)
    except OSError:
        pass


def _rss_status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def _peak_rss_growth(fn) -> float | None:
    """CPU: growth of the process's peak resident memory over one call, in bytes (Linux only)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        return None
    base = _rss_status("VmRSS")
    fn()
    return max(0, _rss_status("VmHWM") - base)


def peak_memory_mb(step, device, cold: bool) -> float | None:
    """Peak memory one call of step adds. cold: after reset_caches(), as a first call sees it, so that
    the caches the call fills count. Otherwise the steady state: caches kept, only freed memory handed
    back (on the CPU, fusedrnn's packed weights and idle scratch blocks then stay resident between
    calls and do not count)."""
    if cold:
        reset_caches(device)
    elif device == "cpu":
        _malloc_trim()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    grown = _peak_rss_growth(step)
    return None if grown is None else grown / 2**20


def first_call_ms(steps: dict, calls: int) -> dict[str, float]:
    """CPU: median time of a call right after reset_caches() (packing and first-touch included),
    alternating the sides."""
    times = {name: [] for name in steps}
    for _ in range(calls):
        for name, step in steps.items():
            reset_caches("cpu")
            times[name].append(_time_cpu(step))
    return {name: statistics.median(t) for name, t in times.items()}


def algorithm_of(step) -> str:
    """Which CUDA algorithm one call of the fused step ran: step, persistent, or mixed."""
    before = fusedrnn.backends.cuda.algorithm_counts()
    step()
    torch.cuda.synchronize()
    after = fusedrnn.backends.cuda.algorithm_counts()
    ran = {key.split("_")[1] for key in after if after[key] > before[key]}
    return ran.pop() if len(ran) == 1 else "mixed"


def timed_repeats(warmup_ms: float, repeats: int, min_seconds: float, max_repeats: int = 500) -> int:
    """At least `repeats`, and enough that each side runs ~min_seconds: a median of ten 5 ms calls
    spans 50 ms, within one burst of a neighbour's load on a shared machine."""
    if warmup_ms <= 0:
        return repeats
    return max(repeats, min(max_repeats, int(min_seconds * 1e3 / warmup_ms)))


def run_case(case: Case, repeats: int = 10, warmup: int = 3, min_seconds: float = 0.0,
             first_calls: int = 3) -> Result:
    plain, fused, x = build_pair(case)
    errors = compare(case, plain, fused, x)
    worst = max(errors, key=errors.get)
    steps = {"torch": make_step(case, plain, x), "fused": make_step(case, fused, x)}
    cold_peaks = {name: peak_memory_mb(step, case.device, cold=True) for name, step in steps.items()}
    algorithm = algorithm_of(steps["fused"]) if case.device == "cuda" else None
    timer = _time_cuda if case.device == "cuda" else _time_cpu
    slowest_warmup_ms = 0.0
    for _ in range(warmup):
        for step in steps.values():
            slowest_warmup_ms = max(slowest_warmup_ms, timer(step))
    steady_peaks = {name: peak_memory_mb(step, case.device, cold=False) for name, step in steps.items()}
    first_ms = {"torch": None, "fused": None}
    if case.device == "cpu" and first_calls > 0:
        first_ms = first_call_ms(steps, first_calls)
        for step in steps.values():  # warm again before the steady-state timing
            step()
    repeats = timed_repeats(slowest_warmup_ms, repeats, min_seconds)
    timed = dict(steps)
    if case.loop:  # the floor, timed in the same rounds as both sides
        timed["floor"] = make_floor_step(case, fused, x)
        timed["floor"]()
    times = {name: [] for name in timed}
    for _ in range(repeats):
        for name, step in timed.items():
            times[name].append(timer(step))
    graph_ms = {"torch": None, "fused": None}
    if case.device == "cuda":
        replays = {name: _graph_of(step) for name, step in steps.items()}
        graph_times = {name: [] for name in steps}
        for _ in range(repeats):
            for name, replay in replays.items():
                if replay is not None:
                    graph_times[name].append(_time_cuda(replay))
        graph_ms = {name: statistics.median(t) if t else None for name, t in graph_times.items()}
    return Result(case, statistics.median(times["torch"]), statistics.median(times["fused"]), first_ms["torch"],
                  first_ms["fused"], graph_ms["torch"], graph_ms["fused"], cold_peaks["torch"], cold_peaks["fused"],
                  steady_peaks["torch"], steady_peaks["fused"], errors[worst], worst, algorithm,
                  statistics.median(times["floor"]) if case.loop else None)
