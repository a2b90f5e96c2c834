"""Shared set-up for the pytest-benchmark files: one case is a pair of benchmarks (torch.nn and fusedrnn)
in one group, so that pytest-benchmark's table puts them side by side."""

import pytest
import torch

from fusedrnn.bench.runner import Case, build_pair, make_step


def bench_pair(benchmark, case: Case, impl: str):
    plain, fused, x = build_pair(case)
    step = make_step(case, plain if impl == "torch.nn" else fused, x)
    if case.device == "cuda":
        def timed():
            step()
            torch.cuda.synchronize()
    else:
        timed = step
    benchmark.group = case.label
    benchmark.extra_info.update({"impl": impl, "device": case.device})
    benchmark.pedantic(timed, rounds=10, warmup_rounds=2)


@pytest.fixture(params=["torch.nn", "fusedrnn"])
def impl(request):
    return request.param
