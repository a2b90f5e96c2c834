// CPU GRU: the structure of lstm.cpp (one team per sequence, one barrier per step, the step's products
// fused with the gate math in registers, the x side of n kept apart from its h side); backward adds
// dh * z to dh_{t-1} = dgates_hh W_hh.
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
std::tuple<Tensor, Tensor, Tensor> gru_forward_typed(
    const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& w_ih_source,
    const Tensor& w_hh_source, const OptTensor& b_ih, const OptTensor& b_hh, const std::vector<int64_t>& batch_sizes, bool reverse,
    bool training) {
  const int64_t N = x.size(0), B = h0.size(0), H = h0.size(1);
  const auto steps = make_schedule(batch_sizes.data(), static_cast<int64_t>(batch_sizes.size()), reverse);
  const StepPasses<T>& kernels = step_passes<T>();
  const Tensor panels = packed_panels(w_hh_source, w_hh, PanelKind::GateRows, kGruGates, kernels.lanes,
                                     !training);

  const InputSide input = input_side<T>(x, w_ih, w_ih_source, w_hh, kGruGates, B, !training);
  const int64_t I = x.size(1);
  Tensor y = at::empty({N, H}, x.options());
  Tensor h = h0.clone();  // [B, H]: final hidden state
  Tensor workspace = training ? scratch_empty({N, kGruWorkspaceCols * H}, x.options()) : at::empty({0}, x.options());

  const int64_t macs_per_step = B * (H + (input.folded() ? I : 0)) * kGruGates * H;
  run_forward_steps(steps, panels.size(0), macs_per_step, [&](const Step& s, int64_t begin, int64_t end) {
    GruForwardStep<T> p{};
    p.rows = s.rows;
    p.hidden = H;
    p.product = {panels.data_ptr<T>(), H,
                 PrevState<T>{y.data_ptr<T>() + s.prev_offset * H, h0.data_ptr<T>(), s.prev_rows, H, H},
                 input.folded() ? input.panels.data_ptr<T>() : nullptr, I, x.data_ptr<T>() + s.offset * I};
    p.xproj = input.folded() ? nullptr : input.xproj.data_ptr<T>() + s.offset * kGruGates * H;
    p.b_ih = data_or_null<T>(b_ih);
    p.b_hh = data_or_null<T>(b_hh);
    p.h = h.data_ptr<T>();
    p.y = y.data_ptr<T>() + s.offset * H;
    p.workspace = training ? workspace.data_ptr<T>() + s.offset * kGruWorkspaceCols * H : nullptr;
    kernels.gru_forward(p, begin, end);
  });
  return {y, h, workspace};
}

template <typename T>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> gru_backward_typed(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& x, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, const Tensor& w_hh_source, bool has_bias, const std::vector<int64_t>& batch_sizes,
    bool reverse, const Tensor& y, const Tensor& workspace) {
  const int64_t N = x.size(0), B = h0.size(0), H = h0.size(1);
  const auto steps = make_schedule(batch_sizes.data(), static_cast<int64_t>(batch_sizes.size()), reverse);
  const StepPasses<T>& kernels = step_passes<T>();
  const Tensor panels = packed_panels(w_hh_source, w_hh, PanelKind::Columns, kGruGates, kernels.lanes, false);

  Tensor dgates_ih = scratch_empty({N, kGruGates * H}, x.options());
  Tensor dgates_hh = scratch_empty({N, kGruGates * H}, x.options());
  Tensor dh = grad_hn.clone();  // [B, H]

  run_backward_steps<T>(
      steps, panels.size(0), H, B * kGruGates * H * H,
      [&](const Step& s, int64_t unit_begin, int64_t unit_end) {
        GruBackwardStep<T> p{};
        p.rows = s.rows;
        p.hidden = H;
        p.dh = dh.data_ptr<T>();
        p.grad_y = grad_y.data_ptr<T>() + s.offset * H;
        p.workspace = workspace.data_ptr<T>() + s.offset * kGruWorkspaceCols * H;
        p.h_prev = PrevState<T>{y.data_ptr<T>() + s.prev_offset * H, h0.data_ptr<T>(), s.prev_rows, H, H};
        p.dgates_ih = dgates_ih.data_ptr<T>() + s.offset * kGruGates * H;
        p.dgates_hh = dgates_hh.data_ptr<T>() + s.offset * kGruGates * H;
        kernels.gru_backward(p, unit_begin, unit_end);
      },
      [&](const Step& s) {  // dh holds dh * z for the thread's units; add dgates_hh W_hh
        return ColumnProduct<T>{s.rows, kGruGates * H, H, dgates_hh.data_ptr<T>() + s.offset * kGruGates * H,
                                kGruGates * H, false, panels.data_ptr<T>(), dh.data_ptr<T>(), H, true};
      });

  LinearGrads g = linear_grads_cpu<T>(dgates_ih, dgates_hh, x, y, h0, steps, w_ih, has_bias);
  return {g.dx, dh, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh};
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor> gru_forward(
    const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& w_ih_source,
    const Tensor& w_hh_source, const OptTensor& b_ih, const OptTensor& b_hh, const std::vector<int64_t>& batch_sizes, bool reverse,
    bool training) {
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fusedrnn_gru_forward_cpu", [&] {
    return gru_forward_typed<scalar_t>(x, h0, w_ih, w_hh, w_ih_source, w_hh_source, b_ih, b_hh, batch_sizes, reverse, training);
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> gru_backward(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& x, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, const Tensor& w_hh_source, bool has_bias, const std::vector<int64_t>& batch_sizes,
    bool reverse, const Tensor& y, const Tensor& workspace) {
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fusedrnn_gru_backward_cpu", [&] {
    return gru_backward_typed<scalar_t>(grad_y, grad_hn, x, h0, w_ih, w_hh, w_hh_source, has_bias, batch_sizes,
                                        reverse, y, workspace);
  });
}

}  // namespace fusedrnn::cpu
