// CPU vanilla RNN (tanh or relu): the structure of lstm.cpp with one gate, so a forward panel holds
// four blocks of hidden units.
#include "cpu/layers.h"
#include "bindings/sequence.h"
#include "cpu/input_product.h"
#include "cpu/linear_grads.h"
#include "cpu/packed_weights.h"
#include "cpu/passes.h"
#include "cpu/recurrence.h"
#include "cpu/scratch_pool.h"
#include "fusedrnn/params.h"

namespace fusedrnn::cpu {
namespace {

template <typename T>
std::tuple<Tensor, Tensor, Tensor> rnn_forward_typed(
    const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& w_ih_source,
    const Tensor& w_hh_source, const OptTensor& b_ih, const OptTensor& b_hh, const std::vector<int64_t>& batch_sizes, bool reverse,
    Activation act, bool training) {
  const int64_t N = x.size(0), B = h0.size(0), H = h0.size(1);
  const auto steps = make_schedule(batch_sizes.data(), static_cast<int64_t>(batch_sizes.size()), reverse);
  const StepPasses<T>& kernels = step_passes<T>();
  const Tensor panels = packed_panels(w_hh_source, w_hh, PanelKind::GateRows, 1, kernels.lanes, !training);

  const InputSide input = input_side<T>(x, w_ih, w_ih_source, w_hh, 1, B, !training);
  const int64_t I = x.size(1);
  Tensor y = at::empty({N, H}, x.options());
  Tensor h = h0.clone();  // [B, H]: final hidden state
  Tensor workspace = training ? scratch_empty({N, H}, x.options()) : at::empty({0}, x.options());

  run_forward_steps(steps, panels.size(0), B * (H + (input.folded() ? I : 0)) * H,
                    [&](const Step& s, int64_t begin, int64_t end) {
                      RnnForwardStep<T> p{};
                      p.rows = s.rows;
                      p.hidden = H;
                      p.act = act;
                      p.product = {panels.data_ptr<T>(), H,
                                   PrevState<T>{y.data_ptr<T>() + s.prev_offset * H, h0.data_ptr<T>(),
                                                s.prev_rows, H, H},
                                   input.folded() ? input.panels.data_ptr<T>() : nullptr, I,
                                   x.data_ptr<T>() + s.offset * I};
                      p.xproj = input.folded() ? nullptr : input.xproj.data_ptr<T>() + s.offset * H;
                      p.b_ih = data_or_null<T>(b_ih);
                      p.b_hh = data_or_null<T>(b_hh);
                      p.h = h.data_ptr<T>();
                      p.y = y.data_ptr<T>() + s.offset * H;
                      p.workspace = training ? workspace.data_ptr<T>() + s.offset * H : nullptr;
                      kernels.rnn_forward(p, begin, end);
                    });
  return {y, h, workspace};
}

template <typename T>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> rnn_backward_typed(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& x, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, const Tensor& w_hh_source, bool has_bias, const std::vector<int64_t>& batch_sizes,
    bool reverse, Activation act, const Tensor& y, const Tensor& workspace) {
  const int64_t N = x.size(0), B = h0.size(0), H = h0.size(1);
  const auto steps = make_schedule(batch_sizes.data(), static_cast<int64_t>(batch_sizes.size()), reverse);
  const StepPasses<T>& kernels = step_passes<T>();
  const Tensor panels = packed_panels(w_hh_source, w_hh, PanelKind::Columns, 1, kernels.lanes, false);

  Tensor dpre = scratch_empty({N, H}, x.options());
  Tensor dh = grad_hn.clone();  // [B, H]

  run_backward_steps<T>(
      steps, panels.size(0), H, B * H * H,
      [&](const Step& s, int64_t unit_begin, int64_t unit_end) {
        RnnBackwardStep<T> p{};
        p.rows = s.rows;
        p.hidden = H;
        p.act = act;
        p.dh = dh.data_ptr<T>();
        p.grad_y = grad_y.data_ptr<T>() + s.offset * H;
        p.workspace = workspace.data_ptr<T>() + s.offset * H;
        p.dpre = dpre.data_ptr<T>() + s.offset * H;
        kernels.rnn_backward(p, unit_begin, unit_end);
      },
      [&](const Step& s) {
        return ColumnProduct<T>{s.rows, H, H, dpre.data_ptr<T>() + s.offset * H, H, false,
                                panels.data_ptr<T>(), dh.data_ptr<T>(), H, false};
      });

  LinearGrads g = linear_grads_cpu<T>(dpre, dpre, x, y, h0, steps, w_ih, has_bias);
  return {g.dx, dh, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh};
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor> rnn_forward(
    const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& w_ih_source,
    const Tensor& w_hh_source, const OptTensor& b_ih, const OptTensor& b_hh, const std::vector<int64_t>& batch_sizes, bool reverse,
    Activation act, bool training) {
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fusedrnn_rnn_forward_cpu", [&] {
    return rnn_forward_typed<scalar_t>(x, h0, w_ih, w_hh, w_ih_source, w_hh_source, b_ih, b_hh, batch_sizes, reverse, act,
                                       training);
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> rnn_backward(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& x, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, const Tensor& w_hh_source, bool has_bias, const std::vector<int64_t>& batch_sizes,
    bool reverse, Activation act, const Tensor& y, const Tensor& workspace) {
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fusedrnn_rnn_backward_cpu", [&] {
    return rnn_backward_typed<scalar_t>(grad_y, grad_hn, x, h0, w_ih, w_hh, w_hh_source, has_bias, batch_sizes,
                                        reverse, act, y, workspace);
  });
}

}  // namespace fusedrnn::cpu
