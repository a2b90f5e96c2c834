"""Proves two builds of fusedrnn compute bit-identical results on the CPU.

`dump` runs a fixed, seeded list of calls through the public API (fusedrnn.functional.lstm / gru / rnn,
the LSTM / GRU / RNN modules with two bidirectional layers, and the three cells) under every CPU
instruction set this machine supports, and saves every output and every gradient (x, the initial states,
every weight and bias, w_hr included) with torch.save. `compare` checks that two such dumps hold the same
keys and bitwise-equal tensors (same dtype and shape; NaN-aware); it exits 1 on any difference or missing
key.

Run each build's dump from outside the source trees, with PYTHONPATH pointing at the build, and with the
same number of threads on the same machine, then compare:

    cd /tmp && PYTHONPATH=/path/to/build_a python /path/to/compare_builds.py dump a.pt
    cd /tmp && PYTHONPATH=/path/to/build_b python /path/to/compare_builds.py dump b.pt
    python /path/to/compare_builds.py compare a.pt b.pt
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import itertools
import sys
import time
import zlib

import torch
from torch.nn.utils.rnn import pack_padded_sequence

GATES = {"lstm": 4, "lstm_proj": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}
ISAS = ("default", "avx2", "avx512")
INPUT_SIZE = 5
VARLEN_LENGTHS = (7, 5, 5, 2)  # functional: the batch_sizes of a PackedSequence of these lengths
MODULE_LENGTHS = (5, 7, 2, 5)  # modules: unsorted, so the module permutes the states too
MODULE_CLASSES = {"lstm": "LSTM", "lstm_proj": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}
CELL_CLASSES = {"lstm": "LSTMCell", "gru": "GRUCell", "rnn_tanh": "RNNCell", "rnn_relu": "RNNCell"}


# ---------------------------------------------------------------------------------------------- inputs


def generator(key: str) -> torch.Generator:
    """Seeded from the case's key less its ISA prefix: every ISA and every build sees the same inputs."""
    return torch.Generator().manual_seed(zlib.crc32(key.split("/", 1)[1].encode()))


