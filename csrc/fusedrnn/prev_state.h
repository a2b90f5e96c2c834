// Where each row of a step takes its previous state from, for the CPU and CUDA kernels; no torch
// includes.
#pragma once

#include <cstdint>

#include "fusedrnn/scalar_math.h"

namespace fusedrnn {

// Rows [0, prev_rows) come from the step visited before, rows [prev_rows, rows) from the initial
// state (see schedule.h).
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
