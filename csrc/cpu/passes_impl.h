// Definitions of the CPU step kernels, included once per instruction set by passes_*.cpp with
// FUSEDRNN_ISA naming a namespace of its own (the instantiations must not merge across ISAs). The
// kernels are generic over the cell (fusedrnn/cell.h); make_step_passes instantiates every cell.
//
// The recurrent product is a register-tiled small GEMM over packed panels (step_args.h): a tile of
// R rows x NV vectors of accumulators stays in registers for the whole inner dimension, one panel
// row (NV vectors) is loaded per k and each row's h value broadcast. A forward tile holds every
// gate of its hidden units, so the cell's math runs on the accumulators directly and the step's
// h W_hh^T never goes to memory.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <type_traits>

#include "cpu/float_math.h"
#include "cpu/passes.h"

namespace fusedrnn::cpu::FUSEDRNN_ISA {

template <typename T>
using Vec = at::vec::Vectorized<T>;

template <typename T>
struct VecMath {
  using V = Vec<T>;
  static constexpr bool kInlineFloat = std::is_same_v<T, float> && FUSEDRNN_INLINE_FLOAT_MATH;

  // float: the inline exp and reciprocal of float_math.h; at most 2.5 ulp (every seventh float above
  // -87), where Sleef's exp and a division give 2.0. LSTM inference at B=64, H=256: 0.965x -> 0.986x
  // of oneDNN with these and the tanh's sign below (A/B, five alternating processes of each build).
  static V sigmoid(V x) {
    if constexpr (kInlineFloat) {
      return reciprocal(V(1.0f) + exp_saturating(x.neg()));
    } else {
      return V(T(1)) / (V(T(1)) + x.neg().exp());
    }
  }
  // float: Cephes' tanhf scheme on the exp above in place of Sleef's tanh, which took ~8% of an LSTM's
  // inference time (perf, batch 64). Measured error 1.3 ulp at most, Sleef's 0.5 (test_cpu_kernels.py
  // sweeps |x| from 1e-30 to 20). Below |x| = 0.625 an odd polynomial, where 1 - 2 / (e^2|x| + 1)
  // would cancel; above it that formula with x's sign (NaN stays NaN, large |x| gives +-1).
  static V tanh(V x) {
    if constexpr (!std::is_same_v<T, float>) {
      return x.tanh();
    } else {
      const V one(1.0f), ax = x.abs(), z = x * x;
      V p(-5.70498872745e-3f);
      p = at::vec::fmadd(p, z, V(2.06390887954e-2f));
      p = at::vec::fmadd(p, z, V(-5.37397155531e-2f));
      p = at::vec::fmadd(p, z, V(1.33314422036e-1f));
      p = at::vec::fmadd(p, z, V(-3.33332819422e-1f));
      const V small = at::vec::fmadd(x * z, p, x);
      V large;
      if constexpr (kInlineFloat) {
        large = one - V(2.0f) * reciprocal(exp_saturating(ax + ax) + one);
      } else {
        large = one - V(2.0f) / ((ax + ax).exp() + one);
      }
      // x's sign onto large (>= 0, or NaN): ATen's copysign is a call into Sleef.
      return V::blendv(large | (x & V(-0.0f)), small, ax < V(0.625f));
    }
  }
  static V relu(V x) { return at::vec::maximum(x, V(T(0))); }  // propagates NaN like torch.relu
  static V relu_grad(V y) { return y.gt(V(T(0))); }            // 1 where y > 0, else 0
};

// n lanes (n <= L) from p + j; zeros when p is null (an absent bias or gradient).
template <typename T>
inline Vec<T> load(const T* p, int64_t j, int64_t n) {
  return p ? Vec<T>::loadu(p + j, n) : Vec<T>(T(0));
}

template <typename T>
inline void store(const Vec<T>& v, T* p, int64_t j, int64_t n) {
  v.store(p + j, static_cast<int>(n));
}

// f(j, n) over the columns [begin, end) in SIMD-wide chunks; the last chunk may be partial.
template <typename T, typename F>
inline void for_each_vector(int64_t begin, int64_t end, const F& f) {
  constexpr int64_t lanes = Vec<T>::size();
  for (int64_t j = begin; j < end; j += lanes) f(j, std::min(lanes, end - j));
}

// Vector registers: 32 with AVX-512, 16 with AVX2 (and the portable build, which has fewer still).
template <typename T>
constexpr int kVectorRegisters = sizeof(Vec<T>) >= 64 ? 32 : 16;

// Rows per register tile with NV vectors per row: R * NV accumulators + NV weights + 1 broadcast.
template <typename T, int NV>
constexpr int kTileRows = std::min(8, std::max(1, (kVectorRegisters<T> - NV - 1) / NV));

template <typename T, int R, int NV>
inline void tile_zero(Vec<T> (&acc)[R][NV]) {
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = Vec<T>(T(0));
  }
}

