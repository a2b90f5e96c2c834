// Argument structs of the layer-normalised cells' row passes (cpu/layernorm_passes_impl.h): one step,
// a range of its rows, after the step's products. Row-major, contiguous; G = the cell's gates, H =
// hidden, WS = LayerNormed<Cell>::workspace_cols(H) (fusedrnn/layer_norm.h). No torch includes.
#pragma once

#include <cstdint>

#include "fusedrnn/prev_state.h"

namespace fusedrnn::cpu {

template <typename T>
struct LayerNormForwardStep {
  int64_t hidden;
  T* xw;             // [rows, G*H]: x W_ih^T (no bias) in, its normalised, scaled values out
  T* hh;             // [rows, G*H]: h_prev W_hh^T in, likewise
  const T* ln_ih;    // [G*H]
  const T* ln_hh;    // [G*H]
  const T* ln_c_w;   // [H] (LSTM)
  const T* ln_c_b;   // [H] (LSTM)
  const T* b_ih;     // [G*H] or nullptr
  const T* b_hh;     // [G*H] or nullptr
  T* c;              // [rows, H]: previous cell state in, new out (LSTM), else nullptr
  T* h;              // [rows, H]: previous h in (the GRU reads it), new h out
  T* y;              // [rows, H]: the step's output rows
  T* workspace;      // [rows, WS], or nullptr (inference)
  T* cell_scratch;   // [rows, W*H]: the plain cell's saved values when there is no workspace (the LSTM
                     // reads its o back after normalising c'), else nullptr
};

template <typename T>
struct LayerNormBackwardStep {
  int64_t hidden;
  T* dh;               // [rows, H]: gradient of h' from the next step; the GRU gets the direct part of
                       // the previous h's gradient back here
  const T* grad_y;     // [rows, H]: the output's gradient at this step
  T* dc;               // [rows, H]: gradient of c' in, of the previous c out (LSTM), else nullptr
  const T* workspace;  // [rows, WS]
  const T* ln_ih;      // [G*H]
  const T* ln_hh;      // [G*H]
  const T* ln_c_w;     // [H] (LSTM)
  const T* ln_c_b;     // [H] (LSTM)
  PrevState<T> h_prev; // the step's previous h (GRU)
  PrevState<T> c_prev; // the step's previous c (LSTM)
  T* dpre_ih;          // [rows, G*H] out: gradients of the input side after its layer norm (the LSTM's
                       // pre-activations: both sides)
  T* dpre_hh;          // [rows, G*H] out: the hidden side's (GRU), else nullptr
  T* dlc;              // [rows, H] out: gradient of LN(c'), for ln_c's gradients (LSTM), else nullptr
  T* dxw;              // [rows, G*H] out: gradient of x W_ih^T
  T* dhh;              // [rows, G*H] out: gradient of h_prev W_hh^T
};

}  // namespace fusedrnn::cpu
