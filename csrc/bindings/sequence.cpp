#include "bindings/sequence.h"

namespace fusedrnn {

at::Tensor input_projection(const at::Tensor& x, const at::Tensor& w_ih, const std::optional<at::Tensor>& b_ih) {
  if (b_ih.has_value() && b_ih->defined()) return at::addmm(*b_ih, x, w_ih.t());
  return at::mm(x, w_ih.t());
}

at::Tensor gather_prev_state(const at::Tensor& states, const at::Tensor& initial, const std::vector<Step>& steps) {
  return gather_prev_state_into(states, initial, steps, at::empty_like(states));
}

at::Tensor gather_prev_state_into(const at::Tensor& states, const at::Tensor& initial, const std::vector<Step>& steps,
                                  at::Tensor prev) {
  const int64_t T = static_cast<int64_t>(steps.size());
  const bool dense = T > 0 && steps.front().rows == initial.size(0) && steps.back().rows == initial.size(0);
  if (dense) {  // every step has all B rows: two block copies instead of one per step
    const int64_t B = initial.size(0), rest = (T - 1) * B;
    const bool reverse = T > 1 && steps[0].t > steps[1].t;
    prev.narrow(0, reverse ? rest : 0, B).copy_(initial);
    if (rest > 0) prev.narrow(0, reverse ? 0 : B, rest).copy_(states.narrow(0, reverse ? B : 0, rest));
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
