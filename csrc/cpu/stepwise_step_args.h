// Argument structs of the step-wise cells' row passes (cpu/stepwise_passes_impl.h): one step, a range
// of its rows, after the step's products. Row-major, contiguous; G = the cell's gates, S its states,
// H = hidden, WS = StepwiseLayout::cols() (fusedrnn/stepwise.h). Optional inputs are nullptr when
// absent: the norm weights without layer norm, zoneout without zoneout, recurrent_mask without
// recurrent dropout. No torch includes.
#pragma once

#include <cstdint>

#include "fusedrnn/prev_state.h"
#include "fusedrnn/stepwise.h"

namespace fusedrnn::cpu {

template <typename T>
struct StepwiseForwardStep {
  StepwiseLayout layout;
  Activation act;
  T* xw;                    // [rows, G*H]: x W_ih^T (no bias); with layer norm, normalised in place
  T* hh;                    // [rows, G*H]: (h * d) W_hh^T, likewise
  const T* ln_ih;           // [G*H]
  const T* ln_hh;           // [G*H]
  const T* ln_c_w;          // [H] (LSTM)
  const T* ln_c_b;          // [H] (LSTM)
  const T* b_ih;            // [G*H] or nullptr
  const T* b_hh;            // [G*H] or nullptr
  const T* zoneout;         // [rows, S*H]: the previous h's (then c's) weight m
  const T* recurrent_mask;  // [rows, H]: d
  T* c;                     // [rows, H]: previous cell state in, new out (LSTM), else nullptr
  T* h;                     // [rows, H]: previous h in, new h out
  T* h_dropped;             // [rows, H]: new h * d out, the next step's product's input (with d)
  T* y;                     // [rows, H]: the step's output rows
  T* workspace;             // [rows, WS], or nullptr (inference)
  T* cell_scratch;          // [rows, W*H]: the plain cell's saved values when there is no workspace (the
                            // layer-normalised LSTM reads its o and c~ back), else nullptr
};

template <typename T>
struct StepwiseBackwardStep {
  StepwiseLayout layout;
  Activation act;
  T* dh;                    // [rows, H]: the direct part of h''s gradient (zoneout's, the GRU's z * h) in,
                            // the previous h's direct part out
  const T* dh_product;      // [rows, H]: h''s gradient through the next step's product, (dhh W_hh), before d
  const T* grad_y;          // [rows, H]: the output's gradient at this step
  T* dc;                    // [rows, H]: gradient of c' in, of the previous c out (LSTM), else nullptr
  const T* workspace;       // [rows, WS]
  const T* ln_ih;           // [G*H]
  const T* ln_hh;           // [G*H]
  const T* ln_c_w;          // [H] (LSTM)
  const T* ln_c_b;          // [H] (LSTM)
  const T* zoneout;         // [rows, S*H]
  const T* recurrent_mask;  // [rows, H]
  PrevState<T> h_prev;      // the step's previous h (GRU)
  PrevState<T> c_prev;      // the step's previous c (LSTM)
  T* dpre_ih;               // [rows, G*H] out: the gates' gradients (the input side's, for a cell with a
                            // gate kept apart), after any layer norm
  T* dpre_hh;               // [rows, G*H] out: the hidden side's (GRU), else nullptr
  T* dlc;                   // [rows, H] out: gradient of LN(c~), for ln_c's gradients (layer-normalised
                            // LSTM), else nullptr
  T* dxw;                   // [rows, G*H] out: gradient of x W_ih^T (layer norm; else it is dpre_ih)
  T* dhh;                   // [rows, G*H] out: gradient of (h * d) W_hh^T (likewise)
};

}  // namespace fusedrnn::cpu
