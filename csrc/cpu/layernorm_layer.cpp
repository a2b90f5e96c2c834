#include "cpu/layernorm_layer.h"

#include <ranges>

#include "cpu/input_product.h"
#include "cpu/layer_inputs.h"
#include "cpu/linear_grads.h"
#include "cpu/packed_weights.h"
#include "cpu/passes.h"
#include "cpu/recurrence.h"
#include "cpu/scratch_pool.h"
#include "fusedrnn/cells.h"
#include "fusedrnn/layer_norm.h"

namespace fusedrnn::cpu {
namespace {

using at::Tensor;

// A row pass costs about this many MACs per gate value (two norms, the activations): what the team
// weighs against starting its threads.
constexpr int64_t kRowPassMacsPerValue = 16;

struct NormWeights {
  Tensor ln_ih, ln_hh, ln_c_w, ln_c_b;  // compute dtype, contiguous
};

NormWeights compute_norm_weights(const LayerNormWeights& ln, at::ScalarType dtype) {
  const ToCompute to{dtype};
  return {to(ln.ln_ih), to(ln.ln_hh), to(ln.ln_c_w), to(ln.ln_c_b)};
}

// Worker slots for a layer's steps: its product (rows x k x cols MACs) plus the row pass (about
// kRowPassMacsPerValue per gate value) per step, over the column panels.
int64_t step_slots(int64_t panels, int64_t rows, int64_t gate_values, int64_t k, int64_t steps) {
  return team_slots(panels, rows * gate_values * (k + kRowPassMacsPerValue), steps);
}

template <typename Cell, typename T>
LayerOutputs forward_typed(const Layer& l, const NormWeights& ln, bool training, at::IntArrayRef y_sizes) {
  using LN = LayerNormed<Cell>;
  constexpr int G = Cell::gates;
  const int64_t N = l.x.size(0), B = l.h0.size(0), H = l.w_hh.size(0) / G;
  const StepPasses<T>& kernels = step_passes<T>();
  const auto& pass = kernels.template layernorm_of<Cell>();
  Tensor xw = input_product<T>(l.x, l.w_ih, l.w_ih_source);  // [N, G*H], normalised in place per step
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
  Tensor workspace = training ? scratch_empty({N, LN::workspace_cols(H)}, l.x.options()) : at::empty({0}, l.x.options());
  Tensor cell_scratch = LN::normalises_c && !training ? at::empty({B, Cell::workspace_cols * H}, l.x.options()) : Tensor();

  auto step_args = [&](const Step& s) {
    LayerNormForwardStep<T> p{};
    p.hidden = H;
    p.xw = xw.data_ptr<T>() + s.offset * G * H;
    p.hh = hh.data_ptr<T>();
    p.ln_ih = ln.ln_ih.data_ptr<T>();
    p.ln_hh = ln.ln_hh.data_ptr<T>();
    p.ln_c_w = data_or_null<T>(ln.ln_c_w);
    p.ln_c_b = data_or_null<T>(ln.ln_c_b);
    p.b_ih = data_or_null<T>(l.b_ih);
    p.b_hh = data_or_null<T>(l.b_hh);
    p.c = Cell::states == 2 ? c.data_ptr<T>() : nullptr;
    p.h = h.data_ptr<T>();
    p.y = y.data_ptr<T>() + s.offset * H;
    p.workspace = training ? workspace.data_ptr<T>() + s.offset * LN::workspace_cols(H) : nullptr;
    p.cell_scratch = cell_scratch.defined() ? cell_scratch.data_ptr<T>() : nullptr;
    return p;
  };
  const int64_t slots = step_slots(panels.size(0), B, G * H, H, static_cast<int64_t>(l.steps.size()));
  run_phased_steps(
      l.steps, slots,
      [&](const Step& s, int64_t w0, int64_t w1) {  // h W_hh^T: the team splits the column panels
        const ColumnProduct<T> q{s.rows, H, G * H, h.data_ptr<T>(), H, false, panels.data_ptr<T>(),
                                 hh.data_ptr<T>(), G * H, false};
        for_each_share(w0, w1, slots, panels.size(0), [&](Share sh) { kernels.column_product(q, sh.begin, sh.end); });
      },
      [&](const Step& s, int64_t w0, int64_t w1) {  // the row pass: the team splits the rows
        const LayerNormForwardStep<T> p = step_args(s);
        for_each_share(w0, w1, slots, s.rows, [&](Share sh) { pass.forward(p, sh.begin, sh.end); });
      });
  return {y_out, h, c, workspace};
}

template <typename Cell, typename T>
std::pair<LayerGrads, LayerNormGrads> backward_typed(const Layer& l, const NormWeights& ln, const Tensor& grad_y,
                                                     const Tensor& grad_hn, const Tensor& grad_cn, const Tensor& y,
                                                     const Tensor& workspace, bool input_grad, bool has_bias) {
  using LN = LayerNormed<Cell>;
  constexpr int G = Cell::gates;
  constexpr bool kSplitGates = Cell::input_apart >= 0;
  const int64_t N = l.x.size(0), H = l.w_hh.size(0) / G, ws_cols = LN::workspace_cols(H);
  const StepPasses<T>& kernels = step_passes<T>();
  const auto& pass = kernels.template layernorm_of<Cell>();
  const auto options = l.x.options();
  const Tensor panels = packed_panels(l.w_hh_source, l.w_hh, PanelKind::Columns, G, kernels.lanes);  // for dhh W_hh

  Tensor dpre_ih = scratch_empty({N, G * H}, options);
  Tensor dpre_hh = kSplitGates ? scratch_empty({N, G * H}, options) : dpre_ih;
  Tensor dlc = LN::normalises_c ? scratch_empty({N, H}, options) : Tensor();
  Tensor dxw = scratch_empty({N, G * H}, options);
  Tensor dhh = scratch_empty({N, G * H}, options);
  Tensor dh = grad_hn.clone();  // [B, H]: gradient of the running hidden state
  Tensor dc = Cell::states == 2 ? grad_cn.clone() : Tensor();

  auto step_args = [&](const Step& s) {
    LayerNormBackwardStep<T> p{};
    p.hidden = H;
    p.dh = dh.data_ptr<T>();
    p.grad_y = grad_y.data_ptr<T>() + s.offset * H;
    p.dc = Cell::states == 2 ? dc.data_ptr<T>() : nullptr;
    p.workspace = workspace.data_ptr<T>() + s.offset * ws_cols;
    p.ln_ih = ln.ln_ih.data_ptr<T>();
    p.ln_hh = ln.ln_hh.data_ptr<T>();
    p.ln_c_w = data_or_null<T>(ln.ln_c_w);
    p.ln_c_b = data_or_null<T>(ln.ln_c_b);
    p.h_prev = PrevState<T>{y.data_ptr<T>() + s.prev_offset * H, l.h0.data_ptr<T>(), s.prev_rows, H, H};
    if constexpr (Cell::states == 2) {
      p.c_prev = PrevState<T>{workspace.data_ptr<T>() + s.prev_offset * ws_cols + LN::cell(H) + Cell::saved_c * H,
                              l.c0.data_ptr<T>(), s.prev_rows, ws_cols, H};
    }
    p.dpre_ih = dpre_ih.data_ptr<T>() + s.offset * G * H;
    p.dpre_hh = kSplitGates ? dpre_hh.data_ptr<T>() + s.offset * G * H : nullptr;
    p.dlc = LN::normalises_c ? dlc.data_ptr<T>() + s.offset * H : nullptr;
    p.dxw = dxw.data_ptr<T>() + s.offset * G * H;
    p.dhh = dhh.data_ptr<T>() + s.offset * G * H;
    return p;
  };
  const int64_t slots = step_slots(panels.size(0), grad_hn.size(0), G * H, H, static_cast<int64_t>(l.steps.size()));
  run_phased_steps(
      std::views::reverse(l.steps), slots,
      [&](const Step& s, int64_t w0, int64_t w1) {  // the row pass: the team splits the rows
        const LayerNormBackwardStep<T> p = step_args(s);
        for_each_share(w0, w1, slots, s.rows, [&](Share sh) { pass.backward(p, sh.begin, sh.end); });
      },
      [&](const Step& s, int64_t w0, int64_t w1) {
        // the previous h reaches the step through W_hh (and, for the GRU, directly: dh holds that part)
        const ColumnProduct<T> q{s.rows, G * H, H, dhh.data_ptr<T>() + s.offset * G * H, G * H, false,
                                 panels.data_ptr<T>(), dh.data_ptr<T>(), H, Cell::h_feeds_through};
        for_each_share(w0, w1, slots, panels.size(0), [&](Share sh) { kernels.column_product(q, sh.begin, sh.end); });
      });

  LinearGrads g = linear_grads_cpu<T>(dxw, dhh, l.x, y, l.h0, l.steps, l.w_ih, input_grad, false);
  const Tensor empty = at::empty({0}, options);
  LayerGrads grads{g.dx, dh, dc, g.dw_ih, g.dw_hh,
                   has_bias ? dpre_ih.sum(0) : empty, has_bias ? dpre_hh.sum(0) : empty, empty};
  LayerNormGrads norm;
  norm.ln_ih = (dpre_ih * workspace.narrow(1, LN::xhat_ih(H), G * H)).sum(0);
  norm.ln_hh = (dpre_hh * workspace.narrow(1, LN::xhat_hh(H), G * H)).sum(0);
  if constexpr (LN::normalises_c) {
    norm.ln_c_w = (dlc * workspace.narrow(1, LN::c_hat(H), H)).sum(0);
    norm.ln_c_b = dlc.sum(0);
  }
  return {grads, norm};
}

template <typename F>
auto visit_normalised_cell(CellId id, const F& f) {
  TORCH_CHECK(id == CellId::Lstm || id == CellId::Gru, "fusedrnn: only the LSTM and the GRU have a layer-normalised form");
  return id == CellId::Gru ? f(GruCell{}) : f(LstmCell{});
}

}  // namespace

LayerOutputs layernorm_forward(const LayerInputs& in, const LayerNormWeights& ln, bool training) {
  const Layer l = compute_layer(in);
  const NormWeights w = compute_norm_weights(ln, l.x.scalar_type());
  const auto dtype = in.x.scalar_type();
  const LayerShape& s = in.shape;
  const std::vector<int64_t> y_sizes = s.packed ? std::vector<int64_t>{s.N, s.H} : std::vector<int64_t>{s.T, s.B, s.H};
  const LayerOutputs out = visit_normalised_cell(in.cell, [&](auto cell) {
    using Cell = decltype(cell);
    return AT_DISPATCH_FLOATING_TYPES(l.x.scalar_type(), "fusedrnn_layernorm_forward_cpu",
                                      [&] { return forward_typed<Cell, scalar_t>(l, w, training, y_sizes); });
  });
  return {to_dtype(out.y, dtype), to_dtype(out.h_n, dtype), to_dtype(out.c_n, dtype), out.workspace};
}

std::pair<LayerGrads, LayerNormGrads> layernorm_backward(const LayerInputs& in, const LayerNormWeights& ln,
                                                         const LayerGradInputs& grads) {
  const Layer l = compute_layer(in);
  const NormWeights w = compute_norm_weights(ln, l.x.scalar_type());
  const LayerShape& s = in.shape;
  const ToCompute to{l.x.scalar_type()};
  const Tensor grad_y = as_packed(to(grads.grad_y), s), grad_hn = to(grads.grad_hn);
  const Tensor grad_cn = grads.grad_cn.has_value() ? to(*grads.grad_cn) : Tensor();
  const Tensor y = as_packed(to(grads.y), s), workspace = grads.workspace.contiguous();
  auto [g, norm] = visit_normalised_cell(in.cell, [&](auto cell) {
    using Cell = decltype(cell);
    return AT_DISPATCH_FLOATING_TYPES(l.x.scalar_type(), "fusedrnn_layernorm_backward_cpu", [&] {
      return backward_typed<Cell, scalar_t>(l, w, grad_y, grad_hn, grad_cn, y, workspace, grads.input_grad,
                                           grads.has_bias);
    });
  });
  const auto dtype = in.x.scalar_type();
  const LayerGrads out{grads.input_grad ? as_layout(g.dx, s, dtype) : g.dx, to_dtype(g.dh0, dtype),
                       to_dtype(g.dc0, dtype), to_dtype(g.dw_ih, dtype), to_dtype(g.dw_hh, dtype),
                       to_dtype(g.db_ih, dtype), to_dtype(g.db_hh, dtype), g.dw_hr};
  const LayerNormGrads norm_out{to_dtype(norm.ln_ih, dtype), to_dtype(norm.ln_hh, dtype),
                                to_dtype(norm.ln_c_w, dtype), to_dtype(norm.ln_c_b, dtype)};
  return {out, norm_out};
}

}  // namespace fusedrnn::cpu
