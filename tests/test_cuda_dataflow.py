"""The CUDA backward's data flow, emulated step for step with torch on the CPU.

The CUDA backward (csrc/cuda/step_kernels.cuh, backward_step_kernel) does not compute a step's
recurrent gradient where the CPU path does: launch k first forms R = dgates_{k+1} W_hh for the step
visited after k, splits its rows into step k's dh and h0's gradient (rows that started at step k+1),
then runs step k's gate math; a carry buffer holds the direct term (GRU: dh * z) and grad_hn; a last
product-only launch gives h0's gradient for the rows of the first visited step; with proj_size a
product-only launch, a GEMM through W_hr and a pointwise-only launch replace the one launch. This file
runs exactly that flow (same buffers, same row ranges, same formulas) in Python and checks it against
autograd through the reference, so the algorithm the kernels implement is tested even without a GPU.
The forward reads each step's previous h as the 16-bit kernels do (csrc/bindings/cuda.cpp): from two
[B, P] slots, step k writing slot k % 2 and reading slot (k + 1) % 2.
"""

import pytest
import torch

from conftest import CELLS, assert_close_relative, make_case, random_like, run
from fusedrnn import reference


def schedule(case):
    """(offset, rows, prev_offset, prev_rows) per step in visiting order, as csrc/fusedrnn/schedule.h."""
    if case.batch_sizes is None:
        sizes = [case.x.shape[1]] * case.x.shape[0]
    else:
        sizes = [int(b) for b in case.batch_sizes]
    offsets = [sum(sizes[:t]) for t in range(len(sizes))]
    order = list(range(len(sizes)))[::-1] if case.reverse else list(range(len(sizes)))
    steps = []
    for k, t in enumerate(order):
        prev = order[k - 1] if k > 0 else None
        steps.append((offsets[t], sizes[t], offsets[prev] if prev is not None else 0,
                      min(sizes[prev], sizes[t]) if prev is not None else 0))
    return steps


def prev_rows(values, initial, step):
    offset, rows, prev_offset, n_prev = step
    return torch.cat([values[prev_offset:prev_offset + n_prev], initial[n_prev:rows]])


