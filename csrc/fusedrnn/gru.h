// GRU ("reset after", as PyTorch and cuDNN): with input sides xr, xz, xn (b_ih included) and hidden
// sides hr, hz, hn (b_hh included): r = sig(xr + hr), z = sig(xz + hz), n = tanh(xn + r * hn),
// h' = (1 - z) * n + z * h. The reset gate multiplies hn including b_hn. Traits as in cell.h.
#pragma once

#include "fusedrnn/cell.h"

namespace fusedrnn {

struct GruCell {
  static constexpr CellId id = CellId::Gru;
  static constexpr const char* name = "gru";
  static constexpr int gates = 3;
  static constexpr int states = 1;
  static constexpr int workspace_cols = 4;  // r, z, n, then the hidden side of n, hn = W_hn h + b_hn
  static constexpr int saved_c = -1;
  static constexpr int input_apart = 2;  // n
  static constexpr bool h_feeds_through = true;
  static constexpr bool projectable = false;
  static constexpr bool takes_nonlinearity = false;

  template <typename M, typename V, typename Unit>
  static FUSEDRNN_HD V forward(const Unit& u, Activation) {
    const V xr = u.input(0), xz = u.input(1), xn = u.input(2);
    const V hr = u.hidden(0), hz = u.hidden(1), hn = u.hidden(2), h_prev = u.h_prev();
    const V r = M::sigmoid(xr + hr);
    const V z = M::sigmoid(xz + hz);
    const V n = M::tanh(xn + r * hn);
    const V h = n + z * (h_prev - n);
    u.save(0, r);
    u.save(1, z);
    u.save(2, n);
    u.save(3, hn);
    return h;
  }

  // The r and z gradients are the same on both sides; n's input side gets dn (1 - n^2), its hidden
  // side that times r. Returns dh * z, the direct part of the previous h's gradient.
  template <typename M, typename V, typename Unit>
  static FUSEDRNN_HD V backward(V dh, const Unit& u, Activation) {
    const V one(1);
    const V r = u.saved(0), z = u.saved(1), n = u.saved(2), hn = u.saved(3), h_prev = u.h_prev();
    const V dn = dh * (one - z);
    const V dz = dh * (h_prev - n);
    const V d_xn = dn * (one - n * n);
    const V d_hn = d_xn * r;
    const V d_r = d_xn * hn * r * (one - r);
    const V d_z = dz * z * (one - z);
    const V d_h_prev = dh * z;
    u.set_dgate(0, d_r);
    u.set_dgate(1, d_z);
    u.set_dgate_apart(2, d_xn, d_hn);
    return d_h_prev;
  }
};

}  // namespace fusedrnn
