"""pytest benchmarks/ --benchmark-only: CPU cases, torch.nn and fusedrnn of each case in one group."""

import itertools

import pytest

from conftest import bench_pair
from fusedrnn.bench.runner import Case

CASES = [Case(cell, "float32", 64, batch, 256, 1, False, mode, "cpu")
         for cell, batch, mode in itertools.product(["lstm", "gru", "rnn"], [1, 16, 64], ["inference", "training"])]
CASES += [Case(cell, "float32", 64, 16, 256, 2, True, "training", "cpu") for cell in ["lstm", "gru"]]


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_cpu(benchmark, case, impl):
    bench_pair(benchmark, case, impl)
