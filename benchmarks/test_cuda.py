"""pytest benchmarks/ --benchmark-only: GPU cases (skipped without CUDA), torch.nn (cuDNN) and fusedrnn of
each case in one group."""

import pytest
import torch

from conftest import bench_pair
from fusedrnn.bench.grid import pytest_cases

CASES = pytest_cases("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_cuda(benchmark, case, impl):
    bench_pair(benchmark, case, impl)
