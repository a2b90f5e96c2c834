#include "cpu/layer.h"

#include "cpu/input_product.h"
#include "cpu/layer_inputs.h"
#include "cpu/linear_grads.h"
#include "cpu/packed_weights.h"
#include "cpu/passes.h"
#include "cpu/recurrence.h"
#include "cpu/scratch_pool.h"
#include "fusedrnn/cells.h"
#include "fusedrnn/schedule.h"
#include "sequence/sequence.h"

namespace fusedrnn::cpu {
namespace {

using at::Tensor;

// A single step of a single row (a cell call, or a layer called with T = 1, at batch 1) reads each
// weight once whichever way it goes, and the packed-weight cache's check would read them all once more
// (its content hash): such a step multiplies the caller's unpacked weights instead (MatVec). Chains of
// 20 LSTMCell calls on the 2-core EPYC, per call: H = 256 inference 193 -> 150 us, training 1.69 ->
// 1.13 ms; H = 1024 inference 4.68 -> 2.19 ms. ATen's matrix product in its place was no faster.
bool single_row_step(const Layer& l) { return l.steps.size() == 1 && l.steps[0].rows == 1 && !l.projected(); }

// out = w v for a single row, the rows shared by the team: w: [rows, cols], v: [cols], out: [rows].
template <typename T>
void row_product(const Tensor& w, const T* v, T* out) {
  constexpr int64_t kRowsPerPiece = 16;
  const int64_t rows = w.size(0), cols = w.size(1);
  const MatVec<T> q{w.data_ptr<T>(), rows, cols, v, out, false};
  const int64_t pieces = (rows + kRowsPerPiece - 1) / kRowsPerPiece;
  parallel_shares(pieces, rows * cols * kWeightReadMacs, [&](Share sh) {
    step_passes<T>().row_dots(q, sh.begin * kRowsPerPiece, std::min(rows, sh.end * kRowsPerPiece));
  });
}

template <typename Cell, typename T>
LayerOutputs forward_typed(const Layer& l, bool training) {
  constexpr int G = Cell::gates, W = Cell::workspace_cols;
  const Tensor& x = l.x;
  const int64_t N = x.size(0), I = x.size(1), B = l.h0.size(0), P = l.h0.size(1), H = l.w_hh.size(0) / G;
  const StepPasses<T>& kernels = step_passes<T>();
  const bool single_row = single_row_step(l);
  const Tensor panels =
      single_row ? Tensor() : packed_panels(l.w_hh_source, l.w_hh, PanelKind::GateRows, G, kernels.lanes);
  InputSide input;
  Tensor hh;  // single row: [1, G*H], h0 W_hh^T
  if (single_row) {
    input.xproj = at::empty({1, G * H}, x.options());
    hh = at::empty({1, G * H}, x.options());
    row_product<T>(l.w_ih, x.data_ptr<T>(), input.xproj.data_ptr<T>());
    row_product<T>(l.w_hh, l.h0.data_ptr<T>(), hh.data_ptr<T>());
  } else {
    input = input_side<T>(x, l.w_ih, l.w_ih_source, l.w_hh, G, B);
  }
  const int64_t panel_units = forward_panel_blocks(G) * kernels.lanes;  // hidden units per forward panel
  const int64_t panel_count = (H + panel_units - 1) / panel_units;

  Tensor y = at::empty({N, P}, x.options());
  Tensor h = l.h0.clone();  // [B, P]: final hidden state; rows past batch_sizes[t] keep theirs
  Tensor c = Cell::states == 2 ? l.c0.clone() : Tensor();  // [B, H]: running cell state
  Tensor workspace = training ? scratch_empty({N, W * H}, x.options()) : at::empty({0}, x.options());
  Tensor unprojected = l.projected() ? at::empty({B, H}, x.options()) : Tensor();

  auto step_args = [&](const Step& s) {
    ForwardStep<T> p{};
    p.rows = s.rows;
    p.hidden = H;
    p.act = l.act;
    p.product = {single_row ? nullptr : panels.data_ptr<T>(), P,
                 PrevState<T>{y.data_ptr<T>() + s.prev_offset * P, l.h0.data_ptr<T>(), s.prev_rows, P, P},
                 input.folded() ? input.panels.data_ptr<T>() : nullptr, I, x.data_ptr<T>() + s.offset * I};
    p.xproj = input.folded() ? nullptr : input.xproj.data_ptr<T>() + s.offset * G * H;
    p.hh = single_row ? hh.data_ptr<T>() : nullptr;
    p.b_ih = data_or_null<T>(l.b_ih);
    p.b_hh = data_or_null<T>(l.b_hh);
    p.c = Cell::states == 2 ? c.data_ptr<T>() : nullptr;
    p.h = l.projected() ? unprojected.data_ptr<T>() : h.data_ptr<T>();
    p.y = l.projected() ? nullptr : y.data_ptr<T>() + s.offset * H;
    p.workspace = training ? workspace.data_ptr<T>() + s.offset * W * H : nullptr;
    return p;
  };
  const int64_t macs_per_step = B * (P + (input.folded() ? I : 0)) * G * H;
  auto step_kernel = [&](const Step& s, int64_t panel_begin, int64_t panel_end) {
    kernels.template of<Cell>().forward(step_args(s), panel_begin, panel_end);
  };

  if (single_row) {  // the products are done: the gate math alone, on this thread
    step_kernel(l.steps[0], 0, panel_count);
    return {y, h, c, workspace};
  }
  if (!l.projected()) {
    run_forward_steps(l.steps, panel_count, macs_per_step, step_kernel);
    return {y, h, c, workspace};
  }
  const Tensor w_hr_t = l.w_hr->t();
  for (const Step& s : l.steps) {
    run_forward_steps(std::span<const Step>(&s, 1), panel_count, macs_per_step, step_kernel);
    Tensor y_rows = y.narrow(0, s.offset, s.rows);
    mm_into(y_rows, unprojected.narrow(0, 0, s.rows), w_hr_t);
    h.narrow(0, 0, s.rows).copy_(y_rows);
  }
  return {y, h, c, workspace};
}

template <typename Cell, typename T>
LayerGrads backward_typed(const Layer& l, const Tensor& grad_y, const Tensor& grad_hn, const Tensor& grad_cn,
                          const Tensor& y, const Tensor& workspace, bool input_grad, bool has_bias) {
  constexpr int G = Cell::gates, W = Cell::workspace_cols;
  constexpr bool kSplitGates = Cell::input_apart >= 0;
  const Tensor& x = l.x;
  const int64_t N = x.size(0), B = l.h0.size(0), P = l.h0.size(1), H = l.w_hh.size(0) / G;
  const int64_t ws_cols = W * H;
  const StepPasses<T>& kernels = step_passes<T>();

  Tensor dgates = scratch_empty({N, G * H}, x.options());  // the input side's, and both without a split
  Tensor dgates_hh = kSplitGates ? scratch_empty({N, G * H}, x.options()) : dgates;
  Tensor dh = grad_hn.clone();  // [B, P]: gradient of the running hidden state
  Tensor dc = Cell::states == 2 ? grad_cn.clone() : Tensor();  // [B, H]

  auto step_args = [&](const Step& s, T* dh_cell, const T* grad_y_rows) {
    BackwardStep<T> p{};
    p.rows = s.rows;
    p.hidden = H;
    p.act = l.act;
    p.dh = dh_cell;
    p.grad_y = grad_y_rows;
    p.dc = Cell::states == 2 ? dc.data_ptr<T>() : nullptr;
    p.workspace = workspace.data_ptr<T>() + s.offset * ws_cols;
    p.h_prev = PrevState<T>{y.data_ptr<T>() + s.prev_offset * P, l.h0.data_ptr<T>(), s.prev_rows, P, P};
    if constexpr (Cell::states == 2) {
      p.c_prev = PrevState<T>{workspace.data_ptr<T>() + s.prev_offset * ws_cols + Cell::saved_c * H,
                              l.c0.data_ptr<T>(), s.prev_rows, ws_cols, H};
    }
    p.dgates = dgates.data_ptr<T>() + s.offset * G * H;
    p.dgates_hh = kSplitGates ? dgates_hh.data_ptr<T>() + s.offset * G * H : nullptr;
    return p;
  };

  if (!l.projected()) {
    if (single_row_step(l)) {  // as in the forward: the gate gradients, then dh = dgates_hh W_hh unpacked
      const Step& s = l.steps[0];
      kernels.template of<Cell>().backward(step_args(s, dh.data_ptr<T>(), grad_y.data_ptr<T>() + s.offset * H), 0,
                                           H);
      // with h_feeds_through, dh holds the direct part already: add to it
      row_times_matrix<T>(l.w_hh, dgates_hh.data_ptr<T>() + s.offset * G * H, dh.data_ptr<T>(),
                          Cell::h_feeds_through);
    } else {
      const Tensor panels = packed_panels(l.w_hh_source, l.w_hh, PanelKind::Columns, G, kernels.lanes);
      run_backward_steps<T>(
          l.steps, panels.size(0), H, B * G * H * H,
          [&](const Step& s, int64_t unit_begin, int64_t unit_end) {
            kernels.template of<Cell>().backward(
                step_args(s, dh.data_ptr<T>(), grad_y.data_ptr<T>() + s.offset * H), unit_begin, unit_end);
          },
          [&](const Step& s) {  // with h_feeds_through, dh holds the direct part already: add to it
            return ColumnProduct<T>{s.rows, G * H, H, dgates_hh.data_ptr<T>() + s.offset * G * H, G * H, false,
                                    panels.data_ptr<T>(), dh.data_ptr<T>(), H, Cell::h_feeds_through};
          });
    }
    LinearGrads g = linear_grads_cpu<T>(dgates, dgates_hh, x, y, l.h0, l.steps, l.w_ih, input_grad, has_bias);
    return {g.dx, dh, dc, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh, at::empty({0}, x.options())};
  }

  if constexpr (!Cell::projectable) {
    TORCH_CHECK(false, "fusedrnn: the ", Cell::name, " cell takes no projection");
    return {};
  } else {  // per step: dh (P wide) back through W_hr, then the cell's math
    Tensor dh_steps = scratch_empty({N, P}, x.options());  // for dW_hr
    Tensor dunprojected = at::empty({B, H}, x.options());
    for (auto it = l.steps.rbegin(); it != l.steps.rend(); ++it) {
      const Step& s = *it;
      Tensor dh_rows = dh.narrow(0, 0, s.rows);
      dh_rows.add_(grad_y.narrow(0, s.offset, s.rows));
      dh_steps.narrow(0, s.offset, s.rows).copy_(dh_rows);
      mm_into(dunprojected.narrow(0, 0, s.rows), dh_rows, *l.w_hr);
      const auto p = step_args(s, dunprojected.data_ptr<T>(), nullptr);
      const int64_t blocks = (H + kernels.lanes - 1) / kernels.lanes;
      parallel_shares(blocks, s.rows * G * H * 8, [&](Share sh) {  // ~8 MAC-equivalents per gate value
        kernels.template of<Cell>().backward(p, sh.begin * kernels.lanes, std::min(H, sh.end * kernels.lanes));
      });
      mm_into(dh_rows, dgates_hh.narrow(0, s.offset, s.rows), l.w_hh);
    }
    // dW_hr = dh^T (the unprojected output, o * tanh(c) from the workspace)
    const Tensor o = workspace.narrow(1, Cell::saved_o * H, H), c = workspace.narrow(1, Cell::saved_c * H, H);
    LinearGrads g = linear_grads_cpu<T>(dgates, dgates_hh, x, y, l.h0, l.steps, l.w_ih, input_grad, has_bias);
    return {g.dx, dh, dc, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh, at::mm(dh_steps.t(), o * at::tanh(c))};
  }
}

}  // namespace

LayerOutputs forward(const LayerInputs& in, bool training) {
  const Layer l = compute_layer(in);
  const auto dtype = in.x.scalar_type();
  LayerOutputs out = visit_cell(in.cell, [&](auto cell) {
    using Cell = decltype(cell);
    return AT_DISPATCH_FLOATING_TYPES(l.x.scalar_type(), "fusedrnn_forward_cpu",
                                      [&] { return forward_typed<Cell, scalar_t>(l, training); });
  });
  return {as_layout(out.y, in.shape, dtype), to_dtype(out.h_n, dtype), to_dtype(out.c_n, dtype), out.workspace};
}

LayerGrads backward(const LayerInputs& in, const LayerGradInputs& grads) {
  const Layer l = compute_layer(in);
  const LayerShape& s = in.shape;
  const ToCompute to{accumulate_dtype(in.x.scalar_type())};
  const Tensor grad_y = as_packed(to(grads.grad_y), s), grad_hn = to(grads.grad_hn);
  const Tensor grad_cn = grads.grad_cn.has_value() ? to(*grads.grad_cn) : Tensor();
  const Tensor y = as_packed(to(grads.y), s), workspace = grads.workspace.contiguous();
  LayerGrads g = visit_cell(in.cell, [&](auto cell) {
    using Cell = decltype(cell);
    return AT_DISPATCH_FLOATING_TYPES(l.x.scalar_type(), "fusedrnn_backward_cpu", [&] {
      return backward_typed<Cell, scalar_t>(l, grad_y, grad_hn, grad_cn, y, workspace, grads.input_grad,
                                           grads.has_bias);
    });
  });
  const auto dtype = in.x.scalar_type();
  return {grads.input_grad ? as_layout(g.dx, s, dtype) : g.dx, to_dtype(g.dh0, dtype),   to_dtype(g.dc0, dtype),
          to_dtype(g.dw_ih, dtype),   to_dtype(g.dw_hh, dtype), to_dtype(g.db_ih, dtype),
          to_dtype(g.db_hh, dtype),   to_dtype(g.dw_hr, dtype)};
}

}  // namespace fusedrnn::cpu
