// Arguments of the CUDA step kernels (torch-free; cuda/layer.cpp fills them). Storage type T is float,
// __half or __nv_bfloat16; all math, the cell state, the workspace and the gate gradients are float.
// The recurrence itself also stays float: the input projection and the h a step starts from are float
// (for 16-bit storage a float copy of h, see h_float), so the only rounding to T is of the outputs.
// A relu RNN needs this: its gradient depends on the sign of every pre-activation, and rounding h to
// 16 bits between steps flips enough signs to move the input gradient by 12-24% of its largest value
// (CPU emulation, bfloat16, T = 129, H = 256).
// The tensor-core products (the persistent MMA product, the step-wise cuBLAS GEMM for 16-bit T) round
// their operands to T anyway; they read h as stored (y, h0), and a 16-bit relu RNN uses neither.
// G = the cell's gates per hidden unit, H = hidden, P = layer output size (proj or H). The launches are
// templates over the cell (fusedrnn/cells.h), instantiated once per cell in its own .cu file.
#pragma once

#include <cuda_runtime.h>

#include "fusedrnn/prev_state.h"
#include "fusedrnn/scalar_math.h"

namespace fusedrnn::cuda {

// One forward step: gates = h_prev W_hh^T (+ xproj + b_hh), then the cell math. The step-wise
// algorithm forms h_prev W_hh^T with cuBLAS (recurrent); the persistent kernel from w_hh on chip.
template <typename T>
struct ForwardStepArgs {
  int rows;             // active batch rows at this step
  int hidden;           // H
  int out;              // P: width of h_prev (and of h when not projecting)
  Activation act;       // cells that take a nonlinearity
  PrevState<float> h_prev;  // rows of h_prev: [prev_rows, P] from the previous step (y, or its float
                            // copy for 16-bit T), the rest h0 [B, P] (as float)
  PrevState<T> h_prev_stored;  // instead of h_prev (which is then all nullptr): y and h0 as stored.
                               // For the tensor-core product, whose operands round h to T anyway.
  const T* w_hh;        // [H * G, P]: gate-interleaved, row u * G + g holds W_hh[g * H + u] (persistent)
  PrevState<float> recurrent;  // step-wise: row r of h_prev W_hh^T, [rows, G * H] (column g * H + u):
                               // rows [0, prev_rows) from this step's GEMM, the rest from h0 W_hh^T [B, G * H]
  const float* xproj;   // [rows, G * H]: x W_ih^T + b_ih of this step
  const T* b_hh;        // [G * H] or nullptr
  float* c;             // [B, H]: the cell state of cells that have one, updated in place (rows < rows)
  T* h_out;             // [rows, H]: the new h (y rows), or o * tanh(c) when projecting
  T* h_state;           // [B, H] or nullptr: latest h of every row (becomes h_n); nullptr when projecting
  float* h_float;       // [rows, H] or nullptr: the new h in float, the next step's h_prev (16-bit T
                        // without projection); nullptr when h_prev reads y itself (float T)
  float* workspace;     // [rows, W * H] or nullptr (inference): the cell's workspace columns
};

// One backward step (see backward kernel): the recurrent gradient R = dgates_next W_hh of the step
// processed after this one (step-wise: from cuBLAS, `recurrent`; persistent: from w_hh_t on chip), then
// this step's gate gradients.
template <typename T>
struct BackwardStepArgs {
  int rows;                  // active rows of this step; 0 on the last, product-only launch
  int hidden;                // H
  int out;                   // P
  Activation act;            // cells that take a nonlinearity
  const float* dgates_next;  // [next_rows, G * H]: h-side gate gradients of the next processed step, or
                             // nullptr (persistent)
  const float* recurrent;    // step-wise: [next_rows, P], R = dgates_next W_hh; nullptr: no product
  int next_rows;             // rows of that step
  int next_prev_rows;        // its rows [0, next_prev_rows) read this step's h; the others read h0
  const T* w_hh_t;           // [P, G * H]: W_hh transposed (persistent)
  float* dh0;                // [B, P]: gradient of h0, written for rows [next_prev_rows, next_rows)
  float* carry;              // [B, P]: the direct part of dh from later steps (starts as grad_hn)
  const T* grad_y;           // [rows, P]: gradient of this step's output
  float* dh_total;           // [rows, P] or nullptr: where the product-only mode writes this step's dh
  const float* dh_cell;      // [rows, H] or nullptr: the pointwise-only mode's dh (after back-projection)
  bool pointwise;            // run the gate-gradient part (false: product only)
  const float* workspace;    // [rows, W * H]: this step's saved activations
  PrevState<float> c_prev;   // cells with c: c of the previous step (its workspace column) or c0
  PrevState<T> h_prev;       // cells with h_feeds_through: h of the previous step (y rows) or h0
  float* dc;                 // [B, H]: cell-state gradient of cells with c, updated in place
  float* dgates;             // [rows, G * H]: gate gradients (the x side for cells with an input_apart gate)
  float* dgates_hh;          // [rows, G * H]: the h side's for cells with an input_apart gate; else nullptr
};

template <typename Cell, typename T>
cudaError_t launch_forward_step(const ForwardStepArgs<T>& args, cudaStream_t stream);

template <typename Cell, typename T>
cudaError_t launch_backward_step(const BackwardStepArgs<T>& args, cudaStream_t stream);

}  // namespace fusedrnn::cuda
