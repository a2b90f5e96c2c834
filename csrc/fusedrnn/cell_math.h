// Element-wise forward and backward math of the LSTM, GRU and vanilla RNN cells.
//
// The one place this math lives: the CPU kernels instantiate it with SIMD vectors
// (at::vec::Vectorized), the CUDA kernels with scalars. No torch includes here.
//
// Every function is a template over
//   V: the value type (float, double, or a SIMD vector with + - * / and a broadcast constructor), and
//   M: a math policy with static sigmoid(V), tanh(V), relu(V) and relu_grad(V) (1 where the output > 0).
// Gate order and formulas are PyTorch's (see DESIGN.md section 1).
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define FUSEDRNN_HD __host__ __device__ __forceinline__
#else
#define FUSEDRNN_HD inline
#endif

namespace fusedrnn {

enum class Activation : int { Tanh = 0, Relu = 1 };

// Scalar math policy, usable on host and device.
template <typename T>
struct ScalarMath;

template <>
struct ScalarMath<float> {
  static FUSEDRNN_HD float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
  static FUSEDRNN_HD float tanh(float x) { return tanhf(x); }
  // NaN propagates (NaN < 0 is false), as torch.relu does.
  static FUSEDRNN_HD float relu(float x) { return x < 0.0f ? 0.0f : x; }
  static FUSEDRNN_HD float relu_grad(float y) { return y > 0.0f ? 1.0f : 0.0f; }
};

template <>
struct ScalarMath<double> {
  static FUSEDRNN_HD double sigmoid(double x) { return 1.0 / (1.0 + ::exp(-x)); }
  static FUSEDRNN_HD double tanh(double x) { return ::tanh(x); }
  static FUSEDRNN_HD double relu(double x) { return x < 0.0 ? 0.0 : x; }
  static FUSEDRNN_HD double relu_grad(double y) { return y > 0.0 ? 1.0 : 0.0; }
};

// ---------------------------------------------------------------------------------------------
// LSTM. Pre-activations are x W_ih^T + b_ih + h W_hh^T + b_hh, split i, f, g, o.

template <typename V>
struct LstmActivations {
  V i, f, g, o;  // activated gates
  V c;           // new cell state
  V h;           // o * tanh(c): the new hidden state before the optional projection
};

template <typename M, typename V>
FUSEDRNN_HD LstmActivations<V> lstm_cell_forward(V pre_i, V pre_f, V pre_g, V pre_o, V c_prev) {
  LstmActivations<V> a;
  a.i = M::sigmoid(pre_i);
  a.f = M::sigmoid(pre_f);
  a.g = M::tanh(pre_g);
  a.o = M::sigmoid(pre_o);
  a.c = a.f * c_prev + a.i * a.g;
  a.h = a.o * M::tanh(a.c);
  return a;
}

template <typename V>
struct LstmGrads {
  V pre_i, pre_f, pre_g, pre_o;  // gradients of the four pre-activations
  V c_prev;                      // gradient flowing to the previous cell state
};

// dh: gradient of o * tanh(c) (after back-projection when proj_size > 0);
// dc: gradient of c arriving from the next step (and from c_n).
template <typename M, typename V>
FUSEDRNN_HD LstmGrads<V> lstm_cell_backward(V dh, V dc, V i, V f, V g, V o, V c, V c_prev) {
  const V one(1);
  const V tanh_c = M::tanh(c);
  const V dc_total = dc + dh * o * (one - tanh_c * tanh_c);
  LstmGrads<V> d;
  d.pre_i = dc_total * g * i * (one - i);
  d.pre_f = dc_total * c_prev * f * (one - f);
  d.pre_g = dc_total * i * (one - g * g);
  d.pre_o = dh * tanh_c * o * (one - o);
  d.c_prev = dc_total * f;
  return d;
}

// ---------------------------------------------------------------------------------------------
// GRU ("reset after", as PyTorch and cuDNN): with x-side pre-activations xr, xz, xn (b_ih included)
// and h-side products hr, hz, hn (b_hh included):
//   r = sig(xr + hr), z = sig(xz + hz), n = tanh(xn + r * hn), h' = (1 - z) * n + z * h.

template <typename V>
struct GruActivations {
  V r, z, n;
  V h;
};

template <typename M, typename V>
FUSEDRNN_HD GruActivations<V> gru_cell_forward(V xr, V xz, V xn, V hr, V hz, V hn, V h_prev) {
  GruActivations<V> a;
  a.r = M::sigmoid(xr + hr);
  a.z = M::sigmoid(xz + hz);
  a.n = M::tanh(xn + a.r * hn);
  a.h = a.n + a.z * (h_prev - a.n);
  return a;
}

template <typename V>
struct GruGrads {
  V pre_r, pre_z;  // gradients of the r and z pre-activations (same on the x and the h side)
  V xn;            // gradient of the x-side n pre-activation
  V hn;            // gradient of the h-side n product (W_hn h + b_hn)
  V h_prev;        // the direct part of the previous hidden state's gradient: dh * z
};

// hn: the h-side n product saved by the forward.
template <typename M, typename V>
FUSEDRNN_HD GruGrads<V> gru_cell_backward(V dh, V r, V z, V n, V hn, V h_prev) {
  const V one(1);
  const V dn = dh * (one - z);
  const V dz = dh * (h_prev - n);
  GruGrads<V> d;
  d.xn = dn * (one - n * n);
  d.hn = d.xn * r;
  d.pre_r = d.xn * hn * r * (one - r);
  d.pre_z = dz * z * (one - z);
  d.h_prev = dh * z;
  return d;
}

// ---------------------------------------------------------------------------------------------
// Vanilla RNN: h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh).

template <typename M, typename V>
FUSEDRNN_HD V rnn_cell_forward(V pre, Activation act) {
  return act == Activation::Tanh ? M::tanh(pre) : M::relu(pre);
}

// h: the activated output of the step.
template <typename M, typename V>
FUSEDRNN_HD V rnn_cell_backward(V dh, V h, Activation act) {
  const V one(1);
  return act == Activation::Tanh ? dh * (one - h * h) : dh * M::relu_grad(h);
}

}  // namespace fusedrnn
