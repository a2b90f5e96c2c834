// Argument checks shared by every backend's bindings: each error names the op, the argument and
// the expected shape, dtype or device.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string>

#include "fusedrnn/scalar_math.h"
#include "sequence/layer.h"

namespace fusedrnn {

// Validates one layer's forward arguments; c0 is null for cells without a cell state, w_hr absent
// unless the cell is projectable.
LayerShape check_layer_inputs(const char* op, int gates, const at::Tensor& x, const at::Tensor& h0,
                              const at::Tensor* c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
                              const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& w_hr,
                              const OptTensor& batch_sizes);

// Validates the tensors a backward op receives beyond the forward's inputs.
void check_backward_inputs(const char* op, const LayerShape& shape, const at::Tensor& x, const at::Tensor& grad_y,
                           const at::Tensor& grad_hn, const at::Tensor* grad_cn, const at::Tensor& y,
                           const at::Tensor& workspace, int64_t workspace_cols);

// Validates a step-wise cell's options (fusedrnn/stepwise.h), each absent or of x's dtype and device:
// the norm weights ln_ih and ln_hh [gates * H], both or neither, and for a cell with a cell state
// (states == 2) ln_c_w and ln_c_b [H] with them; zoneout in x's layout with states * H features;
// recurrent_mask [B, H].
void check_stepwise_options(const char* op, int gates, int states, const LayerShape& shape, const at::Tensor& x,
                            const OptTensor& ln_ih, const OptTensor& ln_hh, const OptTensor& ln_c_w,
                            const OptTensor& ln_c_b, const OptTensor& zoneout, const OptTensor& recurrent_mask);

Activation parse_nonlinearity(const char* op, const std::string& nonlinearity);

}  // namespace fusedrnn
