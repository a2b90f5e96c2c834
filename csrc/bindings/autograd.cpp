// The autograd kernel of every forward op, in C++: one generic boxed kernel reads a call's arguments by
// the cell's traits (the argument order of csrc/ops.cpp), records a LayerFunction node and runs the op
// below autograd. A Python autograd formula (torch.library.register_autograd) cost two Python
// round trips per call (its kernel and an ADInplaceOrView kernel), the largest part of a short call.
//
// Below ADInplaceOrView, as ATen's own kernels run, the outputs carry no view metadata (the backends
// return y as a view of their [N, P] buffer), so they take in-place ops such as `out += x`. y is not a
// saved tensor: the context keeps an alias sharing y's version counter, and the backward recomputes y
// (one inference forward) only if it was changed in place.
//
// Double backward (the backward running with grad mode on) takes its gradient from the reference step
// loop through a Python hook (bindings/double_backward.h); the fused backward ops are not
// differentiable.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <array>
#include <string>

#include "bindings/double_backward.h"
#include "fusedrnn/cells.h"

namespace fusedrnn {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using torch::jit::Stack;

// The most tensors a gradient can flow to: x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr (the LSTM's).
constexpr size_t kSlots = 8;

// Where a cell's arguments sit in its forward and backward ops (csrc/ops.cpp).
struct Layout {
  CellId cell;
  int states;                // 1 or 2
  bool projectable;          // the ops take w_hr
  bool takes_nonlinearity;   // the ops take a nonlinearity string
  const c10::OperatorHandle* forward;
  const c10::OperatorHandle* backward;

