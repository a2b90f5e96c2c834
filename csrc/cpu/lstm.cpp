// CPU LSTM. Forward: one team of threads runs the whole sequence; per step each thread multiplies
// h_{t-1} by its panels of W_hh (every gate of its hidden units) in registers, applies the gate math
// and meets the others at one barrier. Backward: per step each thread computes the gate gradients of
// its units, a barrier, then its columns of dh_{t-1} = dgates W_hh. With proj_size the projection
// runs as a per-step GEMM between team runs. Weight gradients are batched GEMMs after the loop.
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
std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_forward_typed(
    const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
    const Tensor& w_ih_source, const Tensor& w_hh_source, const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& w_hr,
    const std::vector<int64_t>& batch_sizes, bool reverse, bool training) {
  const int64_t N = x.size(0), B = h0.size(0), P = h0.size(1), H = c0.size(1);
  const bool projected = w_hr.has_value() && w_hr->defined();
  const auto steps = make_schedule(batch_sizes.data(), static_cast<int64_t>(batch_sizes.size()), reverse);
  const StepPasses<T>& kernels = step_passes<T>();
  const Tensor panels = packed_panels(w_hh_source, w_hh, PanelKind::GateRows, kLstmGates, kernels.lanes,
                                     !training);

  const InputSide input = input_side<T>(x, w_ih, w_ih_source, w_hh, kLstmGates, B, !training);
  const int64_t I = x.size(1);
  Tensor y = at::empty({N, P}, x.options());
  Tensor h = h0.clone();  // [B, P]: final hidden state; rows past batch_sizes[t] keep theirs
  Tensor c = c0.clone();  // [B, H]: running cell state
  Tensor workspace = training ? scratch_empty({N, kLstmWorkspaceCols * H}, x.options()) : at::empty({0}, x.options());
  Tensor unprojected = projected ? at::empty({B, H}, x.options()) : Tensor();

  auto step_args = [&](const Step& s) {
    LstmForwardStep<T> p{};
    p.rows = s.rows;
    p.hidden = H;
    p.product = {panels.data_ptr<T>(), P,
                 PrevState<T>{y.data_ptr<T>() + s.prev_offset * P, h0.data_ptr<T>(), s.prev_rows, P, P},
                 input.folded() ? input.panels.data_ptr<T>() : nullptr, I, x.data_ptr<T>() + s.offset * I};
    p.xproj = input.folded() ? nullptr : input.xproj.data_ptr<T>() + s.offset * kLstmGates * H;
    p.b_ih = data_or_null<T>(b_ih);
    p.b_hh = data_or_null<T>(b_hh);
    p.c = c.data_ptr<T>();
    p.h = projected ? unprojected.data_ptr<T>() : h.data_ptr<T>();
    p.y = projected ? nullptr : y.data_ptr<T>() + s.offset * H;
    p.workspace = training ? workspace.data_ptr<T>() + s.offset * kLstmWorkspaceCols * H : nullptr;
    return p;
  };
  const int64_t macs_per_step = B * (P + (input.folded() ? I : 0)) * kLstmGates * H;
  auto step_kernel = [&](const Step& s, int64_t panel_begin, int64_t panel_end) {
    kernels.lstm_forward(step_args(s), panel_begin, panel_end);
  };

  if (!projected) {
    run_forward_steps(steps, panels.size(0), macs_per_step, step_kernel);
    return {y, h, c, workspace};
  }
  const Tensor w_hr_t = w_hr->t();
  for (const Step& s : steps) {
    run_forward_steps(std::span<const Step>(&s, 1), panels.size(0), macs_per_step, step_kernel);
    Tensor y_rows = y.narrow(0, s.offset, s.rows);
    mm_into(y_rows, unprojected.narrow(0, 0, s.rows), w_hr_t);
    h.narrow(0, 0, s.rows).copy_(y_rows);
  }
  return {y, h, c, workspace};
}

