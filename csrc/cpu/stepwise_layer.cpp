#include "cpu/stepwise_layer.h"

#include <ranges>

#include "cpu/input_product.h"
#include "cpu/layer_inputs.h"
#include "cpu/linear_grads.h"
#include "cpu/packed_weights.h"
#include "cpu/passes.h"
#include "cpu/recurrence.h"
#include "cpu/scratch_pool.h"
#include "fusedrnn/cells.h"
#include "fusedrnn/stepwise.h"

namespace fusedrnn::cpu {
namespace {

using at::Tensor;

// A row pass costs about this many MACs per gate value (two norms, the activations): what the team
// weighs against starting its threads.
constexpr int64_t kRowPassMacsPerValue = 16;

// The options' tensors in the compute dtype, contiguous, zoneout packed [N, S*H].
struct ComputeOptions {
  OptTensor ln_ih, ln_hh, ln_c_w, ln_c_b, zoneout, recurrent_mask;
};

ComputeOptions compute_options(const StepwiseOptions& o, const LayerShape& shape, at::ScalarType dtype) {
  const ToCompute to{dtype};
  const OptTensor zoneout = to(o.zoneout);
  return {to(o.ln_ih), to(o.ln_hh), to(o.ln_c_w), to(o.ln_c_b),
          zoneout ? OptTensor(as_packed(*zoneout, shape)) : std::nullopt, to(o.recurrent_mask)};
}

// The options' pointers of a step's row-pass arguments (forward or backward: the same fields).
template <typename T, typename StepArgs>
void set_options(StepArgs& p, const ComputeOptions& o, int64_t zoneout_row_offset) {
  p.ln_ih = data_or_null<T>(o.ln_ih);
  p.ln_hh = data_or_null<T>(o.ln_hh);
  p.ln_c_w = data_or_null<T>(o.ln_c_w);
  p.ln_c_b = data_or_null<T>(o.ln_c_b);
  p.zoneout = o.zoneout ? o.zoneout->data_ptr<T>() + zoneout_row_offset : nullptr;
  p.recurrent_mask = data_or_null<T>(o.recurrent_mask);
}

// Worker slots for a layer's steps: its product (rows x k x cols MACs) plus the row pass (about
// kRowPassMacsPerValue per gate value) per step, over the column panels.
int64_t step_slots(int64_t panels, int64_t rows, int64_t gate_values, int64_t k, int64_t steps) {
  return team_slots(panels, rows * gate_values * (k + kRowPassMacsPerValue), steps);
}

// Packed rows [N, H] of t times the recurrent-dropout mask's rows (row r of a step is batch entry r),
// or [B, H] rows times the mask: the h's that entered W_hh, for its gradient.
Tensor masked_rows(const Tensor& t, const Tensor& mask, const std::vector<Step>& steps) {
  if (t.size(0) == mask.size(0) || t.size(0) == 0) return t.size(0) == 0 ? t : t * mask;
  std::vector<int64_t> batch_row(t.size(0));
  for (const Step& s : steps) {
    for (int64_t r = 0; r < s.rows; ++r) batch_row[s.offset + r] = r;
  }
  const Tensor index = at::tensor(batch_row, t.options().dtype(at::kLong));
  return t * mask.index_select(0, index);
}

template <typename Cell, typename T>
LayerOutputs forward_typed(const Layer& l, const ComputeOptions& o, bool training, at::IntArrayRef y_sizes) {
  constexpr int G = Cell::gates;
  const int64_t N = l.x.size(0), B = l.h0.size(0), H = l.w_hh.size(0) / G;
  const StepwiseLayout lay = stepwise_layout<Cell>(H, o.ln_ih.has_value(), o.zoneout.has_value());
  const StepPasses<T>& kernels = step_passes<T>();
  const auto& pass = kernels.template stepwise_of<Cell>();
  Tensor xw = input_product<T>(l.x, l.w_ih, l.w_ih_source);  // [N, G*H]
  // h W_hh^T with the fused kernels' tiled product: W_hh's rows packed as a one-gate layer's are the
  // column panels of W_hh^T (as input_product does for W_ih)
  const Tensor panels = packed_panels(l.w_hh_source, l.w_hh, PanelKind::GateRows, 1, kernels.lanes);
  Tensor hh = at::empty({B, G * H}, l.x.options());
  // y in the caller's layout, and not as a view of a [N, H] buffer: autograd refuses in-place ops on a view
  // that a custom op returns (`out += x` on the output), as it would on torch.nn's outputs
  Tensor y_out = at::empty(y_sizes, l.x.options());
  Tensor y = y_out.view({N, H});
  Tensor h = l.h0.clone();  // [B, H]: running state; rows past batch_sizes[t] keep theirs
  Tensor c = Cell::states == 2 ? l.c0.clone() : Tensor();
  // [B, H]: h * d, what the products read under recurrent dropout
  Tensor h_dropped = o.recurrent_mask ? l.h0 * *o.recurrent_mask : Tensor();
  const Tensor& h_product = o.recurrent_mask ? h_dropped : h;
  Tensor workspace = training ? scratch_empty({N, lay.cols()}, l.x.options()) : at::empty({0}, l.x.options());
  Tensor cell_scratch = lay.normalises_c() && !training ? at::empty({B, Cell::workspace_cols * H}, l.x.options()) : Tensor();

  auto step_args = [&](const Step& s) {
    StepwiseForwardStep<T> p{};
    p.layout = lay;
    p.act = l.act;
    p.xw = xw.data_ptr<T>() + s.offset * G * H;
    p.hh = hh.data_ptr<T>();
    set_options<T>(p, o, s.offset * Cell::states * H);
    p.b_ih = data_or_null<T>(l.b_ih);
    p.b_hh = data_or_null<T>(l.b_hh);
    p.c = Cell::states == 2 ? c.data_ptr<T>() : nullptr;
    p.h = h.data_ptr<T>();
    p.h_dropped = h_dropped.defined() ? h_dropped.data_ptr<T>() : nullptr;
    p.y = y.data_ptr<T>() + s.offset * H;
    p.workspace = training ? workspace.data_ptr<T>() + s.offset * lay.cols() : nullptr;
    p.cell_scratch = cell_scratch.defined() ? cell_scratch.data_ptr<T>() : nullptr;
    return p;
  };
  const int64_t slots = step_slots(panels.size(0), B, G * H, H, static_cast<int64_t>(l.steps.size()));
  run_phased_steps(
      l.steps, slots,
      [&](const Step& s, int64_t w0, int64_t w1) {  // (h * d) W_hh^T: the team splits the column panels
        const ColumnProduct<T> q{s.rows, H, G * H, h_product.data_ptr<T>(), H, false, panels.data_ptr<T>(),
                                 hh.data_ptr<T>(), G * H, false};
        for_each_share(w0, w1, slots, panels.size(0), [&](Share sh) { kernels.column_product(q, sh.begin, sh.end); });
      },
      [&](const Step& s, int64_t w0, int64_t w1) {  // the row pass: the team splits the rows
        const StepwiseForwardStep<T> p = step_args(s);
        for_each_share(w0, w1, slots, s.rows, [&](Share sh) { pass.forward(p, sh.begin, sh.end); });
      });
  return {y_out, h, c, workspace};
}

template <typename Cell, typename T>
std::pair<LayerGrads, StepwiseNormGrads> backward_typed(const Layer& l, const ComputeOptions& o, const Tensor& grad_y,
                                                        const Tensor& grad_hn, const Tensor& grad_cn, const Tensor& y,
                                                        const Tensor& workspace, bool input_grad, bool has_bias) {
  constexpr int G = Cell::gates;
  constexpr bool kSplitGates = Cell::input_apart >= 0;
  const int64_t N = l.x.size(0), H = l.w_hh.size(0) / G;
  const StepwiseLayout lay = stepwise_layout<Cell>(H, o.ln_ih.has_value(), o.zoneout.has_value());
  const StepPasses<T>& kernels = step_passes<T>();
  const auto& pass = kernels.template stepwise_of<Cell>();
  const auto options = l.x.options();
  const Tensor panels = packed_panels(l.w_hh_source, l.w_hh, PanelKind::Columns, G, kernels.lanes);  // for dhh W_hh

  Tensor dpre_ih = scratch_empty({N, G * H}, options);
  Tensor dpre_hh = kSplitGates ? scratch_empty({N, G * H}, options) : dpre_ih;
  Tensor dlc = lay.normalises_c() ? scratch_empty({N, H}, options) : Tensor();
  // without layer norm the products' gradients are the gates'
  Tensor dxw = lay.norm ? scratch_empty({N, G * H}, options) : dpre_ih;
  Tensor dhh = lay.norm ? scratch_empty({N, G * H}, options) : dpre_hh;
  Tensor dh = grad_hn.clone();  // [B, H]: the direct part of the running hidden state's gradient
  Tensor dh_product = at::zeros_like(dh);  // [B, H]: its part through the last visited step's product
  Tensor dc = Cell::states == 2 ? grad_cn.clone() : Tensor();
  const int64_t c_out = lay.c_out();

  auto step_args = [&](const Step& s) {
    StepwiseBackwardStep<T> p{};
    p.layout = lay;
    p.act = l.act;
    p.dh = dh.data_ptr<T>();
    p.dh_product = dh_product.data_ptr<T>();
    p.grad_y = grad_y.data_ptr<T>() + s.offset * H;
    p.dc = Cell::states == 2 ? dc.data_ptr<T>() : nullptr;
    p.workspace = workspace.data_ptr<T>() + s.offset * lay.cols();
    set_options<T>(p, o, s.offset * Cell::states * H);
    p.h_prev = PrevState<T>{y.data_ptr<T>() + s.prev_offset * H, l.h0.data_ptr<T>(), s.prev_rows, H, H};
    if constexpr (Cell::states == 2) {
      p.c_prev = PrevState<T>{workspace.data_ptr<T>() + s.prev_offset * lay.cols() + c_out, l.c0.data_ptr<T>(),
                              s.prev_rows, lay.cols(), H};
    }
    p.dpre_ih = dpre_ih.data_ptr<T>() + s.offset * G * H;
    p.dpre_hh = kSplitGates ? dpre_hh.data_ptr<T>() + s.offset * G * H : nullptr;
    p.dlc = dlc.defined() ? dlc.data_ptr<T>() + s.offset * H : nullptr;
    p.dxw = dxw.data_ptr<T>() + s.offset * G * H;
    p.dhh = dhh.data_ptr<T>() + s.offset * G * H;
    return p;
  };
  const int64_t slots = step_slots(panels.size(0), grad_hn.size(0), G * H, H, static_cast<int64_t>(l.steps.size()));
  run_phased_steps(
      std::views::reverse(l.steps), slots,
      [&](const Step& s, int64_t w0, int64_t w1) {  // the row pass: the team splits the rows
        const StepwiseBackwardStep<T> p = step_args(s);
        for_each_share(w0, w1, slots, s.rows, [&](Share sh) { pass.backward(p, sh.begin, sh.end); });
      },
      [&](const Step& s, int64_t w0, int64_t w1) {  // the previous h's gradient through W_hh, before d
        const ColumnProduct<T> q{s.rows, G * H, H, dhh.data_ptr<T>() + s.offset * G * H, G * H, false,
                                 panels.data_ptr<T>(), dh_product.data_ptr<T>(), H, false};
        for_each_share(w0, w1, slots, panels.size(0), [&](Share sh) { kernels.column_product(q, sh.begin, sh.end); });
      });
  const Tensor dh0 = dh + (o.recurrent_mask ? dh_product * *o.recurrent_mask : dh_product);

  // W_hh's gradient pairs each step's dhh with the h * d that entered its product
  const Tensor y_in = o.recurrent_mask ? masked_rows(y, *o.recurrent_mask, l.steps) : y;
  const Tensor h0_in = o.recurrent_mask ? l.h0 * *o.recurrent_mask : l.h0;
  LinearGrads g = linear_grads_cpu<T>(dxw, dhh, l.x, y_in, h0_in, l.steps, l.w_ih, input_grad, false);
  auto empty = [&] { return at::empty({0}, options); };  // one each: an op's outputs must not alias
  LayerGrads grads{g.dx, dh0, dc, g.dw_ih, g.dw_hh,
                   has_bias ? dpre_ih.sum(0) : empty(), has_bias ? dpre_hh.sum(0) : empty(), empty()};
  StepwiseNormGrads norm{empty(), empty(), empty(), empty()};
  if (lay.norm) {
    norm.ln_ih = (dpre_ih * workspace.narrow(1, lay.xhat_ih(), G * H)).sum(0);
    norm.ln_hh = (dpre_hh * workspace.narrow(1, lay.xhat_hh(), G * H)).sum(0);
  }
  if (lay.normalises_c()) {
    norm.ln_c_w = (dlc * workspace.narrow(1, lay.c_hat(), H)).sum(0);
    norm.ln_c_b = dlc.sum(0);
  }
  return {grads, norm};
}

template <typename F>
auto visit_cell(CellId id, const F& f) {
  switch (id) {
    case CellId::Lstm: return f(LstmCell{});
    case CellId::Gru: return f(GruCell{});
    default: return f(RnnCell{});
  }
}

}  // namespace

LayerOutputs stepwise_forward(const LayerInputs& in, const StepwiseOptions& options, bool training) {
  const Layer l = compute_layer(in);
  const ComputeOptions o = compute_options(options, in.shape, l.x.scalar_type());
  const auto dtype = in.x.scalar_type();
  const LayerShape& s = in.shape;
  const std::vector<int64_t> y_sizes = s.packed ? std::vector<int64_t>{s.N, s.H} : std::vector<int64_t>{s.T, s.B, s.H};
  const LayerOutputs out = visit_cell(in.cell, [&](auto cell) {
    using Cell = decltype(cell);
    return AT_DISPATCH_FLOATING_TYPES(l.x.scalar_type(), "fusedrnn_stepwise_forward_cpu",
                                      [&] { return forward_typed<Cell, scalar_t>(l, o, training, y_sizes); });
  });
  return {to_dtype(out.y, dtype), to_dtype(out.h_n, dtype), to_dtype(out.c_n, dtype), out.workspace};
}

std::pair<LayerGrads, StepwiseNormGrads> stepwise_backward(const LayerInputs& in, const StepwiseOptions& options,
                                                           const LayerGradInputs& grads) {
  const Layer l = compute_layer(in);
  const ComputeOptions o = compute_options(options, in.shape, l.x.scalar_type());
  const LayerShape& s = in.shape;
  const ToCompute to{l.x.scalar_type()};
  const Tensor grad_y = as_packed(to(grads.grad_y), s), grad_hn = to(grads.grad_hn);
  const Tensor grad_cn = grads.grad_cn.has_value() ? to(*grads.grad_cn) : Tensor();
  const Tensor y = as_packed(to(grads.y), s), workspace = grads.workspace.contiguous();
  auto [g, norm] = visit_cell(in.cell, [&](auto cell) {
    using Cell = decltype(cell);
    return AT_DISPATCH_FLOATING_TYPES(l.x.scalar_type(), "fusedrnn_stepwise_backward_cpu", [&] {
      return backward_typed<Cell, scalar_t>(l, o, grad_y, grad_hn, grad_cn, y, workspace, grads.input_grad,
                                           grads.has_bias);
    });
  });
  const auto dtype = in.x.scalar_type();
  const LayerGrads out{grads.input_grad ? as_layout(g.dx, s, dtype) : g.dx, to_dtype(g.dh0, dtype),
                       to_dtype(g.dc0, dtype), to_dtype(g.dw_ih, dtype), to_dtype(g.dw_hh, dtype),
                       to_dtype(g.db_ih, dtype), to_dtype(g.db_hh, dtype), g.dw_hr};
  const StepwiseNormGrads norm_out{to_dtype(norm.ln_ih, dtype), to_dtype(norm.ln_hh, dtype),
                                   to_dtype(norm.ln_c_w, dtype), to_dtype(norm.ln_c_b, dtype)};
  return {out, norm_out};
}

}  // namespace fusedrnn::cpu
