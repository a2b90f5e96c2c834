// The autograd kernel of every forward op, in C++: one generic boxed kernel reads a call's arguments by
// the cell's traits (the argument order of csrc/ops.cpp), runs the op below autograd and records a
// LayerBackward node. A Python autograd formula (torch.library.register_autograd) cost two Python
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
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/saved_variable.h>
#include <torch/library.h>

#include <array>
#include <string>

#include "bindings/double_backward.h"
#include "fusedrnn/cells.h"

namespace fusedrnn {
namespace {

using at::Tensor;
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

c10::IValue optional_ivalue(const Tensor& t) { return t.defined() ? c10::IValue(t) : c10::IValue(); }

// What a forward call passed besides the tensors a gradient flows to.
struct CallOptions {
  c10::IValue batch_sizes;   // Tensor or None
  bool reverse = false;
  c10::IValue nonlinearity;  // str, for cells that take one
  bool training = false;
};

// Runs an op's kernel below autograd and ADInplaceOrView on stack (its arguments; its outputs after).
void call_below_autograd(const c10::OperatorHandle& op, Stack* stack) {
  at::AutoDispatchBelowADInplaceOrView below;
  op.callBoxed(stack);
}

Stack forward_stack(const Layout& l, const CallOptions& o, const variable_list& tensors, bool training) {
  Stack stack;
  for (size_t i = 0; i < l.differentiable(); ++i) stack.push_back(optional_ivalue(tensors[i]));
  stack.push_back(o.batch_sizes);
  stack.push_back(o.reverse);
  if (l.takes_nonlinearity) stack.push_back(o.nonlinearity);
  stack.push_back(training);
  return stack;
}

// The backward node of one forward op call, written as ATen's generated nodes are (a Node with its saved
// variables as members): torch::autograd::Function's generic apply, with its saved_data map, cost more
// than the kernel call itself at B = 1, H = 16. Its inputs (the gradients arriving) are
// those of y and the final states; its next edges are the differentiable arguments in op order, an
// invalid edge where one is absent.
struct LayerBackward : torch::autograd::Node {
  const Layout* layout = nullptr;
  CallOptions options;
  std::array<torch::autograd::SavedVariable, kSlots> inputs;  // the differentiable arguments
  torch::autograd::SavedVariable workspace;
  Tensor y_alias;  // y without history, sharing its version counter
  int64_t y_version = 0;

  std::string name() const override { return layout->forward->schema().name() + "Backward"; }

  void release_variables() override {
    for (auto& v : inputs) v.reset_data();
    workspace.reset_data();
    y_alias.reset();
  }

