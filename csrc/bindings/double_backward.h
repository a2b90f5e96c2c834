// The double-backward hook: a backward that runs with grad mode on (backward(create_graph=True)) needs a
// differentiable gradient, which the fused backward ops do not give. fusedrnn/_ops.py installs a Python
// function (through fusedrnn._C.set_double_backward) that takes it from autograd through the reference
// step loop; the autograd kernels (bindings/autograd.cpp) call it through double_backward().
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/ivalue.h>

#include <optional>
#include <vector>

#include "fusedrnn/cell.h"

namespace fusedrnn {

// inputs: the forward's differentiable arguments in op order (x, the states, w_ih, w_hh, b_ih, b_hh, w_hr
// for a projectable cell; undefined where absent); grads_out: the gradients of y and of the final states.
// Returns the inputs' gradients (undefined where none), or nullopt when the fused backward is to run
// instead (under torch.compile, or with no hook installed).
using DoubleBackwardHook = std::optional<std::vector<at::Tensor>> (*)(
    CellId cell, const std::vector<at::Tensor>& inputs, const c10::IValue& batch_sizes, bool reverse,
    const c10::IValue& nonlinearity, const std::vector<at::Tensor>& grads_out);

void set_double_backward_hook(DoubleBackwardHook hook);

std::optional<std::vector<at::Tensor>> double_backward(CellId cell, const std::vector<at::Tensor>& inputs,
                                                       const c10::IValue& batch_sizes, bool reverse,
                                                       const c10::IValue& nonlinearity,
                                                       const std::vector<at::Tensor>& grads_out);

}  // namespace fusedrnn