// acc[r][v] += sum over k of a[r][k * a_step] * panel[k][v][:]; panel: [k_size, NV, L].
// a_step: std::integral_constant<int64_t, 1> for rows of a, or the row stride to walk a column.
template <typename T, int R, int NV, typename Step = std::integral_constant<int64_t, 1>>
inline void tile_accumulate(const T* const (&a)[R], const T* panel, int64_t k_size, Vec<T> (&acc)[R][NV],
                            Step a_step = {}) {
  constexpr int L = Vec<T>::size();
  // The sums live in a local copy: acc's address reaches the epilogue, and while acc is what the loop
  // updates the compiler may store every accumulator on every k, since a's loads could alias it (GCC
  // did after a change of tiling, and the LSTM forward ran 2x slower).
  Vec<T> sum[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) sum[r][v] = acc[r][v];
  }
  for (int64_t k = 0; k < k_size; ++k) {
    if constexpr (!std::is_same_v<Step, std::integral_constant<int64_t, 1>>) {
      // Walking a column, each k is a new cache line (and soon a new page), which the hardware
      // prefetchers do not fetch ahead. GRU training at B=8, H=256 (its dW products walk columns):
      // speed-up over torch.nn 2.81x -> 2.88x and 2.82x -> 2.89x in two A/Bs of alternating processes
      // (absolute medians moved with the machine's load); LSTM and RNN within noise.
      const int64_t ahead = std::min(k + 24, k_size - 1) * a_step;
      __builtin_prefetch(a[0] + ahead);
      __builtin_prefetch(a[R - 1] + ahead);
    }
    const T* w = panel + k * NV * L;
    Vec<T> wv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) wv[v] = Vec<T>::loadu(w + v * L);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Vec<T> ar(a[r][k * a_step]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) sum[r][v] = at::vec::fmadd(ar, wv[v], sum[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = sum[r][v];
  }
}

// tile(std::integral_constant<int, n>, r0) for a tile of n <= R rows from r0.
template <int R, typename F>
inline void row_tile(int64_t n, int64_t r0, const F& tile) {
  if constexpr (R >= 1) {
    if (n == R) {
      tile(std::integral_constant<int, R>{}, r0);
    } else {
      row_tile<R - 1>(n, r0, tile);
    }
  }
}

// tile(std::integral_constant<int, R>, r0) over rows [0, rows) in the fewest tiles of at most MR rows,
// their heights differing by one at most. A short last tile (8 rows as 6 + 2) re-reads each panel row
// for little work: LSTM inference at batch 8, H=256 ran ~25% faster as 4 + 4 (2-core EPYC, A/B).
template <int MR, typename F>
inline void for_each_row_tile(int64_t rows, const F& tile) {
  const int64_t tiles = (rows + MR - 1) / MR;
  int64_t r = 0;
  for (int64_t i = 0; i < tiles; ++i) {
    const int64_t height = rows / tiles + (i < rows % tiles ? 1 : 0);
    row_tile<MR>(height, r, tile);
    r += height;
  }
}

