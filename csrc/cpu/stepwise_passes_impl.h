// The row passes of the step-wise cells (fusedrnn/stepwise.h), included by passes_impl.h inside its
// per-ISA namespace: the plain cell's own math, through the same unit views (ForwardUnit,
// BackwardUnit) as the fused kernels, with any layer norms around it, zoneout and recurrent dropout
// after it. A pass owns whole rows, since a row's layer-norm statistics reduce over all its units.
#pragma once

#include <cmath>

#include "cpu/stepwise_step_args.h"
#include "fusedrnn/stepwise.h"

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

// zoneout's blend m * previous + (1 - m) * new: exactly the previous value where m = 1, the new one
// where m = 0 (fresh + m * (previous - fresh) would round both).
template <typename T>
inline Vec<T> zone_out(const Vec<T>& m, const Vec<T>& previous, const Vec<T>& fresh) {
  return m * previous + (Vec<T>(T(1)) - m) * fresh;
}

// Rows [row_begin, row_end) of a forward step: any layer norms of both sides in place, the plain
// cell's math on them (for the layer-normalised LSTM then h~ = o * tanh(LN(c~))), zoneout, and the
// new h times the recurrent-dropout mask for the next product.
template <typename Cell, typename T>
void stepwise_forward_rows(const StepwiseForwardStep<T>& p, int64_t row_begin, int64_t row_end) {
  using M = VecMath<T>;
  constexpr int G = Cell::gates;
  constexpr int S = Cell::states;
  const StepwiseLayout& lay = p.layout;
  const int64_t H = lay.hidden, GH = G * H;
  for (int64_t r = row_begin; r < row_end; ++r) {
    T* xw = p.xw + r * GH;
    T* hh = p.hh + r * GH;
    T* ws = p.workspace ? p.workspace + r * lay.cols() : nullptr;
    if (lay.norm) {
      const Moments<T> mx = row_moments(xw, GH), mh = row_moments(hh, GH);
      normalise_row(xw, mx, p.ln_ih, ws ? ws + lay.xhat_ih() : nullptr, GH);
      normalise_row(hh, mh, p.ln_hh, ws ? ws + lay.xhat_hh() : nullptr, GH);
      if (ws) {
        ws[lay.stats()] = mx.rstd;
        ws[lay.stats() + 1] = mh.rstd;
      }
    }
    T* saves = ws ? ws + lay.cell() : p.cell_scratch ? p.cell_scratch + r * Cell::workspace_cols * H : nullptr;
    T* c = S == 2 ? p.c + r * H : nullptr;
    T* h = p.h + r * H;
    T* y = p.y + r * H;
    const T* keep = p.zoneout ? p.zoneout + r * S * H : nullptr;
    const T* mask = p.recurrent_mask ? p.recurrent_mask + r * H : nullptr;
    // h' from h~: zoned out, then stored as the state, the output and the next product's input
    auto emit_h = [&](int64_t j, int64_t n, Vec<T> h_new) {
      if (keep) h_new = zone_out(load(keep, j, n), load(h, j, n), h_new);
      store(h_new, h, j, n);
      store(h_new, y, j, n);
      if (mask) store(h_new * load(mask, j, n), p.h_dropped + r * H, j, n);
    };
    for_each_vector<T>(0, H, [&](int64_t j, int64_t n) {
      Vec<T> hidden[G];
      for (int g = 0; g < G; ++g) hidden[g] = load(hh, g * H + j, n);
      const Vec<T> c_prev = load(c, j, n);
      // input(g) / sum(g) read xw and add the biases
      const ForwardUnit<T, Cell::input_apart> unit{hidden, Vec<T>(T(0)), xw, p.b_ih, p.b_hh, h, c, saves, H, j, n};
      const Vec<T> h_new = Cell::template forward<M, Vec<T>>(unit, p.act);
      if (S == 2 && keep) {  // c' from c~ (the cell wrote c~, and saved it)
        const Vec<T> c_new = zone_out(load(keep, H + j, n), c_prev, load(c, j, n));
        store(c_new, c, j, n);
        if (ws) store(c_new, ws, lay.c_state() + j, n);
      }
      if (!lay.normalises_c()) emit_h(j, n, h_new);
    });
    if constexpr (S == 2) {
      if (lay.normalises_c()) {
        const T* c_tilde = saves + Cell::saved_c * H;
        const Moments<T> mc = row_moments(c_tilde, H);
        for_each_vector<T>(0, H, [&](int64_t j, int64_t n) {
          const Vec<T> c_hat = (load(c_tilde, j, n) - Vec<T>(mc.mean)) * Vec<T>(mc.rstd);
          const Vec<T> o = load(saves, Cell::saved_o * H + j, n);
          if (ws) store(c_hat, ws, lay.c_hat() + j, n);
          emit_h(j, n, o * M::tanh(c_hat * load(p.ln_c_w, j, n) + load(p.ln_c_b, j, n)));
        });
        if (ws) ws[lay.stats() + 2] = mc.rstd;
      }
    }
  }
}

