"""pytest benchmarks/ --benchmark-only: GPU cases (skipped without CUDA), torch.nn (cuDNN) and fusedrnn of
each case in one group."""

import itertools

import pytest
import torch

from conftest import bench_pair
from fusedrnn.bench.runner import Case

CASES = [Case(cell, dtype, 128, batch, hidden, 1, False, mode, "cuda")
         for cell, dtype, batch, hidden, mode in itertools.product(
             ["lstm", "gru"], ["float32", "bfloat16"], [1, 8, 64, 256], [256, 1024], ["inference", "training"])]
CASES += [Case("lstm", "float32", 128, 64, 512, 2, True, mode, "cuda") for mode in ["inference", "training"]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_cuda(benchmark, case, impl):
    bench_pair(benchmark, case, impl)
