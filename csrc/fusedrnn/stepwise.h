// The step-wise form of a cell: per step, one product h W_hh^T, then a row pass over the step's rows
// that runs the plain cell's math (lstm.h, gru.h, rnn.h) with any of
//
// - layer norm (Ba, Kiros & Hinton 2016; haste's LayerNormLSTM), the LSTM and the GRU only. With
//   LN(v; g, b) = g * (v - mean(v)) / sqrt(var(v) + eps) + b over a row's features (biased variance,
//   eps = 1e-5, as torch.nn.LayerNorm):
//     LSTM: gates = LN(x W_ih^T; ln_ih) + LN(h W_hh^T; ln_hh) + b_ih + b_hh (each LN over all 4H), the
//           LSTM's gate math and c~ = f * c + i * g, then h~ = o * tanh(LN(c~; ln_c_weight, ln_c_bias));
//     GRU:  input side LN(x W_ih^T; ln_ih) + b_ih, hidden side LN(h W_hh^T; ln_hh) + b_hh (each over
//           all 3H), then the GRU's math on the two sides.
//   A row's statistics reduce over all its units, so a step normalises whole rows, after its products.
// - zoneout (Krueger et al. 2016): h' = m_h * h + (1 - m_h) * h~, and the LSTM's c' = m_c * c +
//   (1 - m_c) * c~, where h~, c~ are the cell's new values (h~ from the unzoned c~) and m the weight of
//   the previous value, per step, row and unit: a Bernoulli(p) draw in training, p in evaluation.
// - recurrent dropout (Gal & Ghahramani 2016): h enters W_hh as h * d, d a fixed [B, H] mask (0 or
//   1 / (1 - p)) over the whole sequence; the state, the output and the GRU's z * h use h itself.
// No torch includes.
#pragma once

#include <cstdint>

namespace fusedrnn {

constexpr double kLayerNormEps = 1e-5;

// Where a training forward saves what the backward needs, one workspace row per packed row (the
// columns present depend on the options):
//   [0, G*H)           layer norm: the input side's normalised product  (x W_ih^T - mean) * rstd
//   [G*H, 2*G*H)       layer norm: the hidden side's                     (h W_hh^T - mean) * rstd
//   [cell, +W*H)       the plain cell's workspace columns (c~ in its saved_c column for the LSTM)
//   [c_hat, +H)        layer-normalised LSTM: the normalised c~
//   [c_state, +H)      zoned-out LSTM: the new cell state c' (the next step's previous c)
//   [stats, +2 or 3)   layer norm: rstd of the input side, of the hidden side, (LSTM) of c~
struct StepwiseLayout {
  int64_t hidden;
  int gates;
  int cell_cols;     // the plain cell's workspace_cols
  int saved_c;       // the plain cell's saved_c column (-1 without a cell state)
  bool norm;         // layer norm
  bool zoneout;

  bool normalises_c() const { return norm && saved_c >= 0; }  // the LSTM's c~ is normalised before its tanh
  bool zones_c() const { return zoneout && saved_c >= 0; }
  int64_t xhat_ih() const { return 0; }
  int64_t xhat_hh() const { return gates * hidden; }
  int64_t cell() const { return norm ? 2 * gates * hidden : 0; }
  int64_t c_hat() const { return cell() + cell_cols * hidden; }
  int64_t c_state() const { return c_hat() + (normalises_c() ? hidden : 0); }
  int64_t stats() const { return c_state() + (zones_c() ? hidden : 0); }
  int64_t cols() const { return stats() + (norm ? (normalises_c() ? 3 : 2) : 0); }
  // the column of the new cell state a step leaves: c' itself when zoned out, else the cell's c~
  int64_t c_out() const { return zones_c() ? c_state() : cell() + saved_c * hidden; }
};

template <typename Cell>
StepwiseLayout stepwise_layout(int64_t hidden, bool norm, bool zoneout) {
  return {hidden, Cell::gates, Cell::workspace_cols, Cell::saved_c, norm, zoneout};
}

}  // namespace fusedrnn
