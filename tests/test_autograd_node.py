"""The autograd node a fused forward records (csrc/bindings/autograd.cpp, LayerBackward) behaves as torch's
own nodes do: saved tensors are checked and freed, saved-tensor hooks and checkpointing see them, and the
graph is inspectable."""

import pytest
import torch
import torch.utils.checkpoint

import fusedrnn


def lstm_and_input(seed=0):
    torch.manual_seed(seed)
    module = fusedrnn.LSTM(3, 4, num_layers=2)
    x = torch.randn(5, 2, 3, requires_grad=True)
    return module, x


def grads_of(module, x, loss):
    return torch.autograd.grad(loss, [x, *module.parameters()])


def test_backward_twice_needs_retain_graph():
    module, x = lstm_and_input()
    loss = module(x)[0].sum()
    once = grads_of(module, x, loss)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        grads_of(module, x, loss)

    loss = module(x)[0].sum()
    first = torch.autograd.grad(loss, [x, *module.parameters()], retain_graph=True)
    second = grads_of(module, x, loss)
    for a, b, c in zip(once, first, second):
        assert torch.equal(a, b) and torch.equal(b, c)


def test_input_changed_in_place_after_forward_is_an_error():
    module, x = lstm_and_input()
    inner = x * 2  # a saved input that is not a leaf can be changed in place
    loss = module(inner)[0].sum()
    inner.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_saved_tensor_hooks_see_the_saved_tensors():
    module, x = lstm_and_input()
    expected = grads_of(module, x, module(x)[0].sum())
    packed, unpacked = [], []

    def pack(t):
        packed.append(t.shape)
        return t.clone()  # what offloading hooks do: the node must use what unpack returns

    def unpack(t):
        unpacked.append(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        loss = module(x)[0].sum()
    got = grads_of(module, x, loss)
    assert len(packed) >= 2 * 8 and len(unpacked) == len(packed)  # 2 layers: x, h0, c0, 4 weights, workspace
    for a, b in zip(expected, got):
        assert torch.equal(a, b)


def test_checkpoint_matches_plain_backward():
    module, x = lstm_and_input()
    expected = grads_of(module, x, module(x)[0].sum())
    loss = torch.utils.checkpoint.checkpoint(lambda t: module(t)[0], x, use_reentrant=False).sum()
    for a, b in zip(expected, grads_of(module, x, loss)):
        assert torch.equal(a, b)


def test_graph_is_inspectable_and_node_hooks_run():
    torch.manual_seed(1)
    cell = fusedrnn.GRUCell(3, 4, bias=False)
    x, h = torch.randn(2, 3, requires_grad=True), torch.randn(2, 4)
    out = cell(x, h)
    node = out.grad_fn
    assert "gru_forward" in node.name()
    # x, h0, w_ih, w_hh, b_ih, b_hh: edges to x and both weights, none to h0 (no grad) or the absent biases
    edges = [type(fn).__name__ if fn is not None else None for fn, _ in node.next_functions]
    assert len(edges) == 6 and edges[0] is not None and edges[1] is None and edges[4:] == [None, None]
    seen = []
    node.register_prehook(lambda grads: seen.append("pre"))
    node.register_hook(lambda grads_in, grads_out: seen.append("post"))
    out.sum().backward()
    assert seen == ["pre", "post"] and x.grad is not None and cell.weight_hh.grad is not None