  // forward: x, states, w_ih, w_hh, b_ih, b_hh, w_hr?, batch_sizes, reverse, nonlinearity?, training
  size_t differentiable() const { return 1 + states + 4 + (projectable ? 1 : 0); }
  size_t w_ih() const { return 1 + states; }
};

template <typename Cell>
Layout layout_of() {
  auto& dispatcher = c10::Dispatcher::singleton();
  static const c10::OperatorHandle forward =
      dispatcher.findSchemaOrThrow((std::string("fusedrnn::") + Cell::name + "_forward").c_str(), "");
  static const c10::OperatorHandle backward =
      dispatcher.findSchemaOrThrow((std::string("fusedrnn::") + Cell::name + "_backward").c_str(), "");
  return {Cell::id, Cell::states, Cell::projectable, Cell::takes_nonlinearity, &forward, &backward};
}

const Layout& layout(CellId id) {
  static const std::array<Layout, kCellCount> layouts = [] {
    std::array<Layout, kCellCount> all{};
    for_each_cell([&](auto cell) { all[static_cast<int>(decltype(cell)::id)] = layout_of<decltype(cell)>(); });
    return all;
  }();
  return layouts[static_cast<int>(id)];
}

// What a forward call passed besides the tensors a gradient flows to.
struct CallOptions {
  const Layout* layout;
  c10::DispatchKeySet keys;  // the keys the Autograd kernel was called with
  c10::IValue batch_sizes;   // Tensor or None
  bool reverse;
  c10::IValue nonlinearity;  // str, for cells that take one
  bool training;
};

c10::IValue optional_ivalue(const Tensor& t) { return t.defined() ? c10::IValue(t) : c10::IValue(); }

// Runs an op's kernel below autograd and ADInplaceOrView; returns its outputs. From the Autograd kernel,
// keys are the ones it was called with (the keys above it ran already); from the backward, a new call.
Stack call_below_autograd(const c10::OperatorHandle& op, Stack stack,
                          std::optional<c10::DispatchKeySet> keys = std::nullopt) {
  at::AutoDispatchBelowADInplaceOrView below;
  if (keys.has_value()) {
    op.redispatchBoxed(*keys & c10::after_ADInplaceOrView_keyset, &stack);
  } else {
    op.callBoxed(&stack);
  }
  return stack;
}

Stack forward_stack(const CallOptions& o, const variable_list& tensors, bool training) {
  Stack stack;
  for (size_t i = 0; i < o.layout->differentiable(); ++i) stack.push_back(optional_ivalue(tensors[i]));
  stack.push_back(o.batch_sizes);
  stack.push_back(o.reverse);
  if (o.layout->takes_nonlinearity) stack.push_back(o.nonlinearity);
  stack.push_back(training);
  return stack;
}

struct LayerFunction : torch::autograd::Function<LayerFunction> {
  // slots: the differentiable arguments in op order, empty where absent or past the cell's count (an
  // undefined Tensor would count as an input; an empty optional does not)
  using Slot = std::optional<Tensor>;
  static variable_list forward(AutogradContext* ctx, const CallOptions* options, const Slot& s0, const Slot& s1,
                               const Slot& s2, const Slot& s3, const Slot& s4, const Slot& s5, const Slot& s6,
                               const Slot& s7) {
    variable_list tensors;
    for (const Slot* s : {&s0, &s1, &s2, &s3, &s4, &s5, &s6, &s7}) tensors.push_back(s->value_or(Tensor()));
    Stack out = call_below_autograd(*options->layout->forward, forward_stack(*options, tensors, options->training),
                                    options->keys);
    variable_list outputs;
    for (auto& value : out) outputs.push_back(std::move(value).toTensor());
    const Tensor& y = outputs.front();
    const Tensor& workspace = outputs.back();

    variable_list saved(tensors.begin(), tensors.end());
    saved.push_back(workspace);
    ctx->save_for_backward(saved);
    ctx->mark_non_differentiable({workspace});
    // Absent output gradients arrive undefined (the backward fills in what it needs): materialized, the
    // workspace's alone would be a zero-filled [N, W*H] tensor per call.
    ctx->set_materialize_grads(false);
    ctx->saved_data["cell"] = static_cast<int64_t>(options->layout->cell);
    ctx->saved_data["batch_sizes"] = options->batch_sizes;
    ctx->saved_data["reverse"] = options->reverse;
    ctx->saved_data["nonlinearity"] = options->nonlinearity;
    ctx->saved_data["training"] = options->training;
    ctx->saved_data["y"] = y.detach();  // shares y's version counter
    ctx->saved_data["y_version"] = static_cast<int64_t>(y._version());
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list output_grads) {
    const Layout& l = layout(static_cast<CellId>(ctx->saved_data["cell"].toInt()));
    const CallOptions options{&l,
                              c10::DispatchKeySet(),
                              ctx->saved_data["batch_sizes"],
                              ctx->saved_data["reverse"].toBool(),
                              ctx->saved_data["nonlinearity"],
                              ctx->saved_data["training"].toBool()};
    variable_list saved = ctx->get_saved_variables();
    const Tensor workspace = saved.back();
    saved.pop_back();  // saved: the kSlots differentiable arguments
    const Tensor y_alias = ctx->saved_data["y"].toTensor();

    variable_list grads_out{output_grads[0].defined() ? output_grads[0] : at::zeros_like(y_alias)};
    for (int s = 0; s < l.states; ++s) {
      const Tensor& g = output_grads[1 + s];
      grads_out.push_back(g.defined() ? g : at::zeros_like(saved[1 + s]));
    }

    variable_list grads(1 + kSlots);  // the options argument's gradient stays undefined
    if (at::GradMode::is_enabled()) {
      const variable_list inputs(saved.begin(), saved.begin() + l.differentiable());
      const std::optional<variable_list> reference =
          double_backward(l.cell, inputs, options.batch_sizes, options.reverse, options.nonlinearity, grads_out);
      if (reference.has_value()) {
        std::copy(reference->begin(), reference->end(), grads.begin() + 1);
        return grads;
      }
    }
    TORCH_CHECK(options.training, "fusedrnn.", l.forward->schema().name(),
                ": backward needs the forward to run with training=True (it saves the workspace); "
                "fusedrnn.functional sets it whenever grad mode is on and an input requires grad");

    Tensor y = y_alias;
    if (y_alias._version() != ctx->saved_data["y_version"].toInt()) {  // changed in place: recompute
      at::NoGradGuard no_grad;
      c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
      y = call_below_autograd(*l.forward, forward_stack(options, saved, false)).front().toTensor();
    }

    // backward: output grads, x, states, w_ih, w_hh, w_hr?, has_bias, batch_sizes, reverse, nonlinearity?,
    // y, workspace, input_grad -> dx, states' grads, dw_ih, dw_hh, db_ih, db_hh, dw_hr?
    const size_t w_ih = l.w_ih();
    const bool has_b_ih = saved[w_ih + 2].defined(), has_b_hh = saved[w_ih + 3].defined();
    Stack stack(grads_out.begin(), grads_out.end());
    for (size_t i = 0; i < w_ih + 2; ++i) stack.push_back(saved[i]);
    if (l.projectable) stack.push_back(optional_ivalue(saved[w_ih + 4]));
    stack.push_back(has_b_ih || has_b_hh);
    stack.push_back(options.batch_sizes);
    stack.push_back(options.reverse);
    if (l.takes_nonlinearity) stack.push_back(options.nonlinearity);
    stack.push_back(y);
    stack.push_back(workspace);
    const bool input_grad = ctx->needs_input_grad(0);  // x is the first tensor argument
    stack.push_back(input_grad);
    Stack result = call_below_autograd(*l.backward, std::move(stack));
    for (size_t i = 0; i < result.size(); ++i) {
      // no gradient for an absent bias or w_hr, nor for an x that needs none (the op's dx is then [0])
      const bool present = (i < w_ih + 2 || saved[i].defined()) && (i > 0 || input_grad);
      if (present) grads[1 + i] = std::move(result[i]).toTensor();
    }
    return grads;
  }
};

DoubleBackwardHook double_backward_hook = nullptr;

// Calls that skip autograd still run their kernel below ADInplaceOrView, so that y is never a view.
void below_inplace_or_view(const c10::OperatorHandle& op, c10::DispatchKeySet keys, Stack* stack) {
  at::AutoDispatchBelowADInplaceOrView below;
  op.redispatchBoxed(keys & c10::after_ADInplaceOrView_keyset, stack);
}

// The Autograd kernel of every forward op.
void autograd_forward(const c10::OperatorHandle& op, c10::DispatchKeySet keys, Stack* stack) {
  const Layout* l = nullptr;
  for (int id = 0; id < kCellCount; ++id) {
    if (op == *layout(static_cast<CellId>(id)).forward) l = &layout(static_cast<CellId>(id));
  }
  TORCH_INTERNAL_ASSERT(l != nullptr, "fusedrnn: no cell for ", op.schema().name());

  const size_t n = op.schema().arguments().size();
  auto args = torch::jit::last(*stack, n);
  std::array<LayerFunction::Slot, kSlots> slots;
  bool needs_graph = false;
  for (size_t i = 0; i < l->differentiable(); ++i) {
    if (args[i].isNone()) continue;
    slots[i] = args[i].toTensor();
    needs_graph = needs_graph || slots[i]->requires_grad();
  }
  if (!needs_graph || !at::GradMode::is_enabled()) {  // nothing to record: the kernel alone
    below_inplace_or_view(op, keys, stack);
    return;
  }
  size_t next = l->differentiable();
  CallOptions options{l, keys, args[next], args[next + 1].toBool(), c10::IValue(), false};
  if (l->takes_nonlinearity) options.nonlinearity = args[next + 2];
  options.training = args[n - 1].toBool();
  torch::jit::drop(*stack, n);

  variable_list outputs = LayerFunction::apply(&options, slots[0], slots[1], slots[2], slots[3], slots[4], slots[5],
                                               slots[6], slots[7]);
  for (auto& t : outputs) stack->push_back(std::move(t));
}

}  // namespace