// For panels [panel_begin, panel_end) and every row of the step: the products in registers, then
// epilogue(row, panel, acc, input_only) with acc: Vec<T>[NV], the row's products for that panel.
// With a fused input product, vector kInputApart (if >= 0) keeps its x_t W_ih^T part apart: acc holds
// only the h side there and input_only the x side (the GRU's n gate); input_only is zero otherwise.
template <typename T, int NV, int kInputApart = -1, typename Epilogue>
inline void forward_panels(int64_t rows, const RecurrentProduct<T>& product, int64_t panel_begin,
                           int64_t panel_end, const Epilogue& epilogue) {
  constexpr int L = Vec<T>::size();
  constexpr int MR = kTileRows<T, NV>;
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    const T* w = product.panels + panel * product.k * NV * L;
    for_each_row_tile<MR>(rows, [&](auto tile_rows, int64_t r0) {
      constexpr int R = decltype(tile_rows)::value;
      Vec<T> acc[R][NV];
      Vec<T> input_only[R];
      tile_zero(acc);
      for (int r = 0; r < R; ++r) input_only[r] = Vec<T>(T(0));
      const T* a[R];
      if (product.input_panels) {
        for (int r = 0; r < R; ++r) a[r] = product.x + (r0 + r) * product.input_k;
        tile_accumulate(a, product.input_panels + panel * product.input_k * NV * L, product.input_k, acc);
        if constexpr (kInputApart >= 0) {
          for (int r = 0; r < R; ++r) {
            input_only[r] = acc[r][kInputApart];
            acc[r][kInputApart] = Vec<T>(T(0));
          }
        }
      }
      for (int r = 0; r < R; ++r) a[r] = product.h_prev.row(r0 + r);
      tile_accumulate(a, w, product.k, acc);
      for (int r = 0; r < R; ++r) epilogue(r0 + r, panel, acc[r], input_only[r]);
    });
  }
}

// The view a cell's forward reads one vector of units through (fusedrnn/cell.h): units [j, j + n) of
// row r, with hh the tile's products for them (h W_hh^T, plus x W_ih^T when the input product is fused,
// except for the cell's input_apart gate, whose fused x side is input_only).
template <typename T, int kInputApart>
struct ForwardUnit {
  const Vec<T>* hh;          // [G]
  Vec<T> input_only;         // zero unless the input product is fused
  const T* xproj;            // row r of the step's x W_ih^T, or null when fused
  const T* b_ih;             // [G*H] or null
  const T* b_hh;             // [G*H] or null
  const T* h_prev_row;       // row r of the previous h
  T* c_row;                  // row r of the cell state, or null
  T* ws;                     // row r of the workspace, or null (inference)
  int64_t H, j, n;

  Vec<T> sum(int g) const {
    const int64_t col = g * H + j;
    return hh[g] + load(xproj, col, n) + load(b_ih, col, n) + load(b_hh, col, n);
  }
  Vec<T> input(int g) const {
    const Vec<T> v = load(xproj, g * H + j, n) + load(b_ih, g * H + j, n);
    return g == kInputApart ? v + input_only : v;
  }
  Vec<T> hidden(int g) const { return hh[g] + load(b_hh, g * H + j, n); }
  Vec<T> h_prev() const { return load(h_prev_row, j, n); }
  Vec<T> c() const { return load(c_row, j, n); }
  void set_c(const Vec<T>& v) const { store(v, c_row, j, n); }
  void save(int col, const Vec<T>& v) const {
    if (ws) store(v, ws, col * H + j, n);
  }
};

// One forward step of Cell for panels [panel_begin, panel_end) and every row: the products in
// registers (or, where they were computed before the step, read from p.hh), then the cell's math on
// them; h (and c, the workspace) go to memory.
template <typename Cell, typename T>
void forward_step(const ForwardStep<T>& p, int64_t panel_begin, int64_t panel_end) {
  using M = VecMath<T>;
  constexpr int64_t L = Vec<T>::size();
  constexpr int G = Cell::gates;
  constexpr int blocks = forward_panel_blocks(G);
  static_assert(Cell::input_apart < 0 || blocks == 1, "a gate kept apart needs one unit block per panel");
  const int64_t H = p.hidden;
  const auto epilogue = [&](int64_t r, int64_t panel, const Vec<T>(&hh)[G * blocks], const Vec<T>& input_only) {
    for (int b = 0; b < blocks; ++b) {
      const int64_t j = (panel * blocks + b) * L;
      if (j >= H) break;
      const int64_t n = std::min(L, H - j);
      const ForwardUnit<T, Cell::input_apart> unit{
          hh + b * G,
          input_only,
          p.xproj ? p.xproj + r * G * H : nullptr,  // null: fused input product
          p.b_ih,
          p.b_hh,
          Cell::h_feeds_through ? p.product.h_prev.row(r) : nullptr,
          p.c ? p.c + r * H : nullptr,
          p.workspace ? p.workspace + r * Cell::workspace_cols * H : nullptr,
          H,
          j,
          n};
      const Vec<T> h = Cell::template forward<M, Vec<T>>(unit, p.act);
      store(h, p.h + r * H, j, n);
      if (p.y) store(h, p.y + r * H, j, n);
    }
  };
  if (!p.hh) {
    forward_panels<T, G * blocks, Cell::input_apart>(p.rows, p.product, panel_begin, panel_end, epilogue);
    return;
  }
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {  // the units a panel would hold
    for (int64_t r = 0; r < p.rows; ++r) {
      Vec<T> hh[G * blocks];
      for (int b = 0; b < blocks; ++b) {
        const int64_t j = (panel * blocks + b) * L;
        for (int g = 0; g < G; ++g) {
          hh[b * G + g] = j < H ? load(p.hh + r * G * H, g * H + j, std::min(L, H - j)) : Vec<T>(T(0));
        }
      }
      epilogue(r, panel, hh, Vec<T>(T(0)));
    }
  }
}

