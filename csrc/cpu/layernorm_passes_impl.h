// The row passes of the layer-normalised cells (fusedrnn/layer_norm.h), included by passes_impl.h
// inside its per-ISA namespace: the layer norms of a step's rows around the plain cell's own math,
// through the same unit views (ForwardUnit, BackwardUnit) as the fused kernels. A pass owns whole rows,
// since a row's statistics reduce over all its units.
#pragma once

#include <cmath>

#include "cpu/layernorm_step_args.h"
#include "fusedrnn/layer_norm.h"

namespace fusedrnn::cpu::FUSEDRNN_ISA {

template <typename T>
inline T horizontal_sum(const Vec<T>& v) {
  constexpr int64_t L = Vec<T>::size();
  T lanes[L];
  v.store(lanes);
  T sum = T(0);
  for (int64_t i = 0; i < L; ++i) sum += lanes[i];
  return sum;
}

// The first n lanes of v, zeros after (a partial vector's lanes past the row must not reach a sum).
template <typename T>
inline Vec<T> head(const Vec<T>& v, int64_t n) {
  return n == Vec<T>::size() ? v : Vec<T>::set(Vec<T>(T(0)), v, n);
}

template <typename T>
struct Moments {
  T mean, rstd;
};

// Mean and 1 / sqrt(biased variance + eps) of v[0, n), the variance from the deviations (E[v^2] - mean^2
// cancels when the mean is large).
template <typename T>
Moments<T> row_moments(const T* v, int64_t n) {
  Vec<T> sum(T(0));
  for_each_vector<T>(0, n, [&](int64_t j, int64_t m) { sum = sum + Vec<T>::loadu(v + j, m); });
  const T mean = horizontal_sum(sum) / T(n);
  Vec<T> squares(T(0));
  for_each_vector<T>(0, n, [&](int64_t j, int64_t m) {
    const Vec<T> d = Vec<T>::loadu(v + j, m) - Vec<T>(mean);
    squares = squares + head(d * d, m);
  });
  const T var = horizontal_sum(squares) / T(n);
  return {mean, T(1) / std::sqrt(var + T(kLayerNormEps))};
}

// v[j] = gain[j] * v_hat[j] in place, v_hat = (v - mean) * rstd, saved to v_hat_out when given.
template <typename T>
void normalise_row(T* v, Moments<T> m, const T* gain, T* v_hat_out, int64_t n) {
  for_each_vector<T>(0, n, [&](int64_t j, int64_t k) {
    const Vec<T> v_hat = (Vec<T>::loadu(v + j, k) - Vec<T>(m.mean)) * Vec<T>(m.rstd);
    if (v_hat_out) store(v_hat, v_hat_out, j, k);
    store(v_hat * Vec<T>::loadu(gain + j, k), v, j, k);
  });
}

// The gradient of v through normalise_row, from the gradient d_out of its output:
// dv = rstd * (g - mean(g) - v_hat * mean(g * v_hat)), g = d_out * gain.
template <typename T>
void normalise_row_backward(const T* d_out, const T* gain, const T* v_hat, T rstd, T* dv, int64_t n) {
  Vec<T> sum(T(0)), dot(T(0));
  for_each_vector<T>(0, n, [&](int64_t j, int64_t k) {
    const Vec<T> g = Vec<T>::loadu(d_out + j, k) * Vec<T>::loadu(gain + j, k);
    sum = sum + g;  // lanes past n load as zeros
    dot = dot + g * Vec<T>::loadu(v_hat + j, k);
  });
  const Vec<T> mean_g(horizontal_sum(sum) / T(n)), mean_gv(horizontal_sum(dot) / T(n));
  for_each_vector<T>(0, n, [&](int64_t j, int64_t k) {
    const Vec<T> g = Vec<T>::loadu(d_out + j, k) * Vec<T>::loadu(gain + j, k);
    store(Vec<T>(rstd) * (g - mean_g - Vec<T>::loadu(v_hat + j, k) * mean_gv), dv, j, k);
  });
}

// Rows [row_begin, row_end) of a forward step: both sides normalised in place, the plain cell's math on
// them (h' as it gives it, or for the LSTM its c', normalised before h' = o * tanh(LN(c'))).
template <typename Cell, typename T>
void layernorm_forward_rows(const LayerNormForwardStep<T>& p, int64_t row_begin, int64_t row_end) {
  using M = VecMath<T>;
  using LN = LayerNormed<Cell>;
  constexpr int G = Cell::gates;
  const int64_t H = p.hidden, GH = G * H;
  for (int64_t r = row_begin; r < row_end; ++r) {
    T* xw = p.xw + r * GH;
    T* hh = p.hh + r * GH;
    T* ws = p.workspace ? p.workspace + r * LN::workspace_cols(H) : nullptr;
    const Moments<T> mx = row_moments(xw, GH), mh = row_moments(hh, GH);
    normalise_row(xw, mx, p.ln_ih, ws ? ws + LN::xhat_ih(H) : nullptr, GH);
    normalise_row(hh, mh, p.ln_hh, ws ? ws + LN::xhat_hh(H) : nullptr, GH);
    T* saves = ws ? ws + LN::cell(H) : p.cell_scratch ? p.cell_scratch + r * Cell::workspace_cols * H : nullptr;
    T* c = Cell::states == 2 ? p.c + r * H : nullptr;
    T* h = p.h + r * H;
    T* y = p.y + r * H;
    for_each_vector<T>(0, H, [&](int64_t j, int64_t n) {
      Vec<T> hidden[G];
      for (int g = 0; g < G; ++g) hidden[g] = load(hh, g * H + j, n);
      // input(g) / sum(g) read xw, now the input side's scaled normal values, and add the biases
      const ForwardUnit<T, Cell::input_apart> unit{hidden, Vec<T>(T(0)), xw, p.b_ih, p.b_hh, h, c, saves, H, j, n};
      const Vec<T> h_new = Cell::template forward<M, Vec<T>>(unit, Activation::Tanh);
      if constexpr (!LN::normalises_c) {
        store(h_new, h, j, n);
        store(h_new, y, j, n);
      }
    });
    if constexpr (LN::normalises_c) {
      const Moments<T> mc = row_moments(c, H);
      for_each_vector<T>(0, H, [&](int64_t j, int64_t n) {
        const Vec<T> c_hat = (load(c, j, n) - Vec<T>(mc.mean)) * Vec<T>(mc.rstd);
        const Vec<T> o = load(saves, Cell::saved_o * H + j, n);
        const Vec<T> h_new = o * M::tanh(c_hat * load(p.ln_c_w, j, n) + load(p.ln_c_b, j, n));
        if (ws) store(c_hat, ws, LN::c_hat(H) + j, n);
        store(h_new, h, j, n);
        store(h_new, y, j, n);
      });
      if (ws) ws[LN::stats(H) + 2] = mc.rstd;
    }
    if (ws) {
      ws[LN::stats(H)] = mx.rstd;
      ws[LN::stats(H) + 1] = mh.rstd;
    }
  }
}

// Rows [row_begin, row_end) of a backward step: the gradients of both sides' products (dxw, dhh) and,
// for the weight gradients, of the normalised sides (dpre_*) and of LN(c') (dlc).
template <typename Cell, typename T>
void layernorm_backward_rows(const LayerNormBackwardStep<T>& p, int64_t row_begin, int64_t row_end) {
  using M = VecMath<T>;
  using LN = LayerNormed<Cell>;
  constexpr int G = Cell::gates;
  constexpr bool kSplitGates = Cell::input_apart >= 0;
  const int64_t H = p.hidden, GH = G * H;
  const Vec<T> one(T(1));
  for (int64_t r = row_begin; r < row_end; ++r) {
    const T* ws = p.workspace + r * LN::workspace_cols(H);
    const T* cell_ws = ws + LN::cell(H);
    T* dh = p.dh + r * H;
    const T* grad_y = p.grad_y + r * H;
    T* dpre_ih = p.dpre_ih + r * GH;
    T* dpre_hh = kSplitGates ? p.dpre_hh + r * GH : nullptr;
    if constexpr (LN::normalises_c) {
      // h' = o * tanh(lc), lc = LN(c'): the gradient of lc first, then through the norm's sums into c'
      const T* c_hat = ws + LN::c_hat(H);
      T* dlc = p.dlc + r * H;
      T* dc = p.dc + r * H;
      Vec<T> sum(T(0)), dot(T(0));
      for_each_vector<T>(0, H, [&](int64_t j, int64_t n) {
        const Vec<T> dh_total = load(dh, j, n) + load(grad_y, j, n);
        const Vec<T> o = load(cell_ws, Cell::saved_o * H + j, n), w = load(p.ln_c_w, j, n);
        const Vec<T> tanh_lc = M::tanh(load(c_hat, j, n) * w + load(p.ln_c_b, j, n));
        const Vec<T> d_lc = dh_total * o * (one - tanh_lc * tanh_lc);
        store(d_lc, dlc, j, n);
        store(dh_total * tanh_lc * o * (one - o), dh, j, n);  // d_o, kept in dh until the cell has run
        sum = sum + d_lc * w;  // lanes past H load as zeros
        dot = dot + d_lc * w * load(c_hat, j, n);
      });
      const Vec<T> mean_g(horizontal_sum(sum) / T(H)), mean_gv(horizontal_sum(dot) / T(H));
      const Vec<T> rstd_c(ws[LN::stats(H) + 2]);
      const T* c_prev = p.c_prev.row(r);
      for_each_vector<T>(0, H, [&](int64_t j, int64_t n) {
        const Vec<T> g = load(dlc, j, n) * load(p.ln_c_w, j, n);
        const Vec<T> dc_norm = rstd_c * (g - mean_g - load(c_hat, j, n) * mean_gv);
        store(load(dc, j, n) + dc_norm, dc, j, n);
        const BackwardUnit<T, false> unit{cell_ws, nullptr, c_prev, dc, dpre_ih, nullptr, H, j, n};
        // with no gradient at o * tanh(c') itself, the cell gives the gates' and the previous c's
        // gradients from dc alone; o's is the one computed above
        Cell::template backward<M, Vec<T>>(Vec<T>(T(0)), unit, Activation::Tanh);
        store(load(dh, j, n), dpre_ih, Cell::saved_o * H + j, n);
      });
    } else {
      const T* h_prev = Cell::h_feeds_through ? p.h_prev.row(r) : nullptr;
      for_each_vector<T>(0, H, [&](int64_t j, int64_t n) {
        const BackwardUnit<T, kSplitGates> unit{cell_ws, h_prev, nullptr, nullptr, dpre_ih, dpre_hh, H, j, n};
        const Vec<T> direct =
            Cell::template backward<M, Vec<T>>(load(dh, j, n) + load(grad_y, j, n), unit, Activation::Tanh);
        store(direct, dh, j, n);
      });
    }
    const T* d_hidden = kSplitGates ? dpre_hh : dpre_ih;
    normalise_row_backward(dpre_ih, p.ln_ih, ws + LN::xhat_ih(H), ws[LN::stats(H)], p.dxw + r * GH, GH);
    normalise_row_backward(d_hidden, p.ln_hh, ws + LN::xhat_hh(H), ws[LN::stats(H) + 1], p.dhh + r * GH, GH);
  }
}

}  // namespace fusedrnn::cpu::FUSEDRNN_ISA
