// Argument structs of the CPU step kernels (cpu/passes_impl.h): sizes, raw pointers, flags; no torch
// includes. Matrices are row-major and contiguous with the row length given in the comment,
// G = the cell's gates, W = its workspace columns, H = hidden, P = output (proj or hidden),
// L = SIMD lanes of the element type.
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

#include "fusedrnn/prev_state.h"
#include "fusedrnn/scalar_math.h"

namespace fusedrnn::cpu {

constexpr int kPanelVectors = 4;

// Unit blocks per forward panel: one (all G gates of L units) for cells with several gates, four for
// a one-gate cell (the RNN).
constexpr int forward_panel_blocks(int gates) { return gates == 1 ? kPanelVectors : 1; }

// The products of a step, computed inside the kernel from packed panels: h_prev W_hh^T, plus
// x_t W_ih^T when input_panels is set (where fuse_input_product says a separate product over all
// steps would only send its [N, G*H] result through memory and back; the step's xproj is then null).
template <typename T>
struct RecurrentProduct {
  const T* panels;        // forward panels of W_hh: [ceil(H / (blocks * L)), k, G * blocks, L]
  int64_t k;              // inner size: P
  PrevState<T> h_prev;    // h_prev.row(r): [k], the state the step starts from
  const T* input_panels;  // forward panels of W_ih: [.., input_k, G * blocks, L], or nullptr
  int64_t input_k;        // I
  const T* x;             // [rows, I]: the step's inputs (with input_panels)
};

// One forward step of any cell: the products, then the cell's forward for every unit of the panels.
template <typename T>
struct ForwardStep {
  int64_t rows, hidden;
  Activation act;               // cells that take a nonlinearity
  RecurrentProduct<T> product;  // its h_prev also feeds cells whose h' reads h directly (GRU); with the
                                // input product fused, the cell's input_apart gate keeps x apart
  const T* xproj;  // [rows, G*H]: x W_ih^T (no bias), or nullptr when product.input_panels is set
  const T* hh;     // [rows, G*H]: h_prev W_hh^T computed before the step (product unused), or nullptr
  const T* b_ih;   // [G*H] or nullptr
  const T* b_hh;   // [G*H] or nullptr
  T* c;            // [rows, H]: previous cell state in, new cell state out (cells with c), else nullptr
  T* h;            // [rows, H]: the new h out (the final state, or the input of the projection)
  T* y;            // [rows, H] or nullptr: a second copy of h (the layer output when not projecting)
  T* workspace;    // [rows, W*H] or nullptr (inference)
};

// One backward step of any cell: the gradient arriving at h' is dh + grad_y (grad_y may be null).
template <typename T>
struct BackwardStep {
  int64_t rows, hidden;
  Activation act;
  T* dh;               // [rows, H]: gradient of h' from the next step (or after back-projection); cells
                       // with h_feeds_through get the direct part of the previous h's gradient back here
  const T* grad_y;     // [rows, H] or nullptr: the output's gradient at this step
  T* dc;               // [rows, H]: gradient of c in, of the previous c out (cells with c), else nullptr
  const T* workspace;  // [rows, W*H]
  PrevState<T> h_prev; // the step's previous h (read by cells with h_feeds_through)
  PrevState<T> c_prev; // the step's previous c (cells with c)
  T* dgates;           // [rows, G*H]: gradients of the pre-activations (the input side for cells with
                       // an input_apart gate)
  T* dgates_hh;        // [rows, G*H]: the hidden side's, for cells with an input_apart gate; else nullptr
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
  bool accumulate;   // add to out (cells with h_feeds_through: out already holds the direct part)
};

// A matrix-vector product on a caller's unpacked, row-major matrix: a single row's step reads each
// weight once either way, and unpacked it needs no packed-weight cache (whose check reads them again).
//   row dots:    out[r] = sum over c of w[r][c] v[c], for a range of rows r;
//   column sums: out[c] (+)= sum over r of v[r] w[r][c], for a range of columns c.
template <typename T>
struct MatVec {
  const T* w;       // [rows, cols]
  int64_t rows, cols;
  const T* v;       // [cols] (row dots) or [rows] (column sums)
  T* out;           // [rows] (row dots) or [cols] (column sums)
  bool accumulate;  // column sums: add to out
};

}  // namespace fusedrnn::cpu
