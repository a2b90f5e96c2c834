"""fusedrnn.backends: the CPU instruction set, the weight cache and scratch pool counters, the CUDA algorithm
switch (FUSEDRNN_ALGO) and the CUDA build facts."""

import ctypes
import os

import pytest
import torch

import fusedrnn
from fusedrnn import functional
from fusedrnn.backends import cpu, cuda

ALGO = "FUSEDRNN_ALGO"


@pytest.fixture
def restore_isa():
    before = cpu.isa()
    yield before
    assert cpu.set_isa(before)


@pytest.fixture
def no_algo(monkeypatch):
    """FUSEDRNN_ALGO unset for the test, and put back as it was afterwards."""
    monkeypatch.delenv(ALGO, raising=False)


def c_getenv(name):
    """The variable as the extension's getenv sees it (not Python's copy in os.environ)."""
    libc = ctypes.CDLL(None)
    libc.getenv.restype = ctypes.c_char_p
    value = libc.getenv(name.encode())
    return None if value is None else value.decode()


def random_lstm_weights(T, B, I, H, requires_grad=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g).requires_grad_(requires_grad)
            for shape in [(T, B, I), (4 * H, I), (4 * H, H)]]


def test_public_names():
    assert "backends" in fusedrnn.__all__
    assert fusedrnn.backends.cpu is cpu and fusedrnn.backends.cuda is cuda


def test_supported_isas_include_the_active_one_and_leave_it(restore_isa):
    supported = cpu.supported_isas()
    assert supported[0] == "default" and set(supported) <= {"default", "avx2", "avx512"}
    assert cpu.isa() in supported and cpu.isa() == restore_isa


def test_set_isa_round_trips(restore_isa):
    for name in ["default", "avx2", "avx512"]:
        if name in cpu.supported_isas():
            assert cpu.set_isa(name) and cpu.isa() == name
        else:
            before = cpu.isa()
            assert cpu.set_isa(name) is False and cpu.isa() == before  # refused: nothing changed
    assert cpu.set_isa(restore_isa) and cpu.isa() == restore_isa


def test_unknown_isa_raises_value_error(restore_isa):
    with pytest.raises(ValueError, match="'default', 'avx2' or 'avx512'"):
        cpu.set_isa("sse4")
    with pytest.raises(ValueError), cpu.use_isa("sse4"):
        pass
    assert cpu.isa() == restore_isa


def test_use_isa_restores_even_on_exception(restore_isa):
    target = "default" if restore_isa != "default" else cpu.supported_isas()[-1]
    if target == restore_isa:
        pytest.skip("this CPU runs only the portable kernels: nothing to switch to")
    with pytest.raises(KeyError), cpu.use_isa(target) as name:
        assert name == target and cpu.isa() == target
        raise KeyError("inside")
    assert cpu.isa() == restore_isa


def test_use_isa_refuses_an_unsupported_isa(restore_isa):
    missing = [name for name in ["avx2", "avx512"] if name not in cpu.supported_isas()]
    if not missing:
        pytest.skip("this CPU runs every instruction set")
    with pytest.raises(RuntimeError, match=missing[-1]), cpu.use_isa(missing[-1]):
        pass
    assert cpu.isa() == restore_isa


def test_weight_cache_counts_a_pack_then_a_hit():
    x, w_ih, w_hh = random_lstm_weights(5, 3, 8, 16)
    cpu.clear_weight_cache()
    start = cpu.weight_cache_stats()
    assert start["entries"] == 0
    with torch.no_grad():
        functional.lstm(x, None, w_ih, w_hh)
        first = cpu.weight_cache_stats()
        functional.lstm(x, None, w_ih, w_hh)
        second = cpu.weight_cache_stats()
    packed = first["packs"] - start["packs"]
    assert packed > 0 and first["hits"] == start["hits"] and first["entries"] == packed
    assert second["packs"] == first["packs"] and second["hits"] - first["hits"] == packed
    cpu.clear_weight_cache()
    assert cpu.weight_cache_stats()["entries"] == 0


def test_clear_scratch_pool_frees_the_idle_memory():
    x, w_ih, w_hh = random_lstm_weights(32, 8, 64, 128, requires_grad=True)  # temporaries of 256 KB and up
    y, _ = functional.lstm(x, None, w_ih, w_hh)
    y.sum().backward()
    held = cpu.scratch_pool_stats()
    assert held["allocations"] > 0 and held["idle_blocks"] > 0 and held["idle_bytes"] >= 256 << 10
    cpu.clear_scratch_pool()
    cleared = cpu.scratch_pool_stats()
    assert cleared["idle_blocks"] == 0 and cleared["idle_bytes"] == 0
    assert cleared["allocations"] == held["allocations"]  # counters since import are kept


def test_algorithm_round_trips_through_the_environment(no_algo):
    assert cuda.algorithm() == "auto"
    for name in ["step", "persistent"]:
        cuda.set_algorithm(name)
        assert cuda.algorithm() == name
        assert os.environ[ALGO] == name and c_getenv(ALGO) == name
    cuda.set_algorithm("auto")
    assert cuda.algorithm() == "auto" and ALGO not in os.environ and c_getenv(ALGO) is None


@pytest.mark.parametrize("value", ["", "auto"])
def test_empty_or_auto_variable_reads_as_auto(value, monkeypatch):
    monkeypatch.setenv(ALGO, value)
    assert cuda.algorithm() == "auto"


def test_use_algorithm_restores_unset(no_algo):
    with cuda.use_algorithm("persistent") as name:
        assert name == "persistent" and cuda.algorithm() == "persistent"
    assert ALGO not in os.environ


def test_use_algorithm_restores_a_value_even_on_exception(monkeypatch):
    monkeypatch.setenv(ALGO, "step")
    with pytest.raises(KeyError), cuda.use_algorithm("auto"):
        assert cuda.algorithm() == "auto" and ALGO not in os.environ
        raise KeyError("inside")
    assert os.environ[ALGO] == "step" and c_getenv(ALGO) == "step"


def test_unknown_algorithm_raises_value_error(monkeypatch):
    monkeypatch.setenv(ALGO, "step")
    with pytest.raises(ValueError, match="'auto', 'step' or 'persistent', got 'fastest'"):
        cuda.set_algorithm("fastest")
    with pytest.raises(ValueError), cuda.use_algorithm("fastest"):
        pass
    assert os.environ[ALGO] == "step"
    monkeypatch.setenv(ALGO, "fastest")  # as the CUDA ops would refuse it
    with pytest.raises(ValueError, match="got 'fastest'"):
        cuda.algorithm()


def test_algorithm_counts_name_each_direction_and_algorithm():
    counts = cuda.algorithm_counts()
    assert set(counts) == {"forward_step", "forward_persistent", "backward_step", "backward_persistent"}
    assert all(isinstance(n, int) and n >= 0 for n in counts.values())
    if not torch.cuda.is_available():
        assert not any(counts.values())


def test_build_facts_agree():
    assert cuda.is_built() == fusedrnn.built_with_cuda()
    if cuda.is_built():
        assert cuda.runtime_version() >= 11000
    else:
        assert cuda.runtime_version() == 0


def test_barrier_probe_needs_cuda():
    if cuda.is_built() and torch.cuda.is_available():
        assert cuda.barrier_microseconds(100) > 0
    else:
        assert cuda.barrier_microseconds() is None
