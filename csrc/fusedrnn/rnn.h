// Vanilla (Elman) RNN: h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act = tanh or relu. Traits as in
// cell.h.
#pragma once

#include "fusedrnn/cell.h"

namespace fusedrnn {

struct RnnCell {
  static constexpr CellId id = CellId::Rnn;
  static constexpr const char* name = "rnn";
  static constexpr int gates = 1;
  static constexpr int states = 1;
  static constexpr int workspace_cols = 1;  // the activated output h'
  static constexpr int saved_c = -1;
  static constexpr int input_apart = -1;
  static constexpr bool h_feeds_through = false;
  static constexpr bool projectable = false;
  static constexpr bool takes_nonlinearity = true;

  template <typename M, typename V, typename Unit>
  static FUSEDRNN_HD V forward(const Unit& u, Activation act) {
    const V pre = u.sum(0);
    const V h = act == Activation::Tanh ? M::tanh(pre) : M::relu(pre);
    u.save(0, h);
    return h;
  }

  template <typename M, typename V, typename Unit>
  static FUSEDRNN_HD V backward(V dh, const Unit& u, Activation act) {
    const V one(1);
    const V h = u.saved(0);
    u.set_dgate(0, act == Activation::Tanh ? dh * (one - h * h) : dh * M::relu_grad(h));
    return V(0);
  }
};

}  // namespace fusedrnn
