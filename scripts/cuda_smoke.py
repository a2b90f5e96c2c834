"""Runs every CUDA kernel once on small, awkward shapes (for compute-sanitizer): each algorithm (step-wise
and persistent), cell, dtype, direction, projection, varlen and inference/training path, forward and
backward. Checks the results
against the float64 reference so that a silent wrong answer also fails; exits non-zero on any mismatch."""

import itertools
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from conftest import CELLS, forward_and_grads, make_case, run  # noqa: E402

from fusedrnn import backends, functional, reference  # noqa: E402

TOL = {torch.float32: 1e-4, torch.float16: 3e-2, torch.bfloat16: 3e-2}


def max_relative_error(actual, expected):
    actual, expected = actual.double().cpu(), expected.double()
    if expected.numel() == 0:
        return 0.0
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1.0)).item()


def main(argv):
    """--quick: the persistent kernels only, float32 and bfloat16, two direction/varlen combinations
    (for racecheck, which is slow)."""
    quick = "--quick" in argv
    torch.backends.cudnn.allow_tf32 = False  # strict float32 (the TF32 path has its own test)
    failures = 0
    # B=3 runs the FMA products, B=20 the tensor-core ones (16-bit dtypes), each under both algorithms.
    shapes = [(6, 3, 5, 37), (4, 20, 8, 40)]
    algorithms = ["persistent"] if quick else ["step", "persistent"]
    dtypes = [torch.float32, torch.bfloat16] if quick else list(TOL)
    layouts = [(False, False), (True, True)] if quick else list(itertools.product([False, True], repeat=2))
    for algorithm, (T, B, I, H), cell, dtype, (reverse, varlen) in itertools.product(
            algorithms, shapes, CELLS, dtypes, layouts):
        backends.cuda.set_algorithm(algorithm)
        case = make_case(cell, T, B, I, H, reverse=reverse, varlen=varlen, seed=1)
        ref_case = case.with_tensors([t.detach().to(dtype).double() for t in case.tensors()])
        cuda_case = case.with_tensors([t.detach().to(dtype).cuda() for t in case.tensors()])
        out, grads = forward_and_grads(functional, cuda_case)
        ref_out, ref_grads = forward_and_grads(reference, ref_case)
        with torch.no_grad():
            inference = run(functional, cuda_case)
        errors = [max_relative_error(a, e) for a, e in zip(out + grads + list(inference), ref_out + ref_grads + ref_out)]
        worst = max(errors)
        ok = worst <= TOL[dtype]
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {algorithm:10s} B={B:<2d} {cell:9s} {str(dtype):15s} reverse={reverse!s:5} varlen={varlen!s:5} "
              f"max rel err {worst:.1e}")
    torch.cuda.synchronize()
    print(f"smoke: {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
