#include "sequence/sequence.h"

namespace fusedrnn {

std::vector<Step> layer_schedule(const LayerInputs& in) {
  std::vector<int64_t> batch(in.shape.T, in.shape.B);
  if (in.shape.packed) {
    const at::Tensor bs = in.batch_sizes->contiguous();
    batch.assign(bs.data_ptr<int64_t>(), bs.data_ptr<int64_t>() + bs.numel());
  }
  return make_schedule(batch.data(), static_cast<int64_t>(batch.size()), in.reverse);
}

at::Tensor input_projection(const at::Tensor& x, const at::Tensor& w_ih, const std::optional<at::Tensor>& b_ih) {
  if (b_ih.has_value() && b_ih->defined()) return at::addmm(*b_ih, x, w_ih.t());
  return at::mm(x, w_ih.t());
}

at::Tensor gather_prev_state(const at::Tensor& states, const at::Tensor& initial, const std::vector<Step>& steps) {
  return gather_prev_state_into(states, initial, steps, at::empty_like(states));
}

std::optional<DenseShift> dense_shift(const std::vector<Step>& steps, int64_t B) {
  const int64_t T = static_cast<int64_t>(steps.size());
  if (T == 0 || steps.front().rows != B || steps.back().rows != B) return std::nullopt;
  const int64_t rest = (T - 1) * B;
  const bool reverse = T > 1 && steps[0].t > steps[1].t;
  return reverse ? DenseShift{rest, 0, B, rest} : DenseShift{rest, B, 0, 0};
}

at::Tensor gather_prev_state_into(const at::Tensor& states, const at::Tensor& initial, const std::vector<Step>& steps,
                                  at::Tensor prev) {
  if (const auto shift = dense_shift(steps, initial.size(0))) {  // two block copies instead of one per step
    prev.narrow(0, shift->initial_begin, initial.size(0)).copy_(initial);
    if (shift->rest > 0) {
      prev.narrow(0, shift->prev_begin, shift->rest).copy_(states.narrow(0, shift->states_begin, shift->rest));
    }
    return prev;
  }
  for (const Step& s : steps) {
    if (s.prev_rows > 0) {
      prev.narrow(0, s.offset, s.prev_rows).copy_(states.narrow(0, s.prev_offset, s.prev_rows));
    }
    if (s.rows > s.prev_rows) {
      prev.narrow(0, s.offset + s.prev_rows, s.rows - s.prev_rows)
          .copy_(initial.narrow(0, s.prev_rows, s.rows - s.prev_rows));
    }
  }
  return prev;
}

LinearGrads linear_grads(const at::Tensor& dgates_ih, const at::Tensor& dgates_hh, const at::Tensor& x,
                         const at::Tensor& h_prev, const at::Tensor& w_ih, bool has_bias) {
  LinearGrads g;
  g.dx = at::mm(dgates_ih, w_ih);
  g.dw_ih = at::mm(dgates_ih.t(), x);
  g.dw_hh = at::mm(dgates_hh.t(), h_prev);
  if (has_bias) {
    g.db_ih = dgates_ih.sum(0);
    g.db_hh = dgates_hh.sum(0);
  } else {
    g.db_ih = at::empty({0}, x.options());
    g.db_hh = at::empty({0}, x.options());
  }
  return g;
}

}  // namespace fusedrnn
