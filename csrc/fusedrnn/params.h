// Layout constants and the previous-state row lookup shared by the CPU and CUDA kernels; no torch
// includes. H = hidden, P = output (proj or hidden).
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

}  // namespace fusedrnn
