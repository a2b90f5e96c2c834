"""gradcheck in float64, torch.library.opcheck on every op, and torch.compile(fullgraph=True) against eager."""

import pytest
import torch

from conftest import CELLS, assert_close_relative, make_case, random_like, run
from fusedrnn import functional

ops = torch.ops.fusedrnn


@pytest.mark.parametrize("varlen,reverse,bias", [(False, False, True), (True, True, True), (True, False, False)])
@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck(cell, varlen, reverse, bias):
    case = make_case(cell, 4, 3, 2, 3, bias=bias, reverse=reverse, varlen=varlen, seed=5)

    def f(*tensors):
        return run(functional, case.rebind(tensors))

    assert torch.autograd.gradcheck(f, case.tensors(), eps=1e-6, atol=1e-8, rtol=1e-6)


def forward_args(case, training=True):
    if case.cell.startswith("lstm"):
        return (case.x, case.h0, case.c0, case.w_ih, case.w_hh, case.b_ih, case.b_hh, case.w_hr, case.batch_sizes,
                case.reverse, training)
    if case.cell == "gru":
        return (case.x, case.h0, case.w_ih, case.w_hh, case.b_ih, case.b_hh, case.batch_sizes, case.reverse,
                training)
    return (case.x, case.h0, case.w_ih, case.w_hh, case.b_ih, case.b_hh, case.batch_sizes, case.reverse,
            case.cell.split("_")[1], training)


def forward_op(cell):
    return {"lstm": ops.lstm_forward, "gru": ops.gru_forward, "rnn": ops.rnn_forward}[cell.split("_")[0]]


