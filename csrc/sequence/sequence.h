// Sequence-level ATen pieces shared by every cell and backend: the schedule, the input projection, the
// previous state of every packed row, and the weight gradients as GEMMs over all steps.
// Device-agnostic.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <vector>

#include "fusedrnn/schedule.h"
#include "sequence/layer.h"

namespace fusedrnn {

// The layer's steps in visiting order (fusedrnn/schedule.h), from its batch_sizes or, for dense input,
// [B] * T.
std::vector<Step> layer_schedule(const LayerInputs& in);

// x: [N, I] -> [N, G*H] = x W_ih^T + b_ih, one GEMM for all steps.
at::Tensor input_projection(const at::Tensor& x, const at::Tensor& w_ih, const std::optional<at::Tensor>& b_ih);

// A schedule whose every step has all B rows: each step's previous states are the rows of the step
// visited before it, so the gathered matrix (below) is the states shifted by one step, with the
// initial state in the gap. Rows [prev_begin, prev_begin + rest) of it are rows
// [states_begin, states_begin + rest) of states; rows [initial_begin, initial_begin + B) are initial.
struct DenseShift {
  int64_t rest, prev_begin, states_begin, initial_begin;
};
// std::nullopt when some step has fewer rows (a PackedSequence of unequal lengths).
std::optional<DenseShift> dense_shift(const std::vector<Step>& steps, int64_t B);

// The state each packed row started its step from: [N, P], gathered from
// states: [N, P] (the layer output, one row per packed row) and initial: [B, P].
at::Tensor gather_prev_state(const at::Tensor& states, const at::Tensor& initial, const std::vector<Step>& steps);
// The same, written into prev (a tensor shaped like states) and returned.
at::Tensor gather_prev_state_into(const at::Tensor& states, const at::Tensor& initial, const std::vector<Step>& steps,
                                  at::Tensor prev);

struct LinearGrads {
  at::Tensor dx, dw_ih, dw_hh, db_ih, db_hh;  // biases' gradients are empty tensors without bias
};

// Gradients of the two linear maps of a layer, batched over all steps (no per-step accumulation):
// dgates_ih: [N, G*H], dgates_hh: [N, G*H], x: [N, I], h_prev: [N, P], w_ih: [G*H, I].
LinearGrads linear_grads(const at::Tensor& dgates_ih, const at::Tensor& dgates_hh, const at::Tensor& x,
                         const at::Tensor& h_prev, const at::Tensor& w_ih, bool has_bias);

// out = a @ b, written into out's storage (out may be a narrowed view).
inline void mm_into(at::Tensor out, const at::Tensor& a, const at::Tensor& b) { at::mm_out(out, a, b); }

template <typename T>
T* data_or_null(const std::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t->data_ptr<T>() : nullptr;
}

}  // namespace fusedrnn
