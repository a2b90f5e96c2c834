// Splits a step's rows over threads once there is enough work to pay for it.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace fusedrnn::cpu {

// f(begin, end) over rows [0, rows); row_elements: the columns each row's pass touches.
template <typename F>
inline void parallel_rows(int64_t rows, int64_t row_elements, const F& f) {
  constexpr int64_t kElementsPerTask = 16384;
  const int64_t grain = std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(1, row_elements));
  at::parallel_for(0, rows, grain, f);
}

}  // namespace fusedrnn::cpu
