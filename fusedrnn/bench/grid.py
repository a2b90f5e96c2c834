"""The benchmark grids, defined once: what `python -m fusedrnn.bench` runs (quick, default and full, per
device), what `pytest benchmarks/` runs, and the peak-memory cases. scripts/cpu_targets.py reads the
full CPU grid to pick the points it checks."""

from __future__ import annotations

import dataclasses
import itertools

from .runner import Case

MODES = ("inference", "training")


@dataclasses.dataclass(frozen=True)
class Grid:
    """Every combination of cells, dtypes, stacks, hidden sizes, batch sizes and modes (in that order) at
    one sequence length T, then, where stacked_at is set, 2-layer bidirectional cases at that one
    (batch, hidden) for each cell and mode in the first dtype."""

    cells: tuple[str, ...]
    dtypes: tuple[str, ...]
    T: int
    batches: tuple[int, ...]
    hiddens: tuple[int, ...]  # the input size is the same
    stacks: tuple[tuple[int, bool], ...] = ((1, False),)  # (layers, bidirectional)
    modes: tuple[str, ...] = MODES
    stacked_at: tuple[int, int] | None = None  # (batch, hidden)

    def cases(self, device: str) -> list[Case]:
        """The product, then the stacked cases."""
        return self.product(device) + self.stacked_cases(device)

    def product(self, device: str) -> list[Case]:
        """The combinations alone, without the stacked cases."""
        return [Case(cell, dtype, self.T, batch, hidden, layers, bidirectional, mode, device)
                for cell, dtype, (layers, bidirectional), hidden, batch, mode in itertools.product(
                    self.cells, self.dtypes, self.stacks, self.hiddens, self.batches, self.modes)]

    def stacked_cases(self, device: str) -> list[Case]:
        """The 2-layer bidirectional cases alone (none without stacked_at)."""
        if self.stacked_at is None:
            return []
        batch, hidden = self.stacked_at
        stacked = dataclasses.replace(self, dtypes=self.dtypes[:1], batches=(batch,), hiddens=(hidden,),
                                      stacks=((2, True),), stacked_at=None)
        return stacked.product(device)


ALL_CELLS = ("lstm", "gru", "rnn")
CUDA_DTYPES = ("float32", "bfloat16")

# GRIDS[device][size], size being "quick" (seconds), "default" or "full".
GRIDS: dict[str, dict[str, Grid]] = {
    "cpu": {
        "quick": Grid(("lstm", "gru"), ("float32",), 32, (1, 16), (128,)),
        "default": Grid(ALL_CELLS, ("float32",), 64, (1, 16, 64), (256,), stacked_at=(16, 256)),
        "full": Grid(ALL_CELLS, ("float32",), 100, (1, 8, 64), (256, 512, 1024), stacked_at=(16, 256)),
    },
    "cuda": {
        "quick": Grid(("lstm", "gru"), CUDA_DTYPES, 128, (1, 64), (256, 1024)),
        "default": Grid(("lstm", "gru"), CUDA_DTYPES, 128, (1, 8, 64, 256), (256, 1024),
                        stacked_at=(64, 512)),
        "full": Grid(ALL_CELLS, CUDA_DTYPES + ("float16",), 128, (1, 8, 64, 256), (256, 1024),
                     stacked_at=(64, 512)),
    },
}

# Peak memory of training forward + backward at T=512: training memory grows linearly in T, so a long
# sequence shows what each side keeps per step.
MEMORY = Grid(("lstm", "gru"), ("float32",), 512, (16,), (256,), modes=("training",))

# pytest benchmarks/ runs the default grids, but only these (cells, modes) of their stacked cases, so
# that the run stays short.
PYTEST_STACKED = {"cpu": (("lstm", "gru"), ("training",)), "cuda": (("lstm",), MODES)}


def pytest_cases(device: str) -> list[Case]:
    """The cases of benchmarks/test_<device>.py."""
    grid = GRIDS[device]["default"]
    cells, modes = PYTEST_STACKED[device]
    return grid.product(device) + dataclasses.replace(grid, cells=cells, modes=modes).stacked_cases(device)
