// Layer-normalised cells (Ba, Kiros & Hinton 2016; the formulation of haste's LayerNormLSTM), built on
// a plain cell's math (lstm.h, gru.h). With LN(v; g, b) = g * (v - mean(v)) / sqrt(var(v) + eps) + b
// over a row's features (biased variance, eps = 1e-5, as torch.nn.LayerNorm):
//   LSTM: gates = LN(x W_ih^T; ln_ih) + LN(h W_hh^T; ln_hh) + b_ih + b_hh (each LN over all 4H), the
//         LSTM's gate math and c' = f * c + i * g, then h' = o * tanh(LN(c'; ln_c_weight, ln_c_bias));
//   GRU:  input side LN(x W_ih^T; ln_ih) + b_ih, hidden side LN(h W_hh^T; ln_hh) + b_hh (each over all
//         3H), then the GRU's math on the two sides.
// A row's statistics reduce over all its units, so a step normalises whole rows, after its products.
// No torch includes.
#pragma once

#include <cstdint>

namespace fusedrnn {

constexpr double kLayerNormEps = 1e-5;

// Where a training forward saves what the backward needs, one workspace row per packed row:
//   [0, G*H)            the input side's normalised product  (x W_ih^T - mean) * rstd
//   [G*H, 2*G*H)        the hidden side's                     (h W_hh^T - mean) * rstd
//   [cell, +W*H)        the plain cell's workspace columns (lstm.h, gru.h)
//   [c_hat, +H)         LSTM: the normalised new cell state
//   [stats, +2 or 3)    rstd of the input side, of the hidden side, (LSTM) of c'
template <typename Cell>
struct LayerNormed {
  static constexpr bool normalises_c = Cell::states == 2;  // the LSTM's c' is normalised before its tanh
  static constexpr int kStats = normalises_c ? 3 : 2;

  static constexpr int64_t xhat_ih(int64_t) { return 0; }
  static constexpr int64_t xhat_hh(int64_t H) { return Cell::gates * H; }
  static constexpr int64_t cell(int64_t H) { return 2 * Cell::gates * H; }
  static constexpr int64_t c_hat(int64_t H) { return cell(H) + Cell::workspace_cols * H; }
  static constexpr int64_t stats(int64_t H) { return c_hat(H) + (normalises_c ? H : 0); }
  static constexpr int64_t workspace_cols(int64_t H) { return stats(H) + kStats; }
};

}  // namespace fusedrnn