def emulate(case, grad_y, grad_hn, grad_cn):
    """Forward with the reference formulas (saving the kernels' workspace), then the CUDA backward flow."""
    kind = case.cell.split("_")[0]
    act = case.cell.split("_")[1] if kind == "rnn" else None
    x = case.x.reshape(-1, case.x.shape[-1]).detach()
    w_ih, w_hh = case.w_ih.detach(), case.w_hh.detach()
    b_ih = case.b_ih.detach() if case.b_ih is not None else torch.zeros(w_ih.shape[0], dtype=x.dtype)
    b_hh = case.b_hh.detach() if case.b_hh is not None else torch.zeros(w_ih.shape[0], dtype=x.dtype)
    w_hr = case.w_hr.detach() if case.w_hr is not None else None
    h0, c0 = case.h0.detach(), case.c0.detach() if case.c0 is not None else None
    steps = schedule(case)
    N, P = x.shape[0], h0.shape[1]
    H = w_hh.shape[0] // {"lstm": 4, "gru": 3, "rnn": 1}[kind]

    # forward, keeping what the CUDA workspace keeps
    xproj = x @ w_ih.T + b_ih
    y = torch.zeros(N, P, dtype=x.dtype)
    slots = torch.full((2, h0.shape[0], P), float("nan"), dtype=x.dtype)
    ws = {}
    c = c0.clone() if c0 is not None else None
    for k, step in enumerate(steps):
        off, rows, _, n_prev = step
        hp = torch.cat([slots[(k + 1) % 2, :n_prev], h0[n_prev:rows]])
        hh = hp @ w_hh.T + b_hh
        xp = xproj[off:off + rows]
        if kind == "lstm":
            i, f, g, o = (xp + hh).chunk(4, 1)
            i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
            c[:rows] = f * c[:rows] + i * g
            h = o * c[:rows].tanh()
            ws[off] = (i, f, g, o, c[:rows].clone())
            y[off:off + rows] = h @ w_hr.T if w_hr is not None else h
        elif kind == "gru":
            xr, xz, xn = xp.chunk(3, 1)
            hr, hz, hn = hh.chunk(3, 1)
            r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
            n = (xn + r * hn).tanh()
            ws[off] = (r, z, n, hn)
            y[off:off + rows] = n + z * (hp - n)
        else:
            h = (xp + hh).tanh() if act == "tanh" else (xp + hh).relu()
            ws[off] = (h,)
            y[off:off + rows] = h
        slots[k % 2, :rows] = y[off:off + rows]

    # backward, launch by launch
    G = {"lstm": 4, "gru": 3, "rnn": 1}[kind]
    dgates = torch.zeros(N, G * H, dtype=x.dtype)
    dgates_hh = torch.zeros(N, G * H, dtype=x.dtype) if kind == "gru" else dgates
    carry = grad_hn.clone()
    dc = grad_cn.clone() if grad_cn is not None else None
    dh0 = torch.full_like(h0, float("nan"))
    dh_steps = torch.zeros(N, P, dtype=x.dtype)
    for k in range(len(steps) - 1, -2, -1):
        cur = steps[k] if k >= 0 else None
        nxt = steps[k + 1] if k + 1 < len(steps) else None
        R = torch.zeros(max(cur[1] if cur else 0, nxt[1] if nxt else 0), P, dtype=x.dtype)
        next_rows = next_prev = 0
        if nxt is not None:
            next_rows, next_prev = nxt[1], nxt[3]
            R[:next_rows] = dgates_hh[nxt[0]:nxt[0] + next_rows] @ w_hh
            dh0[next_prev:next_rows] = R[next_prev:next_rows] + carry[next_prev:next_rows]
        if cur is None:
            continue
        off, rows = cur[0], cur[1]
        recurrent = torch.where(torch.arange(rows)[:, None] < next_prev, R[:rows], torch.zeros_like(R[:rows]))
        dh = grad_y[off:off + rows] + carry[:rows] + recurrent
        if w_hr is not None:  # product-only launch, GEMM through W_hr, pointwise-only launch
            dh_steps[off:off + rows] = dh
            carry[:rows] = 0
            dh = dh @ w_hr
        if kind == "lstm":
            i, f, g, o, c_t = ws[off]
            c_prev = torch.cat([ws[cur[2]][4][:cur[3]], c0[cur[3]:rows]]) if cur[3] > 0 else c0[:rows]
            tanh_c = c_t.tanh()
            dct = dc[:rows] + dh * o * (1 - tanh_c ** 2)
            dgates[off:off + rows] = torch.cat([dct * g * i * (1 - i), dct * c_prev * f * (1 - f),
                                                dct * i * (1 - g * g), dh * tanh_c * o * (1 - o)], 1)
            dc[:rows] = dct * f
            direct = torch.zeros_like(dh)
        elif kind == "gru":
            r, z, n, hn = ws[off]
            hp = prev_rows(y, h0, cur)
            dxn = dh * (1 - z) * (1 - n * n)
            d_r, d_z = dxn * hn * r * (1 - r), dh * (hp - n) * z * (1 - z)
            dgates[off:off + rows] = torch.cat([d_r, d_z, dxn], 1)
            dgates_hh[off:off + rows] = torch.cat([d_r, d_z, dxn * r], 1)
            direct = dh * z
        else:
            (h,) = ws[off]
            dgates[off:off + rows] = dh * (1 - h * h) if act == "tanh" else dh * (h > 0)
            direct = torch.zeros_like(dh)
        if w_hr is None:
            carry[:rows] = direct
    dx = dgates @ w_ih
    h_prev = torch.cat([prev_rows(y, h0, s) for s in sorted(steps)])
    dw_hh = dgates_hh.T @ h_prev
    result = {"dx": dx.reshape(case.x.shape), "dh0": dh0, "dw_hh": dw_hh}
    if dc is not None:
        result["dc0"] = dc
    return y.reshape(*case.x.shape[:-1], P), result


@pytest.mark.parametrize("varlen,reverse", [(False, False), (True, False), (True, True), (False, True)])
@pytest.mark.parametrize("cell", CELLS)
def test_cuda_backward_flow_matches_autograd(cell, varlen, reverse):
    case = make_case(cell, 7, 5, 4, 6, varlen=varlen, reverse=reverse, seed=31)
    outputs = run(reference, case)
    grads_out = random_like(outputs, 3)
    names = ["dx", "dh0"] + (["dc0"] if case.c0 is not None else [])
    inputs = [case.x, case.h0] + ([case.c0] if case.c0 is not None else []) + [case.w_hh]
    expected = dict(zip(names + ["dw_hh"], torch.autograd.grad(outputs, inputs, grads_out)))
    y, actual = emulate(case, grads_out[0].reshape(-1, grads_out[0].shape[-1]), grads_out[1],
                        grads_out[2] if len(grads_out) > 2 else None)
    assert_close_relative(y, outputs[0].detach(), 1e-12, "y")
    for name, value in expected.items():
        assert_close_relative(actual[name], value, 1e-10, name)
