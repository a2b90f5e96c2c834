// The input side of a layer, x W_ih^T for every packed row at once (no bias: the step kernels add
// b_ih), with the same register-tiled kernel as the recurrent product. Threads split the columns.
#pragma once

#include <ATen/ATen.h>

#include "cpu/packed_weights.h"
#include "cpu/passes.h"
#include "cpu/recurrence.h"
#include "cpu/scratch_pool.h"

namespace fusedrnn::cpu {

// Whether a layer folds x_t W_ih^T into each step (RecurrentProduct's input_panels) instead of
// one product over all steps first. Folding saves sending the [N, G*H] result through memory and
// back, but makes every step stream W_ih as well as W_hh: it pays from batch 4 while both weights
// stay cache-resident (<= 8 MB together: L3 is 32 MB on the machines measured, shared by the
// threads), and from batch 32 whatever their size, where a step is compute-bound (measured on
// the 2-core EPYC of benchmarks/results: LSTM H=1024 B=16 is 7% slower folded, B=64 4% faster).
inline bool fuse_input_product(int64_t batch, int64_t weight_bytes) {
  constexpr int64_t kMinBatch = 4, kComputeBoundBatch = 32, kCachedWeightBytes = int64_t{8} << 20;
  return batch >= kComputeBoundBatch || (batch >= kMinBatch && weight_bytes <= kCachedWeightBytes);
}

// x: [N, I], w_ih: [G*H, I] (w_ih_source: the caller's tensor, the cache key) -> [N, G*H].
template <typename T>
at::Tensor input_product(const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_ih_source) {
  const StepPasses<T>& kernels = step_passes<T>();
  const int64_t N = x.size(0), I = x.size(1), cols = w_ih.size(0);
  // Columns of W_ih^T in blocks of kPanelVectors * L are W_ih's rows packed as a one-gate layer's.
  const at::Tensor panels = packed_panels(w_ih_source, w_ih, PanelKind::GateRows, 1, kernels.lanes);
  at::Tensor out = scratch_empty({N, cols}, x.options());
  const ColumnProduct<T> q{N, I, cols, x.data_ptr<T>(), I, false, panels.data_ptr<T>(), out.data_ptr<T>(), cols, false};
  parallel_shares(panels.size(0), N * I * cols, [&](Share sh) { kernels.column_product(q, sh.begin, sh.end); });
  return out;
}

// The input side of a layer, as fuse_input_product decides: x W_ih^T for every step up
// front (xproj), or W_ih packed as forward panels to fold x_t W_ih^T into each step (panels).
struct InputSide {
  at::Tensor xproj;   // [N, G*H] (no bias), or undefined when folded
  at::Tensor panels;  // forward panels of W_ih, or undefined when not folded
  bool folded() const { return panels.defined(); }
};

// x: [N, I], w_ih: [G*H, I], w_hh: the layer's recurrent weight (its size counts towards the decision).
template <typename T>
InputSide input_side(const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_ih_source,
                     const at::Tensor& w_hh, int64_t gates, int64_t batch) {
  const int64_t weight_bytes = (w_ih.numel() + w_hh.numel()) * static_cast<int64_t>(sizeof(T));
  if (!fuse_input_product(batch, weight_bytes)) return {input_product<T>(x, w_ih, w_ih_source), {}};
  return {{}, packed_panels(w_ih_source, w_ih, PanelKind::GateRows, gates, step_passes<T>().lanes)};
}

}  // namespace fusedrnn::cpu
