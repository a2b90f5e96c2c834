// The gradients of a layer's two linear maps, batched over every step after the backward loop, with
// the register-tiled kernel of the steps (dW through ATen's GEMM at large sizes, see below):
//   dx = dgates_ih W_ih,  dW_ih = dgates_ih^T x,  dW_hh = dgates_hh^T h_prev,  db = column sums.
// Threads split output rows, so each output element is one thread's fixed-order sum.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>

#include "sequence/sequence.h"
#include "cpu/packed_weights.h"
#include "cpu/passes.h"
#include "cpu/recurrence.h"
#include "cpu/scratch_pool.h"

namespace fusedrnn::cpu {

// out = a W for all of q's rows (W: q.panels, `panels` of them). Threads take equal shares of rows, in
// multiples of every tile height (AVX-512: 6, AVX2: 2), so that no thread waits for another's extra block
// (blocks of 48 rows had 800 rows as 9 + 8 blocks, 256 as 3 + 3 with 48 + 48 + 16). Within a share, each
// block of rows goes through every panel before the next block, so its rows of a are read from memory
// once (with panels outermost, a [N, 4H] gradient matrix would stream from DRAM once per panel).
template <typename T>
void parallel_column_product(const ColumnProduct<T>& q, int64_t panels) {
  constexpr int64_t kRowUnit = 6;
  constexpr int64_t kRowBlock = 8 * kRowUnit;
  const StepPasses<T>& kernels = step_passes<T>();
  const int64_t units = (q.rows + kRowUnit - 1) / kRowUnit;
  // a product over fewer rows than kOutputStoreMacs (a single step's dW) is bound by storing out
  parallel_shares(units, q.rows * std::max(q.k, kOutputStoreMacs) * q.cols, [&](Share sh) {
    const int64_t share_end = std::min(q.rows, sh.end * kRowUnit);
    for (int64_t first = sh.begin * kRowUnit; first < share_end; first += kRowBlock) {
      const int64_t last = std::min(share_end, first + kRowBlock);
      ColumnProduct<T> part = q;
      part.rows = last - first;
      part.a = q.a_transposed ? q.a + first : q.a + first * q.lda;
      part.out = q.out + first * q.ldo;
      kernels.column_product(part, 0, panels);
    }
  });
}

// out = a b, or a^T b when transposed, through the tiled kernel; out += ... when accumulate.
// a: [rows, k] (or [k, rows]), b: [k, cols], out: [rows, cols] contiguous.
template <typename T>
void tiled_product_into(const at::Tensor& a, bool transposed, const at::Tensor& b, at::Tensor& out,
                        bool accumulate) {
  if (out.numel() == 0) return;
  if (b.size(0) == 0) {
    if (!accumulate) out.zero_();
    return;
  }
  const at::Tensor panels = pack_columns(b, step_passes<T>().lanes);
  const ColumnProduct<T> q{out.size(0), b.size(0), b.size(1), a.data_ptr<T>(), a.size(1), transposed,
                           panels.data_ptr<T>(), out.data_ptr<T>(), out.size(1), accumulate};
  parallel_column_product(q, panels.size(0));
}

template <typename T>
at::Tensor tiled_product(const at::Tensor& a, bool transposed, const at::Tensor& b) {
  at::Tensor out = at::empty({transposed ? a.size(1) : a.size(0), b.size(1)}, b.options());
  tiled_product_into<T>(a, transposed, b, out, false);
  return out;
}

// out = d^T b, or out += d^T b: d: [N, M], b: [N, C], out: [M, C]. Walking d's columns touches one cache
// line per row of d; once d outgrows the TLB's reach every row is a page miss, and ATen's GEMM (which
// packs d first) is faster: measured on the 2-core EPYC, LSTM training at batch 64 is 5-10% faster with
// it, at batch 8 7% slower (walking in TLB-sized chunks of rows did not close the gap).
template <typename T>
void transposed_product_into(const at::Tensor& d, const at::Tensor& b, at::Tensor& out, bool accumulate) {
  constexpr int64_t kWalkableBytes = int64_t{4} << 20;
  if (d.numel() * static_cast<int64_t>(sizeof(T)) <= kWalkableBytes) {
    tiled_product_into<T>(d, true, b, out, accumulate);
  } else if (accumulate) {
    out.addmm_(d.t(), b);
  } else {
    at::mm_out(out, d.t(), b);
  }
}

// dW_hh = dgates_hh^T h_prev, h_prev: [N, P] the state each packed row started its step from.
// dgates_hh: [N, G*H], y: [N, P] the layer's output, h0: [B, P]. When every step has all B rows, h_prev
// is y shifted by one step, so the product reads y and h0 in place: gathering h_prev first copied
// N x P values (40-180 us for an RNN at B=8, H=256, T=100 on the 2-core EPYC, ~1-4% of its step).
template <typename T>
at::Tensor recurrent_weight_grad(const at::Tensor& dgates_hh, const at::Tensor& y, const at::Tensor& h0,
                                 const std::vector<Step>& steps) {
  at::Tensor dw_hh = at::empty({dgates_hh.size(1), y.size(1)}, y.options());
  const auto shift = dense_shift(steps, h0.size(0));
  if (!shift) {  // varlen: gather the previous states, in pooled memory (they live only for this product)
    transposed_product_into<T>(dgates_hh, gather_prev_state_into(y, h0, steps, scratch_empty(y.sizes(), y.options())),
                               dw_hh, false);
    return dw_hh;
  }
  // A single step (a cell call) has only the initial state's rows: its product alone, not added to
  // a zero-filled dW_hh (which wrote dW_hh twice more per call).
  const bool one_step = shift->rest == 0;
  if (!one_step) {
    transposed_product_into<T>(dgates_hh.narrow(0, shift->prev_begin, shift->rest),
                               y.narrow(0, shift->states_begin, shift->rest), dw_hh, false);
  }
  transposed_product_into<T>(dgates_hh.narrow(0, shift->initial_begin, h0.size(0)), h0, dw_hh, !one_step);
  return dw_hh;
}

// out (+)= v w for a single row on the unpacked w, the team splitting the columns (each column is one
// thread's fixed-order sum, so the bits do not depend on the thread count). w: [rows, cols] contiguous,
// v: [rows], out: [cols]. For one row, packing w first would cost more than the product.
template <typename T>
void row_times_matrix(const at::Tensor& w, const T* v, T* out, bool accumulate) {
  const StepPasses<T>& kernels = step_passes<T>();
  const int64_t rows = w.size(0), cols = w.size(1);
  const MatVec<T> q{w.data_ptr<T>(), rows, cols, v, out, accumulate};
  const int64_t pieces = (cols + kernels.lanes - 1) / kernels.lanes;
  parallel_shares(pieces, rows * cols * kWeightReadMacs, [&](Share sh) {
    kernels.column_sums(q, sh.begin * kernels.lanes, std::min(cols, sh.end * kernels.lanes));
  });
}

// The gradients of a layer's linear maps, y: [N, P] and h0: [B, P] giving each row's previous state.
// dgates_ih: [N, G*H], dgates_hh: [N, G*H], x: [N, I], w_ih: [G*H, I]; all contiguous. dx is [0] without
// input_grad.
template <typename T>
LinearGrads linear_grads_cpu(const at::Tensor& dgates_ih, const at::Tensor& dgates_hh, const at::Tensor& x,
                             const at::Tensor& y, const at::Tensor& h0, const std::vector<Step>& steps,
                             const at::Tensor& w_ih, bool input_grad, bool has_bias) {
  LinearGrads g;
  if (!input_grad) {
    g.dx = at::empty({0}, x.options());
  } else if (x.size(0) == 1) {
    g.dx = at::empty({1, x.size(1)}, x.options());
    row_times_matrix<T>(w_ih, dgates_ih.data_ptr<T>(), g.dx.data_ptr<T>(), false);
  } else {
    g.dx = tiled_product<T>(dgates_ih, false, w_ih);
  }
  g.dw_ih = at::empty({dgates_ih.size(1), x.size(1)}, x.options());
  transposed_product_into<T>(dgates_ih, x, g.dw_ih, false);
  g.dw_hh = recurrent_weight_grad<T>(dgates_hh, y, h0, steps);
  g.db_ih = has_bias ? dgates_ih.sum(0) : at::empty({0}, x.options());
  // The LSTM and RNN pass one matrix as both: its column sums are then summed once.
  const bool shared = dgates_hh.is_same(dgates_ih);
  g.db_hh = !has_bias ? at::empty({0}, x.options()) : shared ? g.db_ih.clone() : dgates_hh.sum(0);
  return g;
}

}  // namespace fusedrnn::cpu
