// The order in which a layer visits its time steps, and where each step's rows live.
//
// Every sequence is handled in packed layout: step t owns rows [offset_t, offset_t + batch_sizes[t])
// of a [N, features] tensor, N = sum(batch_sizes). A dense [T, B, F] input is the special case
// batch_sizes = [B] * T. batch_sizes is non-increasing (PackedSequence order), so at every step the
// active rows are a prefix [0, batch_sizes[t]) of the batch. Host-only, no torch includes.
#pragma once

#include <cstdint>
#include <vector>

namespace fusedrnn {

struct Step {
  int64_t t;            // time index
  int64_t offset;       // first packed row of this step
  int64_t rows;         // active batch rows: batch_sizes[t]
  int64_t prev_offset;  // first packed row of the step visited just before this one
  int64_t prev_rows;    // rows [0, prev_rows) take their previous state from that step;
                        // rows [prev_rows, rows) start here and take it from the initial state
};

// Steps in visiting order: t = 0..T-1, or T-1..0 when reverse.
inline std::vector<Step> make_schedule(const int64_t* batch_sizes, int64_t T, bool reverse) {
  std::vector<int64_t> offsets(T + 1, 0);
  for (int64_t t = 0; t < T; ++t) offsets[t + 1] = offsets[t] + batch_sizes[t];

  std::vector<Step> steps;
  steps.reserve(T);
  for (int64_t k = 0; k < T; ++k) {
    const int64_t t = reverse ? T - 1 - k : k;
    Step s{t, offsets[t], batch_sizes[t], 0, 0};
    if (k > 0) {
      const int64_t prev_t = reverse ? t + 1 : t - 1;
      s.prev_offset = offsets[prev_t];
      s.prev_rows = batch_sizes[prev_t] < s.rows ? batch_sizes[prev_t] : s.rows;
    }
    steps.push_back(s);
  }
  return steps;
}

}  // namespace fusedrnn
