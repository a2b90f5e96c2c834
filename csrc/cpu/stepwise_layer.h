// The CPU backend of the step-wise cells (fusedrnn/stepwise.h): one layer, one direction, the whole
// sequence; arguments as for the plain cells (sequence/layer.h, no projection), plus any layer norms'
// weights, zoneout weights and recurrent-dropout mask. float32 and float64 run natively; bfloat16 and
// float16 in float32.
//
// Forward: x W_ih^T for all steps in one tiled product; then one team runs the steps, each in two phases
// with a barrier after each: (h * d) W_hh^T (the tiled product, the team splitting column panels), then
// the row pass (any layer norms, the cell's math, zoneout; the team splitting rows). Backward, per step:
// the row pass gives the gradients of both products, then d(h * d) = dhh W_hh; the weights' gradients
// are batched products and column sums after the loop.
#pragma once

#include <ATen/ATen.h>

#include "sequence/layer.h"

namespace fusedrnn::cpu {

struct StepwiseOptions {
  OptTensor ln_ih, ln_hh;      // [G*H]: layer norm (LSTM, GRU), both or neither
  OptTensor ln_c_w, ln_c_b;    // [H]: the layer-normalised LSTM's
  OptTensor zoneout;           // x's layout with S*H features: the previous h's (then c's) weight per step
  OptTensor recurrent_mask;    // [B, H]: multiplies h where it enters W_hh
  bool norm() const { return ln_ih.has_value(); }
};

struct StepwiseNormGrads {
  at::Tensor ln_ih, ln_hh, ln_c_w, ln_c_b;  // [0] without layer norm; the ln_c ones [0] but for the LSTM's
};

LayerOutputs stepwise_forward(const LayerInputs& in, const StepwiseOptions& options, bool training);
std::pair<LayerGrads, StepwiseNormGrads> stepwise_backward(const LayerInputs& in, const StepwiseOptions& options,
                                                           const LayerGradInputs& grads);

}  // namespace fusedrnn::cpu