// Rows [row_begin, row_end) of a backward step: the gates' gradients (dpre_*), with layer norm those
// of both products (dxw, dhh) and of LN(c~) (dlc); the previous h's direct part (dh) and the previous
// c's gradient (dc).
template <typename Cell, typename T>
void stepwise_backward_rows(const StepwiseBackwardStep<T>& p, int64_t row_begin, int64_t row_end) {
  using M = VecMath<T>;
  constexpr int G = Cell::gates;
  constexpr int S = Cell::states;
  constexpr bool kSplitGates = Cell::input_apart >= 0;
  const StepwiseLayout& lay = p.layout;
  const int64_t H = lay.hidden, GH = G * H;
  const Vec<T> one(T(1));
  for (int64_t r = row_begin; r < row_end; ++r) {
    const T* ws = p.workspace + r * lay.cols();
    const T* cell_ws = ws + lay.cell();
    T* dh = p.dh + r * H;
    const T* dh_product = p.dh_product + r * H;
    const T* grad_y = p.grad_y + r * H;
    const T* keep = p.zoneout ? p.zoneout + r * S * H : nullptr;
    const T* mask = p.recurrent_mask ? p.recurrent_mask + r * H : nullptr;
    T* dc = S == 2 ? p.dc + r * H : nullptr;
    const T* c_prev = S == 2 ? p.c_prev.row(r) : nullptr;
    T* dpre_ih = p.dpre_ih + r * GH;
    T* dpre_hh = kSplitGates ? p.dpre_hh + r * GH : nullptr;
    // h''s whole gradient: its direct part, through the next step's product (times d), from the output
    auto dh_total = [&](int64_t j, int64_t n) {
      const Vec<T> through = load(dh_product, j, n);
      return load(dh, j, n) + load(grad_y, j, n) + (mask ? through * load(mask, j, n) : through);
    };
    if constexpr (S == 2) {
      if (lay.normalises_c()) {
        // h~ = o * tanh(lc), lc = LN(c~): the gradient of lc first, then through the norm's sums into c~
        const T* c_hat = ws + lay.c_hat();
        T* dlc = p.dlc + r * H;
        Vec<T> sum(T(0)), dot(T(0));
        for_each_vector<T>(0, H, [&](int64_t j, int64_t n) {
          const Vec<T> d_out = dh_total(j, n), m = load(keep, j, n);
          const Vec<T> d_new = d_out - m * d_out;  // reaches h~; m * d_out reaches the previous h
          const Vec<T> o = load(cell_ws, Cell::saved_o * H + j, n), w = load(p.ln_c_w, j, n);
          const Vec<T> tanh_lc = M::tanh(load(c_hat, j, n) * w + load(p.ln_c_b, j, n));
          const Vec<T> d_lc = d_new * o * (one - tanh_lc * tanh_lc);
          store(m * d_out, dh, j, n);
          store(d_lc, dlc, j, n);
          store(d_new * tanh_lc * o * (one - o), dpre_ih, Cell::saved_o * H + j, n);  // o's gradient
          sum = sum + d_lc * w;  // lanes past H load as zeros
          dot = dot + d_lc * w * load(c_hat, j, n);
        });
        const Vec<T> mean_g(horizontal_sum(sum) / T(H)), mean_gv(horizontal_sum(dot) / T(H));
        const Vec<T> rstd_c(ws[lay.stats() + 2]);
        for_each_vector<T>(0, H, [&](int64_t j, int64_t n) {
          const Vec<T> g = load(dlc, j, n) * load(p.ln_c_w, j, n);
          const Vec<T> dc_norm = rstd_c * (g - mean_g - load(c_hat, j, n) * mean_gv);
          const Vec<T> dc_out = load(dc, j, n), m = load(keep, H + j, n), d_o = load(dpre_ih, Cell::saved_o * H + j, n);
          store(dc_out - m * dc_out + dc_norm, dc, j, n);  // c~'s gradient
          const BackwardUnit<T, false> unit{cell_ws, nullptr, c_prev, dc, dpre_ih, nullptr, H, j, n};
          // with no gradient at o * tanh(c~) itself, the cell gives the gates' and the previous c's
          // gradients from dc alone; o's is the one computed above
          Cell::template backward<M, Vec<T>>(Vec<T>(T(0)), unit, p.act);
          store(d_o, dpre_ih, Cell::saved_o * H + j, n);
          if (keep) store(load(dc, j, n) + m * dc_out, dc, j, n);
        });
      }
    }
    if (!lay.normalises_c()) {
      const T* h_prev = Cell::h_feeds_through ? p.h_prev.row(r) : nullptr;
      for_each_vector<T>(0, H, [&](int64_t j, int64_t n) {
        const Vec<T> d_out = dh_total(j, n), m = load(keep, j, n);
        Vec<T> dc_out(T(0)), m_c(T(0));
        if (S == 2 && keep) {  // c~'s gradient in dc for the cell
          dc_out = load(dc, j, n);
          m_c = load(keep, H + j, n);
          store(dc_out - m_c * dc_out, dc, j, n);
        }
        const BackwardUnit<T, kSplitGates> unit{cell_ws, h_prev, c_prev, dc, dpre_ih, dpre_hh, H, j, n};
        const Vec<T> direct = Cell::template backward<M, Vec<T>>(d_out - m * d_out, unit, p.act);
        store(direct + m * d_out, dh, j, n);
        if (S == 2 && keep) store(load(dc, j, n) + m_c * dc_out, dc, j, n);
      });
    }
    if (lay.norm) {
      const T* d_hidden = kSplitGates ? dpre_hh : dpre_ih;
      normalise_row_backward(dpre_ih, p.ln_ih, ws + lay.xhat_ih(), ws[lay.stats()], p.dxw + r * GH, GH);
      normalise_row_backward(d_hidden, p.ln_hh, ws + lay.xhat_hh(), ws[lay.stats() + 1], p.dhh + r * GH, GH);
    }
  }
}

}  // namespace fusedrnn::cpu::FUSEDRNN_ISA