  variable_list apply(variable_list&& output_grads) override {
    const Layout& l = *layout;
    const c10::intrusive_ptr<Node> self = getptr();
    variable_list saved(l.differentiable());  // x first: after release_variables its unpack raises torch's
    for (size_t i = 0; i < saved.size(); ++i) saved[i] = inputs[i].unpack(self);  // "backward twice" error
    const Tensor ws = workspace.unpack(self);

    // Absent output gradients arrive undefined; the backward op takes zeros for them.
    variable_list grads_out{output_grads[0].defined() ? output_grads[0] : at::zeros_like(y_alias)};
    for (int s = 0; s < l.states; ++s) {
      const Tensor& g = output_grads[1 + s];
      grads_out.push_back(g.defined() ? g : at::zeros_like(saved[1 + s]));
    }

    if (at::GradMode::is_enabled()) {
      const std::optional<variable_list> reference =
          double_backward(l.cell, saved, options.batch_sizes, options.reverse, options.nonlinearity, grads_out);
      if (reference.has_value()) return *reference;
    }
    TORCH_CHECK(options.training, "fusedrnn.", l.forward->schema().name(),
                ": backward needs the forward to run with training=True (it saves the workspace); "
                "fusedrnn.functional sets it whenever grad mode is on and an input requires grad");

    Tensor y = y_alias;
    if (y_alias._version() != y_version) {  // changed in place: recompute
      at::NoGradGuard no_grad;
      c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
      Stack stack = forward_stack(l, options, saved, false);
      call_below_autograd(*l.forward, &stack);
      y = stack.front().toTensor();
    }

    // backward: output grads, x, states, w_ih, w_hh, w_hr?, has_bias, batch_sizes, reverse, nonlinearity?,
    // y, workspace, input_grad -> dx, states' grads, dw_ih, dw_hh, db_ih, db_hh, dw_hr?
    const size_t w_ih = l.w_ih();
    const bool has_b_ih = saved[w_ih + 2].defined(), has_b_hh = saved[w_ih + 3].defined();
    const bool input_grad = task_should_compute_output(0);  // x is the first argument
    Stack stack(grads_out.begin(), grads_out.end());
    for (size_t i = 0; i < w_ih + 2; ++i) stack.push_back(saved[i]);
    if (l.projectable) stack.push_back(optional_ivalue(saved[w_ih + 4]));
    stack.push_back(has_b_ih || has_b_hh);
    stack.push_back(options.batch_sizes);
    stack.push_back(options.reverse);
    if (l.takes_nonlinearity) stack.push_back(options.nonlinearity);
    stack.push_back(y);
    stack.push_back(ws);
    stack.push_back(input_grad);
    call_below_autograd(*l.backward, &stack);
    variable_list grads(l.differentiable());
    for (size_t i = 0; i < grads.size(); ++i) {
      // no gradient for an absent bias or w_hr, nor for an x that needs none (the op's dx is then [0])
      const bool present = (i < w_ih + 2 || saved[i].defined()) && (i > 0 || input_grad);
      if (present) grads[i] = std::move(stack[i]).toTensor();
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

// The Autograd kernel of every forward op: the kernel below autograd, then, when a gradient can flow, a
// LayerBackward node as the outputs' history (y and the final states; the workspace has none).
void autograd_forward(const c10::OperatorHandle& op, c10::DispatchKeySet keys, Stack* stack) {
  const Layout* l = nullptr;
  for (int id = 0; id < kCellCount; ++id) {
    if (op == *layout(static_cast<CellId>(id)).forward) l = &layout(static_cast<CellId>(id));
  }
  TORCH_INTERNAL_ASSERT(l != nullptr, "fusedrnn: no cell for ", op.schema().name());

  const size_t n = op.schema().arguments().size();
  auto args = torch::jit::last(*stack, n);
  variable_list tensors(l->differentiable());
  bool needs_graph = false;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (args[i].isNone()) continue;
    tensors[i] = args[i].toTensor();
    needs_graph = needs_graph || tensors[i].requires_grad();
  }
  if (!needs_graph || !at::GradMode::is_enabled()) {  // nothing to record: the kernel alone
    below_inplace_or_view(op, keys, stack);
    return;
  }
  const size_t next = l->differentiable();
  CallOptions options{args[next], args[next + 1].toBool(), c10::IValue(), args[n - 1].toBool()};
  if (l->takes_nonlinearity) options.nonlinearity = args[next + 2];

  below_inplace_or_view(op, keys, stack);  // the outputs replace the arguments on the stack
  const size_t outputs = 1 + l->states + 1;  // y, the final states, workspace
  c10::IValue* results = stack->data() + stack->size() - outputs;

  auto node = c10::make_intrusive<LayerBackward>();
  node->layout = l;
  node->options = std::move(options);
  node->set_next_edges(torch::autograd::collect_next_edges(tensors));
  for (size_t i = 0; i < tensors.size(); ++i) node->inputs[i] = torch::autograd::SavedVariable(tensors[i], false);
  node->workspace = torch::autograd::SavedVariable(results[outputs - 1].toTensor(), false);
  const Tensor& y = results[0].toTensor();
  node->y_alias = y.detach();  // shares y's version counter
  node->y_version = y._version();
  for (size_t i = 0; i + 1 < outputs; ++i) {  // y and the final states, in the order of apply's gradients
    torch::autograd::create_gradient_edge(results[i].toTensor(), node);
  }
  torch::autograd::fire_node_creation_hooks(node);  // as torch::autograd::Function does, once wired
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
