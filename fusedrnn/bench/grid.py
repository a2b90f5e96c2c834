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
    autocast: bool = False  # float32 modules run under torch.autocast(device, dtype) for each dtype

    def cases(self, device: str) -> list[Case]:
        """The product, then the stacked cases."""
        return self.product(device) + self.stacked_cases(device)

    def product(self, device: str) -> list[Case]:
        """The combinations alone, without the stacked cases."""
        return [Case(cell, dtype, self.T, batch, hidden, layers, bidirectional, mode, device, self.autocast)
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

# GRIDS[device][size], size being "quick" (seconds), "default", "full" or "autocast" (mixed precision:
# float32 modules under torch.autocast, as a mixed-precision training loop runs them).
GRIDS: dict[str, dict[str, Grid]] = {
    "cpu": {
        "quick": Grid(("lstm", "gru"), ("float32",), 32, (1, 16), (128,)),
        "default": Grid(ALL_CELLS, ("float32",), 64, (1, 16, 64), (256,), stacked_at=(16, 256)),
        "full": Grid(ALL_CELLS, ("float32",), 100, (1, 8, 64), (256, 512, 1024), stacked_at=(16, 256)),
        "autocast": Grid(("lstm", "gru"), ("bfloat16",), 100, (1, 8, 64), (256, 1024), autocast=True),
    },
    "cuda": {
        "quick": Grid(("lstm", "gru"), CUDA_DTYPES, 128, (1, 64), (256, 1024)),
        "default": Grid(("lstm", "gru"), CUDA_DTYPES, 128, (1, 8, 64, 256), (256, 1024),
                        stacked_at=(64, 512)),
        "full": Grid(ALL_CELLS, CUDA_DTYPES + ("float16",), 128, (1, 8, 64, 256), (256, 1024),
                     stacked_at=(64, 512)),
        "autocast": Grid(("lstm", "gru"), ("float16", "bfloat16"), 128, (1, 8, 64, 256), (256, 1024),
                         autocast=True),
    },
}

# Step by step, as decoders, samplers and RL policies run: LOOP calls from a Python loop, each a cell
# call or a layer call with T = 1, the state fed back. (dtype, B, H) points; B = 1, H = 16 is the fixed
# cost of a call.
LOOP = 20
LOOP_CELLS = ("lstmcell", "grucell", "rnncell", "lstm", "gru")
LOOP_SIZES = (("float32", 1, 16), ("float32", 1, 256), ("float32", 32, 512), ("float32", 8, 1024),
              ("float64", 97, 51))


def loop_cases(device: str) -> list[Case]:
    """The step-by-step cases (float64 only on the CPU)."""
    return [Case(cell, dtype, 1, batch, hidden, mode=mode, device=device, loop=LOOP)
            for dtype, batch, hidden in LOOP_SIZES if device == "cpu" or dtype != "float64"
            for cell in LOOP_CELLS for mode in MODES]


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