// The view a cell's backward reads and writes one vector of units through: units [j, j + n) of row r.
template <typename T, bool kSplitGates>
struct BackwardUnit {
  const T* ws;          // row r of the workspace
  const T* h_prev_row;  // row r of the previous h, or null
  const T* c_prev_row;  // row r of the previous c, or null
  T* dc_row;            // row r of the cell-state gradient, or null
  T* dgates;            // row r of the (input-side) gate gradients
  T* dgates_hh;         // row r of the hidden-side gate gradients (kSplitGates)
  int64_t H, j, n;

  Vec<T> saved(int col) const { return load(ws, col * H + j, n); }
  Vec<T> h_prev() const { return load(h_prev_row, j, n); }
  Vec<T> c_prev() const { return load(c_prev_row, j, n); }
  Vec<T> dc() const { return load(dc_row, j, n); }
  void set_dc(const Vec<T>& v) const { store(v, dc_row, j, n); }
  void set_dgate(int g, const Vec<T>& v) const {
    store(v, dgates, g * H + j, n);
    if constexpr (kSplitGates) store(v, dgates_hh, g * H + j, n);
  }
  void set_dgate_apart(int g, const Vec<T>& dx, const Vec<T>& dh) const {
    store(dx, dgates, g * H + j, n);
    store(dh, dgates_hh, g * H + j, n);
  }
};

// The gate gradients of Cell for hidden units [unit_begin, unit_end) of every row of a backward step.
template <typename Cell, typename T>
void backward_step(const BackwardStep<T>& p, int64_t unit_begin, int64_t unit_end) {
  using M = VecMath<T>;
  constexpr int G = Cell::gates;
  constexpr bool kSplitGates = Cell::input_apart >= 0;
  const int64_t H = p.hidden;
  for (int64_t r = 0; r < p.rows; ++r) {
    T* dh = p.dh + r * H;
    const T* grad_y = p.grad_y ? p.grad_y + r * H : nullptr;
    const T* ws = p.workspace + r * Cell::workspace_cols * H;
    const T* h_prev = Cell::h_feeds_through ? p.h_prev.row(r) : nullptr;
    const T* c_prev = Cell::states == 2 ? p.c_prev.row(r) : nullptr;
    T* dc = p.dc ? p.dc + r * H : nullptr;
    T* dgates = p.dgates + r * G * H;
    T* dgates_hh = kSplitGates ? p.dgates_hh + r * G * H : nullptr;
    for_each_vector<T>(unit_begin, unit_end, [&](int64_t j, int64_t n) {
      const BackwardUnit<T, kSplitGates> unit{ws, h_prev, c_prev, dc, dgates, dgates_hh, H, j, n};
      const Vec<T> direct = Cell::template backward<M, Vec<T>>(load(dh, j, n) + load(grad_y, j, n), unit, p.act);
      if constexpr (Cell::h_feeds_through) store(direct, dh, j, n);
    });
  }
}