void set_double_backward_hook(DoubleBackwardHook hook) { double_backward_hook = hook; }

std::optional<std::vector<at::Tensor>> double_backward(CellId cell, const std::vector<at::Tensor>& inputs,
                                                       const c10::IValue& batch_sizes, bool reverse,
                                                       const c10::IValue& nonlinearity,
                                                       const std::vector<at::Tensor>& grads_out) {
  if (double_backward_hook == nullptr) return std::nullopt;
  return double_backward_hook(cell, inputs, batch_sizes, reverse, nonlinearity, grads_out);
}

}  // namespace fusedrnn

TORCH_LIBRARY_IMPL(fusedrnn, Autograd, m) {
  fusedrnn::for_each_cell([&](auto cell) {
    const std::string op = std::string(decltype(cell)::name) + "_forward";
    m.impl(op.c_str(), torch::CppFunction::makeFromBoxedFunction<&fusedrnn::autograd_forward>());
  });
}

TORCH_LIBRARY_IMPL(fusedrnn, ADInplaceOrView, m) {
  fusedrnn::for_each_cell([&](auto cell) {
    const std::string op = std::string(decltype(cell)::name) + "_forward";
    m.impl(op.c_str(), torch::CppFunction::makeFromBoxedFunction<&fusedrnn::below_inplace_or_view>());
  });
}
