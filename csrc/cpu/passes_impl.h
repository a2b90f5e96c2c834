// Definitions of the fused per-step passes, included once per instruction set by passes_*.cpp with
// FUSEDRNN_ISA naming a namespace of its own (the instantiations must not merge across ISAs).
// Each pass reads one step's GEMM results, applies cell_math.h with SIMD vectors and writes the
// new state, the output and the workspace.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <algorithm>

#include "cpu/passes.h"

namespace fusedrnn::cpu::FUSEDRNN_ISA {

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

template <typename T>
void lstm_forward_rows(const LstmForwardStep<T>& p, int64_t begin, int64_t end) {
  using M = VecMath<T>;
  const int64_t H = p.hidden;
  for (int64_t r = begin; r < end; ++r) {
    const T* xproj = p.xproj + r * kLstmGates * H;
    const T* hh = p.hh + r * kLstmGates * H;
    T* c = p.c + r * H;
    T* h = p.h + r * H;
    T* y = p.y ? p.y + r * H : nullptr;
    T* ws = p.workspace ? p.workspace + r * kLstmWorkspaceCols * H : nullptr;
    for_each_vector<T>(H, [&](int64_t j, int64_t n) {
      auto pre = [&](int gate) {
        const int64_t col = gate * H + j;
        return load(xproj, col, n) + load(hh, col, n) + load(p.b_hh, col, n);
      };
      const auto a = lstm_cell_forward<M>(pre(0), pre(1), pre(2), pre(3), load(c, j, n));
      store(a.c, c, j, n);
      store(a.h, h, j, n);
      if (y) store(a.h, y, j, n);
      if (ws) {
        store(a.i, ws, j, n);
        store(a.f, ws, H + j, n);
        store(a.g, ws, 2 * H + j, n);
        store(a.o, ws, 3 * H + j, n);
        store(a.c, ws, 4 * H + j, n);
      }
    });
  }
}

template <typename T>
void lstm_backward_rows(const LstmBackwardStep<T>& p, int64_t begin, int64_t end) {
  using M = VecMath<T>;
  const int64_t H = p.hidden;
  for (int64_t r = begin; r < end; ++r) {
    const T* dh = p.dh + r * H;
    T* dc = p.dc + r * H;
    const T* ws = p.workspace + r * kLstmWorkspaceCols * H;
    const T* c_prev = p.c_prev.row(r);
    T* dgates = p.dgates + r * kLstmGates * H;
    for_each_vector<T>(H, [&](int64_t j, int64_t n) {
      const auto d = lstm_cell_backward<M>(load(dh, j, n), load(dc, j, n), load(ws, j, n), load(ws, H + j, n),
                                           load(ws, 2 * H + j, n), load(ws, 3 * H + j, n),
                                           load(ws, 4 * H + j, n), load(c_prev, j, n));
      store(d.pre_i, dgates, j, n);
      store(d.pre_f, dgates, H + j, n);
      store(d.pre_g, dgates, 2 * H + j, n);
      store(d.pre_o, dgates, 3 * H + j, n);
      store(d.c_prev, dc, j, n);
    });
  }
}

template <typename T>
void gru_forward_rows(const GruForwardStep<T>& p, int64_t begin, int64_t end) {
  using M = VecMath<T>;
  const int64_t H = p.hidden;
  for (int64_t r = begin; r < end; ++r) {
    const T* xproj = p.xproj + r * kGruGates * H;
    const T* hh = p.hh + r * kGruGates * H;
    T* h = p.h + r * H;
    T* y = p.y + r * H;
    T* ws = p.workspace ? p.workspace + r * kGruWorkspaceCols * H : nullptr;
    for_each_vector<T>(H, [&](int64_t j, int64_t n) {
      auto hidden_side = [&](int gate) { return load(hh, gate * H + j, n) + load(p.b_hh, gate * H + j, n); };
      const auto hn = hidden_side(2);
      const auto a = gru_cell_forward<M>(load(xproj, j, n), load(xproj, H + j, n), load(xproj, 2 * H + j, n),
                                         hidden_side(0), hidden_side(1), hn, load(h, j, n));
      store(a.h, h, j, n);
      store(a.h, y, j, n);
      if (ws) {
        store(a.r, ws, j, n);
        store(a.z, ws, H + j, n);
        store(a.n, ws, 2 * H + j, n);
        store(hn, ws, 3 * H + j, n);
      }
    });
  }
}

template <typename T>
void gru_backward_rows(const GruBackwardStep<T>& p, int64_t begin, int64_t end) {
  using M = VecMath<T>;
  const int64_t H = p.hidden;
  for (int64_t r = begin; r < end; ++r) {
    T* dh = p.dh + r * H;
    const T* ws = p.workspace + r * kGruWorkspaceCols * H;
    const T* h_prev = p.h_prev.row(r);
    T* dih = p.dgates_ih + r * kGruGates * H;
    T* dhh = p.dgates_hh + r * kGruGates * H;
    for_each_vector<T>(H, [&](int64_t j, int64_t n) {
      const auto d = gru_cell_backward<M>(load(dh, j, n), load(ws, j, n), load(ws, H + j, n),
                                          load(ws, 2 * H + j, n), load(ws, 3 * H + j, n), load(h_prev, j, n));
      store(d.pre_r, dih, j, n);
      store(d.pre_z, dih, H + j, n);
      store(d.xn, dih, 2 * H + j, n);
      store(d.pre_r, dhh, j, n);
      store(d.pre_z, dhh, H + j, n);
      store(d.hn, dhh, 2 * H + j, n);
      store(d.h_prev, dh, j, n);
    });
  }
}

template <typename T>
void rnn_forward_rows(const RnnForwardStep<T>& p, int64_t begin, int64_t end) {
  using M = VecMath<T>;
  const int64_t H = p.hidden;
  for (int64_t r = begin; r < end; ++r) {
    const T* xproj = p.xproj + r * H;
    const T* hh = p.hh + r * H;
    T* h = p.h + r * H;
    T* y = p.y + r * H;
    T* ws = p.workspace ? p.workspace + r * H : nullptr;
    for_each_vector<T>(H, [&](int64_t j, int64_t n) {
      const auto out = rnn_cell_forward<M>(load(xproj, j, n) + load(hh, j, n) + load(p.b_hh, j, n), p.act);
      store(out, h, j, n);
      store(out, y, j, n);
      if (ws) store(out, ws, j, n);
    });
  }
}

template <typename T>
void rnn_backward_rows(const RnnBackwardStep<T>& p, int64_t begin, int64_t end) {
  using M = VecMath<T>;
  const int64_t H = p.hidden;
  for (int64_t r = begin; r < end; ++r) {
    const T* dh = p.dh + r * H;
    const T* ws = p.workspace + r * H;
    T* dpre = p.dpre + r * H;
    for_each_vector<T>(H, [&](int64_t j, int64_t n) {
      store(rnn_cell_backward<M>(load(dh, j, n), load(ws, j, n), p.act), dpre, j, n);
    });
  }
}

template <typename T>
StepPasses<T> make_step_passes() {
  return {&lstm_forward_rows<T>, &lstm_backward_rows<T>, &gru_forward_rows<T>,
          &gru_backward_rows<T>, &rnn_forward_rows<T>,   &rnn_backward_rows<T>};
}

}  // namespace fusedrnn::cpu::FUSEDRNN_ISA