template <typename T>
void column_product(const ColumnProduct<T>& p, int64_t panel_begin, int64_t panel_end) {
  constexpr int64_t L = Vec<T>::size();
  constexpr int NV = kPanelVectors;
  constexpr int MR = kTileRows<T, NV>;
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    const T* w = p.panels + panel * p.k * NV * L;
    for_each_row_tile<MR>(p.rows, [&](auto tile_rows, int64_t r0) {
      constexpr int R = decltype(tile_rows)::value;
      const T* a[R];
      Vec<T> acc[R][NV];
      tile_zero(acc);
      if (p.a_transposed) {  // a[r][k] at p.a[k * lda + r]: a tile's R values share a cache line
        for (int r = 0; r < R; ++r) a[r] = p.a + (r0 + r);
        tile_accumulate(a, w, p.k, acc, p.lda);
      } else {
        for (int r = 0; r < R; ++r) a[r] = p.a + (r0 + r) * p.lda;
        tile_accumulate(a, w, p.k, acc);
      }
      for (int r = 0; r < R; ++r) {
        T* out = p.out + (r0 + r) * p.ldo;
        for (int v = 0; v < NV; ++v) {
          const int64_t j = (panel * NV + v) * L;
          if (j >= p.cols) break;
          const int64_t n = std::min(L, p.cols - j);
          store(p.accumulate ? acc[r][v] + load(out, j, n) : acc[r][v], out, j, n);
        }
      }
    });
  }
}

// Row dots over rows [row_begin, row_end): four rows share each load of v, two vectors per row in
// flight; the last partial vector loads zero-filled.
template <typename T>
void row_dots(const MatVec<T>& p, int64_t row_begin, int64_t row_end) {
  constexpr int64_t L = Vec<T>::size();
  constexpr int R = 4;
  const int64_t K = p.cols;
  for (int64_t r0 = row_begin; r0 < row_end; r0 += R) {
    const int rows = static_cast<int>(std::min<int64_t>(R, row_end - r0));
    const T* w[R];
    for (int r = 0; r < R; ++r) w[r] = p.w + (r0 + std::min(r, rows - 1)) * K;  // short tile: repeat a row
    Vec<T> acc[R][2];
    tile_zero(acc);
    int64_t k = 0;
    for (; k + 2 * L <= K; k += 2 * L) {
      const Vec<T> v0 = Vec<T>::loadu(p.v + k), v1 = Vec<T>::loadu(p.v + k + L);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        acc[r][0] = at::vec::fmadd(Vec<T>::loadu(w[r] + k), v0, acc[r][0]);
        acc[r][1] = at::vec::fmadd(Vec<T>::loadu(w[r] + k + L), v1, acc[r][1]);
      }
    }
    for (; k < K; k += L) {
      const int64_t n = std::min(L, K - k);
      const Vec<T> v = Vec<T>::loadu(p.v + k, n);
      for (int r = 0; r < R; ++r) acc[r][0] = at::vec::fmadd(Vec<T>::loadu(w[r] + k, n), v, acc[r][0]);
    }
    for (int r = 0; r < rows; ++r) {
      T lanes[L];
      (acc[r][0] + acc[r][1]).store(lanes);
      T sum = T(0);
      for (int64_t i = 0; i < L; ++i) sum += lanes[i];
      p.out[r0 + r] = sum;
    }
  }
}

// Column sums over columns [col_begin, col_end): out's columns stay in L1 while the rows stream by.
template <typename T>
void column_sums(const MatVec<T>& p, int64_t col_begin, int64_t col_end) {
  if (!p.accumulate) std::fill(p.out + col_begin, p.out + col_end, T(0));
  for (int64_t r = 0; r < p.rows; ++r) {
    const Vec<T> a(p.v[r]);
    const T* w = p.w + r * p.cols;
    for_each_vector<T>(col_begin, col_end, [&](int64_t c, int64_t n) {
      store(at::vec::fmadd(a, Vec<T>::loadu(w + c, n), load(p.out, c, n)), p.out, c, n);
    });
  }
}

}  // namespace fusedrnn::cpu::FUSEDRNN_ISA

#include "cpu/stepwise_passes_impl.h"

namespace fusedrnn::cpu::FUSEDRNN_ISA {

template <typename T>
StepPasses<T> make_step_passes() {
  StepPasses<T> passes{Vec<T>::size(), {}, &column_product<T>, &row_dots<T>, &column_sums<T>, {}};
  for_each_cell([&](auto cell) {
    using Cell = decltype(cell);
    passes.cells[static_cast<int>(Cell::id)] = {&forward_step<Cell, T>, &backward_step<Cell, T>};
    passes.stepwise[static_cast<int>(Cell::id)] = {&stepwise_forward_rows<Cell, T>, &stepwise_backward_rows<Cell, T>};
  });
  return passes;
}

}  // namespace fusedrnn::cpu::FUSEDRNN_ISA
