// The gradients of a layer's two linear maps, batched over every step after the backward loop, with
// the register-tiled kernel of the steps where it beats ATen's GEMM:
//   dx = dgates_ih W_ih,  dW_ih = dgates_ih^T x,  dW_hh = dgates_hh^T h_prev,  db = column sums.
// Threads split output rows, so each output element is one thread's fixed-order sum.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>

#include "bindings/sequence.h"
#include "cpu/packed_weights.h"
#include "cpu/passes.h"
#include "cpu/team.h"

namespace fusedrnn::cpu {

// out = a W for all of q's rows (W: q.panels, `panels` of them), threads taking blocks of rows.
template <typename T>
void parallel_column_product(const ColumnProduct<T>& q, int64_t panels) {
  constexpr int64_t kRowBlock = 48;  // a multiple of every tile height, so tiles never straddle slots
  const StepPasses<T>& kernels = step_passes<T>();
  const int64_t blocks = (q.rows + kRowBlock - 1) / kRowBlock;
  const int64_t slots = team_slots(blocks, q.rows * q.k * q.cols);
  run_team(slots, [&](int64_t slot_begin, int64_t slot_end, Team&) {
    for_each_share(slot_begin, slot_end, slots, blocks, [&](Share sh) {
      const int64_t first = sh.begin * kRowBlock, last = std::min(q.rows, sh.end * kRowBlock);
      if (last <= first) return;
      ColumnProduct<T> part = q;
      part.rows = last - first;
      part.a = q.a_transposed ? q.a + first : q.a + first * q.lda;
      part.out = q.out + first * q.ldo;
      kernels.column_product(part, 0, panels);
    });
  });
}

// a: [N, M] (or a^T when transposed: out = a^T b, a: [K, M]), b: [K, C] -> [rows, C].
template <typename T>
at::Tensor column_product_of(const at::Tensor& a, bool transposed, const at::Tensor& b) {
  const int64_t lanes = step_passes<T>().lanes;
  const at::Tensor panels = pack_columns(b, lanes);
  const int64_t rows = transposed ? a.size(1) : a.size(0), k = b.size(0), cols = b.size(1);
  at::Tensor out = at::empty({rows, cols}, b.options());
  if (rows == 0 || cols == 0) return out;
  if (k == 0) return out.zero_();
  const ColumnProduct<T> q{rows, k, cols, a.data_ptr<T>(), a.size(1), transposed, panels.data_ptr<T>(),
                           out.data_ptr<T>(), cols, false};
  parallel_column_product(q, panels.size(0));
  return out;
}

// d^T b: walking d's columns touches one cache line per row of d, and once d outgrows the TLB's
// reach (a few MB) every row is a page miss; ATen's GEMM packs d first and wins there.
template <typename T>
at::Tensor transposed_product(const at::Tensor& d, const at::Tensor& b) {
  constexpr int64_t kWalkableBytes = 4 << 20;
  if (d.numel() * static_cast<int64_t>(sizeof(T)) > kWalkableBytes) return at::mm(d.t(), b);
  return column_product_of<T>(d, true, b);
}

// dgates_ih: [N, G*H], dgates_hh: [N, G*H], x: [N, I], h_prev: [N, P], w_ih: [G*H, I]; all contiguous.
template <typename T>
LinearGrads linear_grads_cpu(const at::Tensor& dgates_ih, const at::Tensor& dgates_hh, const at::Tensor& x,
                             const at::Tensor& h_prev, const at::Tensor& w_ih, bool has_bias) {
  LinearGrads g;
  g.dx = column_product_of<T>(dgates_ih, false, w_ih);
  g.dw_ih = transposed_product<T>(dgates_ih, x);
  g.dw_hh = transposed_product<T>(dgates_hh, h_prev);
  g.db_ih = has_bias ? dgates_ih.sum(0) : at::empty({0}, x.options());
  g.db_hh = has_bias ? dgates_hh.sum(0) : at::empty({0}, x.options());
  return g;
}

}  // namespace fusedrnn::cpu
