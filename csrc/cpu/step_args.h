// Argument structs of the CPU step kernels (cpu/kernels_impl.h): sizes, raw pointers, flags; no
// torch includes. Matrices are row-major and contiguous with the row length given in the comment,
// H = hidden, P = output (proj or hidden), L = SIMD lanes of the element type.
//
// Recurrent weights reach the kernels packed into panels (cpu/packed_weights.h). A panel is
// [K, NV, L]: for each k, NV vectors of L lanes that one register tile multiplies at once.
//   forward:  W_hh: [G*H, P] -> h W_hh^T; panel p holds `forward_panel_blocks(G)` blocks of L hidden
//             units, vector v = block * G + gate, so one tile holds every gate of its units;
//   backward: W_hh: [M, P] -> d W_hh; panel p holds the kPanelVectors * L output columns from
//             p * kPanelVectors * L on, vector v = the v-th L of them.
// Lanes past H (or P) are zero.
#pragma once

#include <cstdint>

#include "fusedrnn/params.h"

namespace fusedrnn::cpu {

constexpr int kPanelVectors = 4;

// Unit blocks per forward panel: one (all 3 or 4 gates of L units) for GRU and LSTM, four for the RNN.
constexpr int forward_panel_blocks(int gates) { return gates == 1 ? kPanelVectors : 1; }

// The products of a step, computed inside the kernel from packed panels: h_prev W_hh^T, plus
// x_t W_ih^T when input_panels is set (where fuse_input_product says a separate product over all
// steps would only send its [N, G*H] result through memory and back; the step's xproj is then null).
template <typename T>
struct RecurrentProduct {
  const T* panels;        // forward panels of W_hh: [ceil(H / (blocks * L)), k, G * blocks, L]
  int64_t k;              // inner size: P for the LSTM, H otherwise
  PrevState<T> h_prev;    // h_prev.row(r): [k], the state the step starts from
  const T* input_panels;  // forward panels of W_ih: [.., input_k, G * blocks, L], or nullptr
  int64_t input_k;        // I
  const T* x;             // [rows, I]: the step's inputs (with input_panels)
};

template <typename T>
struct LstmForwardStep {
  int64_t rows, hidden;
  RecurrentProduct<T> product;
  const T* xproj;  // [rows, 4H]: x W_ih^T (no bias), or nullptr when product.input_panels is set
  const T* b_ih;   // [4H] or nullptr
  const T* b_hh;   // [4H] or nullptr
  T* c;            // [rows, H]: previous cell state in, new cell state out
  T* h;            // [rows, H]: o * tanh(c) out (the final state, or the input of the projection)
  T* y;            // [rows, H] or nullptr: a second copy of h (the layer output when not projecting)
  T* workspace;    // [rows, 5H] or nullptr (inference)
};

template <typename T>
struct GruForwardStep {
  int64_t rows, hidden;
  RecurrentProduct<T> product;  // its h_prev also feeds h' = (1 - z) n + z h_prev; its input part
                                // (when fused) keeps x_n apart from h_n
  const T* xproj;  // [rows, 3H]: x W_ih^T (no bias), or nullptr when product.input_panels is set
  const T* b_ih;   // [3H] or nullptr
  const T* b_hh;   // [3H] or nullptr
  T* h;            // [rows, H]: new hidden state out (the final state)
  T* y;            // [rows, H]: the layer output
  T* workspace;    // [rows, 4H] or nullptr (inference)
};

template <typename T>
struct RnnForwardStep {
  int64_t rows, hidden;
  Activation act;
  RecurrentProduct<T> product;
  const T* xproj;  // [rows, H]: x W_ih^T (no bias), or nullptr when product.input_panels is set
  const T* b_ih;   // [H] or nullptr
  const T* b_hh;   // [H] or nullptr
  T* h;            // [rows, H]: new hidden state out (the final state)
  T* y;            // [rows, H]
  T* workspace;    // [rows, H] or nullptr
};

// Backward steps: the gradient arriving at h' is dh + grad_y (grad_y may be null).
template <typename T>
struct LstmBackwardStep {
  int64_t rows, hidden;
  const T* dh;         // [rows, H]: gradient of o * tanh(c) from the next step (or after back-projection)
  const T* grad_y;     // [rows, H] or nullptr: the output's gradient at this step
  T* dc;               // [rows, H]: gradient of c in, gradient of the previous c out
  const T* workspace;  // [rows, 5H]
  PrevState<T> c_prev;
  T* dgates;           // [rows, 4H]: gradients of the pre-activations
};

template <typename T>
struct GruBackwardStep {
  int64_t rows, hidden;
  T* dh;               // [rows, H]: gradient of h' in, direct part of the previous h's gradient out
  const T* grad_y;     // [rows, H] or nullptr
  const T* workspace;  // [rows, 4H]
  PrevState<T> h_prev;
  T* dgates_ih;        // [rows, 3H]: gradients of x W_ih^T + b_ih
  T* dgates_hh;        // [rows, 3H]: gradients of h W_hh^T + b_hh
};

template <typename T>
struct RnnBackwardStep {
  int64_t rows, hidden;
  Activation act;
  const T* dh;         // [rows, H]
  const T* grad_y;     // [rows, H] or nullptr
  const T* workspace;  // [rows, H]
  T* dpre;             // [rows, H]
};

// out = a W (or out += a W), W packed as backward panels.
template <typename T>
struct ColumnProduct {
  int64_t rows, k, cols;
  const T* a;        // [rows, k], row stride lda; or, when a_transposed, [k, rows] with row stride lda
  int64_t lda;
  bool a_transposed; // a^T W: the weight gradients, dW = dgates^T x
  const T* panels;   // backward panels of W: [ceil(cols / (4L)), k, 4, L]
  T* out;            // [rows, cols], row stride ldo
  int64_t ldo;
  bool accumulate;   // add to out (GRU: out already holds dh * z)
};

}  // namespace fusedrnn::cpu