def rand(gen, shape, dtype, scale=1.0):
    """Uniform in [-scale, scale), drawn in float64 and rounded to dtype."""
    return ((torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * scale).to(dtype)


def proj_size(cell, hidden):
    return hidden // 2 + 1 if cell == "lstm_proj" else 0


def batch_sizes_of(lengths):
    dummy = torch.zeros(max(lengths), len(lengths), 1)
    return pack_padded_sequence(dummy, torch.tensor(lengths), enforce_sorted=False).batch_sizes


# ---------------------------------------------------------------------------------------------- recording


def record(out, key, run, leaves, train):
    """Runs run() -> {name: output}; stores outputs, and after backward the gradient of every leaf.

    train: grad mode on, leaves require grad, backward with a fresh random gradient for every output.
    Otherwise two calls under torch.no_grad (the second hits the packed-weight cache).
    """
    if train:
        for t in leaves.values():
            t.requires_grad_(True)
        outputs, gen = run(), generator(f"{key}/output grads")
        grads = [rand(gen, o.shape, o.dtype) for o in outputs.values()]
        torch.autograd.backward(list(outputs.values()), grads)
        for name, o in outputs.items():
            out[f"{key}/{name}"] = o.detach().clone()
        for name, t in leaves.items():
            if t.grad is not None:
                out[f"{key}/grad.{name}"] = t.grad.clone()
        return
    with torch.no_grad():
        for call in (1, 2):
            for name, o in run().items():
                out[f"{key}/call{call}.{name}"] = o.clone()


def functional_case(fusedrnn, key, p):
    """One layer direction through fusedrnn.functional; p: cell, dtype, I, H, reverse, bias, train and either
    T and B (dense x [T, B, I]) or lengths (packed x [N, I] with its batch_sizes)."""
    gen, dtype, cell, hidden = generator(key), DTYPES[p["dtype"]], p["cell"], p["H"]
    gates, out_size = GATES[cell], proj_size(cell, hidden) or hidden
    k = hidden ** -0.5
    if "lengths" in p:
        batch_sizes = batch_sizes_of(p["lengths"])
        batch = int(batch_sizes[0])
        x = rand(gen, (int(batch_sizes.sum()), p["I"]), dtype)
    else:
        batch_sizes, batch = None, p["B"]
        x = rand(gen, (p["T"], batch, p["I"]), dtype)
    t = {"x": x, "h0": rand(gen, (batch, out_size), dtype)}
    if cell.startswith("lstm"):
        t["c0"] = rand(gen, (batch, hidden), dtype)
    t["w_ih"] = rand(gen, (gates * hidden, p["I"]), dtype, k)
    t["w_hh"] = rand(gen, (gates * hidden, out_size), dtype, k)
    if p["bias"]:
        t["b_ih"] = rand(gen, (gates * hidden,), dtype, k)
        t["b_hh"] = rand(gen, (gates * hidden,), dtype, k)
    if cell == "lstm_proj":
        t["w_hr"] = rand(gen, (out_size, hidden), dtype, k)
    F = fusedrnn.functional
    layout = {"batch_sizes": batch_sizes, "reverse": p["reverse"]}

    def run():
        weights = (t["w_ih"], t["w_hh"], t.get("b_ih"), t.get("b_hh"))
        if cell.startswith("lstm"):
            y, (h, c) = F.lstm(t["x"], (t["h0"], t["c0"]), *weights, t.get("w_hr"), **layout)
            return {"y": y, "h_n": h, "c_n": c}
        if cell == "gru":
            y, h = F.gru(t["x"], t["h0"], *weights, **layout)
        else:
            y, h = F.rnn(t["x"], t["h0"], *weights, **layout, nonlinearity=cell.split("_")[1])
        return {"y": y, "h_n": h}

    return run, t


def fill_parameters(module, gen, dtype):
    k = module.hidden_size ** -0.5
    with torch.no_grad():
        for w in module.parameters():
            w.copy_(rand(gen, w.shape, dtype, k))


def module_case(fusedrnn, key, p):
    """fusedrnn.LSTM / GRU / RNN, two bidirectional layers; p: cell, dtype, I, H, bias, train and either
    T and B (dense) or lengths (a PackedSequence, unsorted)."""
    gen, dtype, cell, hidden = generator(key), DTYPES[p["dtype"]], p["cell"], p["H"]
    extra = {"nonlinearity": cell.split("_")[1]} if cell.startswith("rnn") else {}
    if cell == "lstm_proj":
        extra["proj_size"] = proj_size(cell, hidden)
    cls = getattr(fusedrnn, MODULE_CLASSES[cell])
    module = cls(p["I"], hidden, num_layers=2, bias=p["bias"], bidirectional=True, **extra).to(dtype)
    fill_parameters(module, gen, dtype)
    out_size = proj_size(cell, hidden) or hidden
    lengths = p.get("lengths")
    seq, batch = (max(lengths), len(lengths)) if lengths else (p["T"], p["B"])
    t = {"x": rand(gen, (seq, batch, p["I"]), dtype), "h0": rand(gen, (4, batch, out_size), dtype)}
    if cell.startswith("lstm"):
        t["c0"] = rand(gen, (4, batch, hidden), dtype)

    def run():
        x = pack_padded_sequence(t["x"], torch.tensor(lengths), enforce_sorted=False) if lengths else t["x"]
        hx = (t["h0"], t["c0"]) if cell.startswith("lstm") else t["h0"]
        y, h = module(x, hx)
        y = y.data if lengths else y
        return {"y": y, "h_n": h[0], "c_n": h[1]} if cell.startswith("lstm") else {"y": y, "h_n": h}

    return run, {**t, **dict(module.named_parameters())}


def cell_case(fusedrnn, key, p):
    """fusedrnn.LSTMCell / GRUCell / RNNCell; p: cell, dtype, B, I, H, bias, train."""
    gen, dtype, cell = generator(key), DTYPES[p["dtype"]], p["cell"]
    extra = {"nonlinearity": cell.split("_")[1]} if cell.startswith("rnn") else {}
    module = getattr(fusedrnn, CELL_CLASSES[cell])(p["I"], p["H"], bias=p["bias"], **extra).to(dtype)
    fill_parameters(module, gen, dtype)
    t = {"x": rand(gen, (p["B"], p["I"]), dtype), "h0": rand(gen, (p["B"], p["H"]), dtype)}
    if cell == "lstm":
        t["c0"] = rand(gen, (p["B"], p["H"]), dtype)

    def run():
        if cell == "lstm":
            h, c = module(t["x"], (t["h0"], t["c0"]))
            return {"h": h, "c": c}
        return {"h": module(t["x"], t["h0"])}

    return run, {**t, **dict(module.named_parameters())}


# ---------------------------------------------------------------------------------------------- the cases


def cases():
    """(label, case function, params) of every call, in a fixed order."""
    flags = [{"reverse": r, "bias": b, "train": t}
             for r, b, t in itertools.product((False, True), (True, False), (True, False))]
    # T=7 with every B and H, T=1 with three of them
    dense_sizes = [(7, B, H) for B in (1, 3, 8) for H in (5, 32, 67)] + [(1, 1, 5), (1, 3, 67), (1, 8, 32)]
    for cell, dtype in itertools.product(GATES, DTYPES):
        for T, B, H in dense_sizes:
            for f in flags:
                yield "functional", functional_case, {"cell": cell, "dtype": dtype, "T": T, "B": B,
                                                      "I": INPUT_SIZE, "H": H, **f}
        for H in (5, 32, 67):
            for f in flags:
                yield "functional", functional_case, {"cell": cell, "dtype": dtype, "lengths": VARLEN_LENGTHS,
                                                      "I": INPUT_SIZE, "H": H, **f}
    # Larger: from batch 32 the steps fold in x W_ih^T; LSTM H=768 at batch 8 (W_ih + W_hh over 8 MB) does
    # not fold; gate gradients over 4 MB take ATen's GEMM for dW.
    big = [("fold", cell, dtype, 5, 64, 256, train)
           for cell, dtype, train in itertools.product(GATES, DTYPES, (True, False))]
    big += [("unfolded", "lstm", "float32", 3, 8, 768, train) for train in (True, False)]
    big += [("aten_dw", cell, "float32", T, 300, 256, True)
            for cell, T in (("lstm", 4), ("lstm_proj", 4), ("gru", 6), ("rnn_tanh", 16))]
    for path, cell, dtype, T, B, H, train in big:
        for reverse in (False, True):
            params = {"cell": cell, "dtype": dtype, "T": T, "B": B, "I": 48, "H": H, "reverse": reverse,
                      "bias": True, "train": train}
            yield f"functional_{path}", functional_case, params
    layouts = ({"T": 7, "B": 3}, {"lengths": MODULE_LENGTHS})
    for cell, dtype in itertools.product(GATES, DTYPES):
        for layout, bias, train in itertools.product(layouts, (True, False), (True, False)):
            params = {"cell": cell, "dtype": dtype, **layout, "I": INPUT_SIZE, "H": 32, "bias": bias,
                      "train": train}
            yield "module_2layers_bidirectional", module_case, params
    for cell, dtype in itertools.product(CELL_CLASSES, DTYPES):
        for B, H, bias, train in itertools.product((1, 3, 8), (5, 32, 67), (True, False), (True, False)):
            params = {"cell": cell, "dtype": dtype, "B": B, "I": INPUT_SIZE, "H": H, "bias": bias,
                      "train": train}
            yield "cell", cell_case, params


def case_key(isa, label, params):
    """A stable description of the case, e.g. avx2/cell/cell=gru/dtype=float32/B=3/I=5/H=67/bias=True/..."""
    text = (f"{k}=" + ("_".join(map(str, v)) if isinstance(v, tuple) else str(v)) for k, v in params.items())
    return "/".join((isa, label, *text))


def isa_functions(fusedrnn):
    """(get, set) of the CPU kernels' instruction set: fusedrnn.backends.cpu when the build has it."""
    if importlib.util.find_spec("fusedrnn.backends") is None:
        return fusedrnn._C.cpu_isa, fusedrnn._C.set_cpu_isa
    backends = importlib.import_module("fusedrnn.backends")
    cpu = getattr(backends, "cpu", None) or importlib.import_module("fusedrnn.backends.cpu")
    return cpu.isa, cpu.set_isa


def dump(path):
    import fusedrnn

    print(f"fusedrnn: {fusedrnn.__file__}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    get_isa, set_isa = isa_functions(fusedrnn)
    original = get_isa()
    out, start = {}, time.perf_counter()
    try:
        for isa in ISAS:
            if not set_isa(isa):
                print(f"isa {isa}: not supported here, skipped")
                continue
            assert get_isa() == isa, (get_isa(), isa)
            isa_start, before = time.perf_counter(), len(out)
            for label, case, params in cases():
                key = case_key(isa, label, params)
                run, leaves = case(fusedrnn, key, params)
                record(out, key, run, leaves, params["train"])
            print(f"isa {isa}: {len(out) - before} tensors in {time.perf_counter() - isa_start:.1f} s")
    finally:
        set_isa(original)
    torch.save(out, path)
    print(f"wrote {len(out)} tensors to {path} in {time.perf_counter() - start:.1f} s")


# ---------------------------------------------------------------------------------------------- compare


def bits(t):
    """The tensor's raw bits as integers (floats), so NaNs and signed zeros compare exactly."""
    if t.is_floating_point():
        return t.view({1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])
    return t


def max_abs_diff(a, b):
    a, b = a.double(), b.double()
    diff = (a - b).abs()
    diff[a.isnan() & b.isnan()] = 0
    diff[a.isnan() ^ b.isnan()] = float("inf")
    return diff.max().item() if diff.numel() else 0.0


def compare(path_a, path_b):
    a, b = torch.load(path_a), torch.load(path_b)
    failed = False
    for key in sorted(a.keys() ^ b.keys()):
        print(f"MISSING in {path_b if key in a else path_a}: {key}")
        failed = True
    common = sorted(a.keys() & b.keys())
    identical = 0
    for key in common:
        x, y = a[key], b[key]
        if x.dtype != y.dtype or x.shape != y.shape:
            print(f"DIFFERS {key}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}")
        elif not torch.equal(bits(x), bits(y)):
            diff = max_abs_diff(x, y)
            note = "" if diff else " (the bits differ: a zero's sign or a NaN's payload)"
            print(f"DIFFERS {key}: max abs difference {diff:.3g}{note}")
        else:
            identical += 1
    print(f"compared {len(common)} tensors, {identical} identical, {len(common) - identical} differ, "
          f"{len(a.keys() ^ b.keys())} keys in only one dump")
    failed = failed or identical != len(common)
    print("DIFFERENT" if failed else "IDENTICAL")
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("dump", help="run the cases with the fusedrnn on sys.path").add_argument("out")
    cmp = sub.add_parser("compare", help="compare two dumps bitwise")
    cmp.add_argument("a")
    cmp.add_argument("b")
    args = parser.parse_args()
    if args.command == "dump":
        dump(args.out)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
