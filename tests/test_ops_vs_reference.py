"""The fused CPU ops against fusedrnn.reference: forward and every gradient, over awkward sizes and flags."""

import itertools

import pytest
import torch

from conftest import CELLS, TOLERANCE, assert_close_relative, forward_and_grads, make_case, run
from fusedrnn import backends, functional, reference

SIZES = list(itertools.product([1, 2, 7, 33], [1, 3, 8], [1, 5, 32, 67]))  # T, B, H
FLAGS = list(itertools.product([True, False], [False, True], [False, True]))  # bias, reverse, varlen


def check_against_reference(case, dtype):
    fused_case = case.to(dtype)
    ref_case = case.to(torch.float64)
    fused_out, fused_grads = forward_and_grads(functional, fused_case)
    ref_out, ref_grads = forward_and_grads(reference, ref_case)
    tol = TOLERANCE[dtype]
    for name, a, e in zip(["y", "h_n", "c_n"], fused_out, ref_out):
        assert a.dtype == dtype, f"{name} dtype {a.dtype}"
        assert_close_relative(a, e, tol, name)
    for i, (a, e) in enumerate(zip(fused_grads, ref_grads)):
        assert a.dtype == dtype, f"grad {i} dtype {a.dtype}"
        assert_close_relative(a, e, tol, f"grad of input {i}")


@pytest.mark.parametrize("bias,reverse,varlen", FLAGS)
@pytest.mark.parametrize("T,B,H", SIZES)
@pytest.mark.parametrize("cell", CELLS)
def test_float64_matches_reference(cell, T, B, H, bias, reverse, varlen, cpu_isa):
    case = make_case(cell, T, B, H + 2, H, bias=bias, reverse=reverse, varlen=varlen, seed=T * 1000 + B * 100 + H)
    check_against_reference(case, torch.float64)


REDUCED_SIZES = [(1, 1, 1), (2, 3, 5), (7, 8, 32), (33, 3, 67), (33, 8, 5)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("bias,reverse,varlen", FLAGS)
@pytest.mark.parametrize("T,B,H", REDUCED_SIZES)
@pytest.mark.parametrize("cell", CELLS)
def test_low_precision_matches_reference(cell, T, B, H, bias, reverse, varlen, dtype, cpu_isa):
    case = make_case(cell, T, B, H + 3, H, bias=bias, reverse=reverse, varlen=varlen, seed=T + B + H)
    # bfloat16 inputs are first rounded, so that both sides see the same values
    case = case.to(dtype)
    check_against_reference(case, dtype)


@pytest.mark.parametrize("proj", [1, 3, 40])
def test_lstm_projection_sizes(proj):
    case = make_case("lstm_proj", 9, 4, 6, 32, proj=proj, varlen=True, seed=proj)
    assert case.w_hr.shape == (proj, 32)
    check_against_reference(case, torch.float64)


@pytest.mark.parametrize("cell", CELLS)
def test_inference_saves_no_workspace(cell):
    case = make_case(cell, 5, 3, 4, 6, seed=3)
    with torch.no_grad():
        fused, ref = run(functional, case), run(reference, case)
    for a, e in zip(fused, ref):
        assert_close_relative(a, e, 1e-10)
    ops = torch.ops.fusedrnn
    if cell.startswith("lstm"):
        out = ops.lstm_forward(case.x, case.h0, case.c0, case.w_ih, case.w_hh, case.b_ih, case.b_hh, case.w_hr,
                               None, False, False)
    elif cell == "gru":
        out = ops.gru_forward(case.x, case.h0, case.w_ih, case.w_hh, case.b_ih, case.b_hh, None, False, False)
    else:
        out = ops.rnn_forward(case.x, case.h0, case.w_ih, case.w_hh, case.b_ih, case.b_hh, None, False,
                              cell.split("_")[1], False)
    assert out[-1].numel() == 0


def test_backward_without_workspace_is_a_clear_error():
    case = make_case("gru", 3, 2, 4, 5, seed=4)
    ops = torch.ops.fusedrnn
    with torch.no_grad():
        y, h_n, ws = ops.gru_forward(case.x, case.h0, case.w_ih, case.w_hh, case.b_ih, case.b_hh, None, False, False)
    with pytest.raises(RuntimeError, match="training=True"):
        ops.gru_backward(torch.randn_like(y), torch.randn_like(h_n), case.x, case.h0, case.w_ih, case.w_hh, True,
                         None, False, y, ws)


def test_repeated_runs_are_bitwise_equal(cpu_isa):
    case = make_case("lstm_proj", 17, 5, 7, 33, varlen=True, seed=11).to(torch.float32)
    first = forward_and_grads(functional, case)
    second = forward_and_grads(functional, case)
    for a, b in zip(first[0] + first[1], second[0] + second[1]):
        assert torch.equal(a, b)


def test_inputs_are_not_modified():
    case = make_case("lstm", 6, 3, 4, 5, varlen=True, seed=12)
    before = [t.detach().clone() for t in case.tensors()] + [case.batch_sizes.clone()]
    forward_and_grads(functional, case)
    after = [t.detach() for t in case.tensors()] + [case.batch_sizes]
    for a, b in zip(before, after):
        assert torch.equal(a, b)


def test_non_contiguous_inputs():
    case = make_case("gru", 6, 4, 5, 7, seed=13)
    expected = forward_and_grads(reference, case)
    # the same values behind transposed / strided storage
    strided = case.with_tensors([t.detach().transpose(0, -1).contiguous().transpose(0, -1) if t.dim() > 1
                                 else t.detach().repeat_interleave(2)[::2] for t in case.tensors()])
    assert not strided.x.is_contiguous()
    actual = forward_and_grads(functional, strided)
    for a, e in zip(actual[0] + actual[1], expected[0] + expected[1]):
        assert_close_relative(a, e, 1e-10)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_instruction_sets_agree(isa):
    """The vectorised kernels and the portable ones compute the same function (to rounding)."""
    if isa not in backends.cpu.supported_isas():
        pytest.skip(f"this CPU lacks {isa}")
    case = make_case("lstm", 9, 4, 5, 37, varlen=True, seed=14).to(torch.float32)
    with backends.cpu.use_isa(isa):
        assert backends.cpu.isa() == isa
        vectorised = forward_and_grads(functional, case)
    with backends.cpu.use_isa("default"):
        assert backends.cpu.isa() == "default"
        portable = forward_and_grads(functional, case)
    for a, b in zip(vectorised[0] + vectorised[1], portable[0] + portable[1]):
        assert_close_relative(a, b, 1e-5)
