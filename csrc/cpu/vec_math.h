// SIMD math policy for cell_math.h on the CPU, and the row/vector loops of the fused passes.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>

namespace fusedrnn::cpu {

template <typename T>
struct VecMath {
  using V = at::vec::Vectorized<T>;
  static V sigmoid(V x) { return V(T(1)) / (V(T(1)) + x.neg().exp()); }
  static V tanh(V x) { return x.tanh(); }
  static V relu(V x) { return at::vec::maximum(x, V(T(0))); }  // propagates NaN like torch.relu
  static V relu_grad(V y) { return y.gt(V(T(0))); }            // 1 where y > 0, else 0
};

// n lanes (n <= V::size()) from p + j; zeros when p is null (an absent bias).
template <typename T>
inline at::vec::Vectorized<T> load(const T* p, int64_t j, int64_t n) {
  using V = at::vec::Vectorized<T>;
  return p ? V::loadu(p + j, n) : V(T(0));
}

template <typename T>
inline void store(const at::vec::Vectorized<T>& v, T* p, int64_t j, int64_t n) {
  v.store(p + j, static_cast<int>(n));
}

// f(j, n) over the columns [0, width) in SIMD-wide chunks; the last chunk may be partial.
template <typename T, typename F>
inline void for_each_vector(int64_t width, const F& f) {
  constexpr int64_t lanes = at::vec::Vectorized<T>::size();
  for (int64_t j = 0; j < width; j += lanes) f(j, std::min(lanes, width - j));
}

// f(row) for rows [0, rows), split over threads once there is enough work to pay for it.
template <typename F>
inline void parallel_rows(int64_t rows, int64_t row_elements, const F& f) {
  constexpr int64_t kElementsPerTask = 16384;
  const int64_t grain = std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(1, row_elements));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) f(r);
  });
}

}  // namespace fusedrnn::cpu