template <typename T>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward_typed(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& grad_cn, const Tensor& x, const Tensor& h0,
    const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& w_hh_source, const OptTensor& w_hr,
    bool has_bias, const std::vector<int64_t>& batch_sizes, bool reverse, const Tensor& y, const Tensor& workspace) {
  const int64_t N = x.size(0), B = h0.size(0), P = h0.size(1), H = c0.size(1);
  const bool projected = w_hr.has_value() && w_hr->defined();
  const auto steps = make_schedule(batch_sizes.data(), static_cast<int64_t>(batch_sizes.size()), reverse);
  const int64_t ws_cols = kLstmWorkspaceCols * H;
  const StepPasses<T>& kernels = step_passes<T>();

  Tensor dgates = scratch_empty({N, kLstmGates * H}, x.options());
  Tensor dh = grad_hn.clone();  // [B, P]: gradient of the running hidden state
  Tensor dc = grad_cn.clone();  // [B, H]

  auto step_args = [&](const Step& s, const T* dh_cell, const T* grad_y_rows) {
    LstmBackwardStep<T> p{};
    p.rows = s.rows;
    p.hidden = H;
    p.dh = dh_cell;
    p.grad_y = grad_y_rows;
    p.dc = dc.data_ptr<T>();
    p.workspace = workspace.data_ptr<T>() + s.offset * ws_cols;
    p.c_prev = PrevState<T>{workspace.data_ptr<T>() + s.prev_offset * ws_cols + 4 * H, c0.data_ptr<T>(),
                            s.prev_rows, ws_cols, H};
    p.dgates = dgates.data_ptr<T>() + s.offset * kLstmGates * H;
    return p;
  };

  if (!projected) {
    const Tensor panels = packed_panels(w_hh_source, w_hh, PanelKind::Columns, kLstmGates, kernels.lanes, false);
    run_backward_steps<T>(
        steps, panels.size(0), H, B * kLstmGates * H * H,
        [&](const Step& s, int64_t unit_begin, int64_t unit_end) {
          kernels.lstm_backward(step_args(s, dh.data_ptr<T>(), grad_y.data_ptr<T>() + s.offset * H), unit_begin,
                                unit_end);
        },
        [&](const Step& s) {
          return ColumnProduct<T>{s.rows, kLstmGates * H, H, dgates.data_ptr<T>() + s.offset * kLstmGates * H,
                                  kLstmGates * H, false, panels.data_ptr<T>(), dh.data_ptr<T>(), H, false};
        });
  } else {
    Tensor dh_steps = scratch_empty({N, P}, x.options());  // for dW_hr
    Tensor dunprojected = at::empty({B, H}, x.options());
    for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
      const Step& s = *it;
      Tensor dh_rows = dh.narrow(0, 0, s.rows);
      dh_rows.add_(grad_y.narrow(0, s.offset, s.rows));
      dh_steps.narrow(0, s.offset, s.rows).copy_(dh_rows);
      mm_into(dunprojected.narrow(0, 0, s.rows), dh_rows, *w_hr);
      const auto p = step_args(s, dunprojected.data_ptr<T>(), nullptr);
      const int64_t blocks = (H + kernels.lanes - 1) / kernels.lanes;
      parallel_shares(blocks, s.rows * kLstmGates * H * 8, [&](Share sh) {  // ~8 MAC-equivalents per gate value
        kernels.lstm_backward(p, sh.begin * kernels.lanes, std::min(H, sh.end * kernels.lanes));
      });
      mm_into(dh_rows, dgates.narrow(0, s.offset, s.rows), w_hh);
    }
    const Tensor o = workspace.narrow(1, 3 * H, H), c = workspace.narrow(1, 4 * H, H);
    LinearGrads g = linear_grads_cpu<T>(dgates, dgates, x, y, h0, steps, w_ih, has_bias);
    return {g.dx, dh, dc, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh, at::mm(dh_steps.t(), o * at::tanh(c))};
  }

  LinearGrads g = linear_grads_cpu<T>(dgates, dgates, x, y, h0, steps, w_ih, has_bias);
  return {g.dx, dh, dc, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh, at::empty({0}, x.options())};
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_forward(
    const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
    const Tensor& w_ih_source, const Tensor& w_hh_source, const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& w_hr,
    const std::vector<int64_t>& batch_sizes, bool reverse, bool training) {
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fusedrnn_lstm_forward_cpu", [&] {
    return lstm_forward_typed<scalar_t>(x, h0, c0, w_ih, w_hh, w_ih_source, w_hh_source, b_ih, b_hh, w_hr, batch_sizes, reverse,
                                        training);
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& grad_cn, const Tensor& x, const Tensor& h0,
    const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& w_hh_source, const OptTensor& w_hr,
    bool has_bias, const std::vector<int64_t>& batch_sizes, bool reverse, const Tensor& y, const Tensor& workspace) {
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fusedrnn_lstm_backward_cpu", [&] {
    return lstm_backward_typed<scalar_t>(grad_y, grad_hn, grad_cn, x, h0, c0, w_ih, w_hh, w_hh_source, w_hr,
                                         has_bias, batch_sizes, reverse, y, workspace);
  });
}

}  // namespace fusedrnn::cpu