def backward_op_args(case):
    """Arguments of the backward op, from a training forward of the case."""
    with torch.no_grad():
        out = forward_op(case.cell)(*forward_args(case))
    y, workspace = out[0], out[-1]
    grads = random_like(out[:-1], 7)
    has_bias = case.b_ih is not None
    x, h0, w_ih, w_hh = case.x.detach(), case.h0.detach(), case.w_ih.detach(), case.w_hh.detach()
    if case.cell.startswith("lstm"):
        w_hr = case.w_hr.detach() if case.w_hr is not None else None
        return ops.lstm_backward, (*grads, x, h0, case.c0.detach(), w_ih, w_hh, w_hr, has_bias, case.batch_sizes,
                                   case.reverse, y, workspace)
    if case.cell == "gru":
        return ops.gru_backward, (*grads, x, h0, w_ih, w_hh, has_bias, case.batch_sizes, case.reverse, y, workspace)
    return ops.rnn_backward, (*grads, x, h0, w_ih, w_hh, has_bias, case.batch_sizes, case.reverse,
                              case.cell.split("_")[1], y, workspace)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("varlen", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_opcheck_forward(cell, varlen, training):
    case = make_case(cell, 5, 3, 4, 6, varlen=varlen, reverse=varlen, dtype=torch.float32, seed=8)
    if not training:  # the inference path saves nothing, so it is only called without grad
        case = case.with_tensors(case.tensors(), requires_grad=False)
    torch.library.opcheck(forward_op(cell).default, forward_args(case, training))


@pytest.mark.parametrize("varlen", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_opcheck_backward(cell, varlen):
    case = make_case(cell, 5, 3, 4, 6, varlen=varlen, dtype=torch.float32, seed=9)
    op, args = backward_op_args(case)
    torch.library.opcheck(op.default, args)


@pytest.mark.parametrize("cell", CELLS)
def test_single_row_step_gradcheck_and_opcheck(cell):
    """One step of one row (a cell call at batch 1) multiplies the unpacked weights on the CPU
    (cpu/layer.cpp, single_row_step): gradcheck and opcheck on that path too, at an H that is not a
    multiple of the vector width."""
    case = make_case(cell, 1, 1, 4, 11, seed=6)

    def f(*tensors):
        return run(functional, case.rebind(tensors))

    assert torch.autograd.gradcheck(f, case.tensors(), eps=1e-6, atol=1e-8, rtol=1e-6)
    torch.library.opcheck(forward_op(cell).default, forward_args(case, True))
    inference = case.with_tensors(case.tensors(), requires_grad=False)
    torch.library.opcheck(forward_op(cell).default, forward_args(inference, False))
    op, args = backward_op_args(case)
    torch.library.opcheck(op.default, args)


@pytest.mark.parametrize("steps,batch", [(1, 1), (3, 2)])
@pytest.mark.parametrize("cell", CELLS)
def test_backward_without_input_grad(cell, steps, batch):
    """When x needs no gradient the backward skips dx (input_grad=False, dx [0]); every other gradient
    is the same as with it, bit for bit (single-row path and batched path)."""
    case = make_case(cell, steps, batch, 4, 5, seed=12)
    tensors = case.tensors()
    grads_out = None
    results = []
    for x_requires_grad in (True, False):
        leaves = [t.detach().clone().requires_grad_(i > 0 or x_requires_grad) for i, t in enumerate(tensors)]
        outputs = run(functional, case.rebind(leaves))
        grads_out = grads_out or random_like(outputs, 13)
        wanted = [t for t in leaves if t.requires_grad]
        results.append(torch.autograd.grad(outputs, wanted, grads_out))
    with_x, without_x = results
    assert len(without_x) == len(with_x) - 1 and with_x[0].shape == tensors[0].shape
    for a, b in zip(with_x[1:], without_x):
        assert torch.equal(a, b)
    op, args = backward_op_args(case)
    dx = op(*args, input_grad=False)[0]
    assert dx.shape == (0,)
    torch.library.opcheck(op.default, args, {"input_grad": False})


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("varlen", [False, True])
def test_compile_fullgraph_matches_eager(cell, varlen):
    case = make_case(cell, 6, 3, 4, 5, varlen=varlen, reverse=True, dtype=torch.float32, seed=10)
    torch._dynamo.reset()

    def step(*tensors):
        outputs = run(functional, case.rebind(tensors))
        return sum((o * o).sum() for o in outputs)

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    leaves = [t.detach().clone().requires_grad_() for t in case.tensors()]
    eager_leaves = [t.detach().clone().requires_grad_() for t in case.tensors()]
    loss = compiled(*leaves)
    loss.backward()
    eager_loss = step(*eager_leaves)
    eager_loss.backward()
    assert_close_relative(loss.detach(), eager_loss.detach(), 1e-6, "loss")
    for a, e in zip(leaves, eager_leaves):
        assert_close_relative(a.grad, e.grad, 1e-6, "grad")


def test_compile_inductor_lstm_matches_eager():
    case = make_case("lstm_proj", 5, 2, 3, 4, varlen=True, dtype=torch.float32, seed=11)
    torch._dynamo.reset()

    def step(*tensors):
        y, h, c = run(functional, case.rebind(tensors))
        return torch.tanh(y).sum() + h.sum() * c.sum()

    compiled = torch.compile(step, fullgraph=True)
    leaves = [t.detach().clone().requires_grad_() for t in case.tensors()]
    eager_leaves = [t.detach().clone().requires_grad_() for t in case.tensors()]
    compiled(*leaves).backward()
    step(*eager_leaves).backward()
    for a, e in zip(leaves, eager_leaves):
        assert_close_relative(a.grad, e.grad, 1e-5, "grad")


def test_backward_in_no_grad_forward_is_refused():
    case = make_case("lstm", 3, 2, 3, 4, seed=12)
    out = ops.lstm_forward(*forward_args(case, training=False))
    with pytest.raises(RuntimeError, match="training=True"):
        out[0].sum().backward()


def test_gradient_through_h_n_only():
    case = make_case("gru", 6, 3, 4, 5, varlen=True, seed=13)
    _, h_n = functional.gru(case.x, case.h0, case.w_ih, case.w_hh, case.b_ih, case.b_hh,
                            batch_sizes=case.batch_sizes)
    grads = torch.autograd.grad(h_n.sum(), case.tensors())
    from fusedrnn import reference
    _, ref_h_n = reference.gru(case.x, case.h0, case.w_ih, case.w_hh, case.b_ih, case.b_hh,
                               batch_sizes=case.batch_sizes)
    ref_grads = torch.autograd.grad(ref_h_n.sum(), case.tensors())
    for a, e in zip(grads, ref_grads):
        assert_close_relative(a, e, 1e-10)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_opcheck_with_strided_inputs(cell):
    """Transposed (batch-first) inputs: the fake kernels must report the contiguous outputs the kernels make."""
    case = make_case(cell, 5, 3, 4, 6, dtype=torch.float32, seed=15)
    strided_x = case.x.detach().transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()
    case = case.rebind([strided_x] + case.tensors()[1:])
    assert not case.x.is_contiguous()
    torch.library.opcheck(forward_op(cell).default, forward_args(case))
    op, args = backward_op_args(case)
    torch.library.opcheck(op.default, args)
