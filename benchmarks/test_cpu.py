"""pytest benchmarks/ --benchmark-only: CPU cases, torch.nn and fusedrnn of each case in one group."""

import pytest

from conftest import bench_pair
from fusedrnn.bench.grid import pytest_cases

CASES = pytest_cases("cpu")


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_cpu(benchmark, case, impl):
    bench_pair(benchmark, case, impl)
