// One layer in one direction over a whole sequence, as the bindings hand it to a backend
// (cpu/layer.h, cuda/layer.h) once the arguments are checked, and what the backend returns.
//
// x is dense [T, B, I], or packed [N, I] when batch_sizes ([T] int64 on the CPU, non-increasing, as in
// PackedSequence) is given. P = proj_size when w_hr is given, else H. Tensors are as the op received
// them (any strides, the caller's dtype); each backend brings them to the layout and dtype it runs in.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "fusedrnn/cell.h"

namespace fusedrnn {

using OptTensor = std::optional<at::Tensor>;

// float32 for half/bfloat16 (the kernels accumulate and keep their workspace in it), else the dtype.
inline at::ScalarType accumulate_dtype(at::ScalarType dtype) {
  return (dtype == at::kHalf || dtype == at::kBFloat16) ? at::kFloat : dtype;
}

struct LayerShape {
  int64_t T, B, N, I, H, P;  // steps, batch, packed rows, input, hidden, output (proj or hidden) sizes
  bool packed;               // batch_sizes given: x is [N, I], else [T, B, I]
};

struct LayerInputs {
  CellId cell;
  Activation act;  // cells that take a nonlinearity; Tanh otherwise
  at::Tensor x;    // [T, B, I] or [N, I]
  at::Tensor h0;   // [B, P]
  OptTensor c0;    // [B, H]: cells with a cell state
  at::Tensor w_ih, w_hh;  // [G*H, I], [G*H, P]
  OptTensor b_ih, b_hh;   // [G*H]; absent without bias (and always in a backward)
  OptTensor w_hr;         // [P, H]: projectable cells with proj_size
  OptTensor batch_sizes;  // [T] int64 CPU tensor, packed input only
  bool reverse;
  LayerShape shape;
};

// y has x's layout with P features; workspace: [N, W*H] in the accumulate dtype, [0] for inference.
struct LayerOutputs {
  at::Tensor y, h_n, c_n, workspace;  // c_n undefined without a cell state
};

// What a backward receives beyond the forward's inputs.
struct LayerGradInputs {
  at::Tensor grad_y, grad_hn;
  OptTensor grad_cn;  // cells with a cell state
  at::Tensor y, workspace;
  bool has_bias;
  bool input_grad;  // compute dx; without it dx is [0]
};

// Gradients in input order; dx is [0] without input_grad, bias gradients are [0] without bias, dw_hr [0] without projection, dc0
// undefined without a cell state.
struct LayerGrads {
  at::Tensor dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr;
};

}  // namespace fusedrnn
