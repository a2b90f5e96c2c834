// Plain argument structs for the fused per-step passes: sizes, raw pointers, flags.
// Shared by the CPU and CUDA kernels; no torch includes. All matrices are row-major and
// contiguous with the row length given in the comment, H = hidden, P = output (proj or hidden).
//
// Workspace saved by a training forward, one row per packed row (accumulate dtype):
//   LSTM: [N, 5H] = activated i, f, g, o, then the new cell state c
//   GRU:  [N, 4H] = r, z, n, then the h-side n product hn = W_hn h + b_hn
//   RNN:  [N, H]  = the activated output h
#pragma once

#include <cstdint>

#include "cell_math.h"

namespace fusedrnn {

constexpr int kLstmGates = 4;
constexpr int kGruGates = 3;
constexpr int kLstmWorkspaceCols = 5;  // per hidden unit
constexpr int kGruWorkspaceCols = 4;

// Where a step's previous state comes from: rows [0, prev_rows) from the step visited before,
// rows [prev_rows, rows) from the initial state (see schedule.h).
template <typename T>
struct PrevState {
  const T* from_step;  // [prev_rows, stride]: that step's rows, already offset to the column
  const T* initial;    // [B, init_stride]
  int64_t prev_rows;
  int64_t stride;
  int64_t init_stride;

  FUSEDRNN_HD const T* row(int64_t r) const {
    return r < prev_rows ? from_step + r * stride : initial + r * init_stride;
  }
};

template <typename T>
struct LstmForwardStep {
  int64_t rows, hidden;
  const T* xproj;  // [rows, 4H]: x W_ih^T + b_ih
  const T* hh;     // [rows, 4H]: h W_hh^T
  const T* b_hh;   // [4H] or nullptr
  T* c;            // [rows, H]: previous cell state in, new cell state out
  T* h;            // [rows, H]: o * tanh(c) out (the state, or the input of the projection)
  T* y;            // [rows, H] or nullptr: a second copy of h (the layer output when not projecting)
  T* workspace;    // [rows, 5H] or nullptr (inference)
};

template <typename T>
struct LstmBackwardStep {
  int64_t rows, hidden;
  const T* dh;         // [rows, H]: gradient of o * tanh(c)
  T* dc;               // [rows, H]: gradient of c in, gradient of the previous c out
  const T* workspace;  // [rows, 5H]
  PrevState<T> c_prev;
  T* dgates;           // [rows, 4H]: gradients of the pre-activations
};

template <typename T>
struct GruForwardStep {
  int64_t rows, hidden;
  const T* xproj;  // [rows, 3H]: x W_ih^T + b_ih
  const T* hh;     // [rows, 3H]: h W_hh^T
  const T* b_hh;   // [3H] or nullptr
  T* h;            // [rows, H]: previous hidden state in, new one out
  T* y;            // [rows, H]: the layer output
  T* workspace;    // [rows, 4H] or nullptr (inference)
};

template <typename T>
struct GruBackwardStep {
  int64_t rows, hidden;
  T* dh;               // [rows, H]: gradient of h' in, direct part of the previous h's gradient out
  const T* workspace;  // [rows, 4H]
  PrevState<T> h_prev;
  T* dgates_ih;        // [rows, 3H]: gradients of x W_ih^T + b_ih
  T* dgates_hh;        // [rows, 3H]: gradients of h W_hh^T + b_hh
};

template <typename T>
struct RnnForwardStep {
  int64_t rows, hidden;
  Activation act;
  const T* xproj;  // [rows, H]
  const T* hh;     // [rows, H]
  const T* b_hh;   // [H] or nullptr
  T* h;            // [rows, H]: new hidden state
  T* y;            // [rows, H]
  T* workspace;    // [rows, H] or nullptr
};

template <typename T>
struct RnnBackwardStep {
  int64_t rows, hidden;
  Activation act;
  const T* dh;         // [rows, H]
  const T* workspace;  // [rows, H]
  T* dpre;             // [rows, H]
};

}  // namespace fusedrnn
