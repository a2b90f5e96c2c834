// What a cell is. Each cell (lstm.h, gru.h, rnn.h) is one struct holding its traits and its math, and
// every backend kernel is generic over it; cells.h lists them. No torch includes.
//
// Traits (static constexpr members):
//   id                  its CellId
//   name                the op prefix: "<name>_forward" and "<name>_backward" (csrc/ops.cpp)
//   gates               G: rows of W_ih and W_hh per hidden unit, in PyTorch's gate order
//   states              1 (h) or 2 (h and the cell state c)
//   workspace_cols      values saved per hidden unit by a training forward, in the accumulate dtype
//   saved_c             the workspace column holding the new c (states == 2), else -1
//   input_apart         a gate whose input side x W_ih^T + b_ih stays apart from its hidden side
//                       W_hh h + b_hh (GRU's n), else -1; such a cell has separate x-side and
//                       h-side gate gradients
//   h_feeds_through     h' depends on h directly, not only through W_hh (GRU: z * h), so the
//                       previous h's gradient has a direct part besides dgates W_hh
//   projectable         takes proj_size (w_hr: h' = W_hr (cell output))
//   takes_nonlinearity  takes 'tanh' or 'relu' (the op has a nonlinearity argument)
//
// Math, one hidden unit of one row (V: a scalar, or a SIMD vector of units), over M, a math policy
// (scalar_math.h), through a view the backend provides:
//   forward(u, act) -> h' (before any projection), with
//     u.sum(g)      gate g's whole pre-activation: x W_ih^T + b_ih + h W_hh^T + b_hh (the backend's
//                   summation order; not called for the input_apart gate)
//     u.input(g), u.hidden(g)  the two sides apart
//     u.h_prev()    the previous h of this unit (read by cells with h_feeds_through)
//     u.c()         the previous cell state; u.set_c(v) writes the new one (states == 2)
//     u.save(col, v) stores workspace column col (a no-op for inference)
//   backward(dh, u, act) -> the direct part of the previous h's gradient (zero unless
//   h_feeds_through), with dh the gradient arriving at h' and
//     u.saved(col)  workspace column col of the forward
//     u.h_prev(), u.c_prev()  the step's previous h and c
//     u.dc(), u.set_dc(v)     the cell state's gradient in, the previous one's out (states == 2)
//     u.set_dgate(g, v)       gradient of gate g's pre-activation (both sides)
//     u.set_dgate_apart(g, dx, dh)  the input_apart gate's gradients, input side and hidden side
// A cell reads all its inputs first, computes, and writes last: a backend's partial-vector loads and
// stores branch, and a multiply can only fuse with an add in the same basic block, so interleaving
// them changes where the compiler forms FMAs, and with it the results' last bits.
#pragma once

#include "fusedrnn/scalar_math.h"

namespace fusedrnn {

enum class CellId : int { Lstm = 0, Gru = 1, Rnn = 2 };

}  // namespace fusedrnn
