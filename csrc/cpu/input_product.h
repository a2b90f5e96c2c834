// The input side of a layer, x W_ih^T for every packed row at once (no bias: the step kernels add
// b_ih), with the same register-tiled kernel as the recurrent product. Threads split the columns.
#pragma once

#include <ATen/ATen.h>

#include "cpu/packed_weights.h"
#include "cpu/passes.h"
#include "cpu/team.h"

namespace fusedrnn::cpu {

// From this batch size on, the LSTM and RNN fold x_t W_ih^T into each step (RecurrentProduct's
// input_panels): the step is compute-bound there, and the [N, G*H] GEMM result would only travel
// through memory. Below it, the GEMM over all steps keeps the serial per-step work small.
constexpr int64_t kFusedInputMinBatch = 16;

// x: [N, I], w_ih: [G*H, I] (w_ih_source: the caller's tensor, the cache key) -> [N, G*H].
// use_cache: inference (see packed_weights.h).
template <typename T>
at::Tensor input_product(const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_ih_source, bool use_cache) {
  const StepPasses<T>& kernels = step_passes<T>();
  const int64_t N = x.size(0), I = x.size(1), cols = w_ih.size(0);
  // Columns of W_ih^T in blocks of kPanelVectors * L are W_ih's rows packed as a one-gate layer's.
  const at::Tensor panels = packed_panels(w_ih_source, w_ih, PanelKind::GateRows, 1, kernels.lanes, use_cache);
  at::Tensor out = at::empty({N, cols}, x.options());
  const ColumnProduct<T> q{N, I, cols, x.data_ptr<T>(), I, false, panels.data_ptr<T>(), out.data_ptr<T>(), cols, false};
  const int64_t pieces = panels.size(0);
  const int64_t slots = team_slots(pieces, N * I * cols);
  run_team(slots, [&](int64_t slot_begin, int64_t slot_end, Team&) {
    for_each_share(slot_begin, slot_end, slots, pieces, [&](Share sh) { kernels.column_product(q, sh.begin, sh.end); });
  });
  return out;
}

}  // namespace fusedrnn::cpu
