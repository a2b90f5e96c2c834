// LSTM: gates = x W_ih^T + b_ih + h W_hh^T + b_hh, split i, f, g, o; i, f, o = sigmoid, g = tanh;
// c' = f * c + i * g; h' = o * tanh(c') (then W_hr h' with proj_size). Traits as in cell.h.
#pragma once

#include "fusedrnn/cell.h"

namespace fusedrnn {

struct LstmCell {
  static constexpr CellId id = CellId::Lstm;
  static constexpr const char* name = "lstm";
  static constexpr int gates = 4;
  static constexpr int states = 2;
  static constexpr int workspace_cols = 5;  // activated i, f, g, o, then the new c
  static constexpr int saved_o = 3;
  static constexpr int saved_c = 4;
  static constexpr int input_apart = -1;
  static constexpr bool h_feeds_through = false;
  static constexpr bool projectable = true;
  static constexpr bool takes_nonlinearity = false;

  template <typename M, typename V, typename Unit>
  static FUSEDRNN_HD V forward(const Unit& u, Activation) {
    const V pre_i = u.sum(0), pre_f = u.sum(1), pre_g = u.sum(2), pre_o = u.sum(3), c_prev = u.c();
    const V i = M::sigmoid(pre_i);
    const V f = M::sigmoid(pre_f);
    const V g = M::tanh(pre_g);
    const V o = M::sigmoid(pre_o);
    const V c = f * c_prev + i * g;
    const V h = o * M::tanh(c);
    u.set_c(c);
    u.save(0, i);
    u.save(1, f);
    u.save(2, g);
    u.save(3, o);
    u.save(saved_c, c);
    return h;
  }

  // dh: gradient of o * tanh(c) (after back-projection with proj_size); u.dc(): gradient of c from
  // the next step (and from c_n).
  template <typename M, typename V, typename Unit>
  static FUSEDRNN_HD V backward(V dh, const Unit& u, Activation) {
    const V one(1);
    const V dc = u.dc(), i = u.saved(0), f = u.saved(1), g = u.saved(2), o = u.saved(3), c = u.saved(saved_c);
    const V c_prev = u.c_prev();
    const V tanh_c = M::tanh(c);
    const V dc_total = dc + dh * o * (one - tanh_c * tanh_c);
    const V d_i = dc_total * g * i * (one - i);
    const V d_f = dc_total * c_prev * f * (one - f);
    const V d_g = dc_total * i * (one - g * g);
    const V d_o = dh * tanh_c * o * (one - o);
    const V d_c_prev = dc_total * f;
    u.set_dgate(0, d_i);
    u.set_dgate(1, d_f);
    u.set_dgate(2, d_g);
    u.set_dgate(3, d_o);
    u.set_dc(d_c_prev);
    return V(0);
  }
};

}  // namespace fusedrnn
