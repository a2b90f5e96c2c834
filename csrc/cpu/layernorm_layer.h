// The CPU backend of the layer-normalised LSTM and GRU (fusedrnn/layer_norm.h): one layer, one
// direction, the whole sequence; arguments as for the plain cells (sequence/layer.h, no projection),
// plus the layer norms' weights. float32 and float64 run natively; bfloat16 and float16 in float32.
//
// Forward: x W_ih^T for all steps in one tiled product; then one team runs the steps, each in two phases
// with a barrier after each: h W_hh^T (the tiled product, the team splitting column panels), then the row
// pass (both layer norms, the cell's math, the LSTM's norm of c'; the team splitting rows). Backward, per
// step: the row pass gives the gradients of both products, then dh_{t-1} = dhh W_hh; the weights'
// gradients are batched products and column sums after the loop.
#pragma once

#include <ATen/ATen.h>

#include "sequence/layer.h"

namespace fusedrnn::cpu {

struct LayerNormWeights {
  at::Tensor ln_ih, ln_hh;  // [G*H]
  at::Tensor ln_c_w, ln_c_b;  // [H]: the LSTM's; undefined for the GRU
};

struct LayerNormGrads {
  at::Tensor ln_ih, ln_hh, ln_c_w, ln_c_b;  // the LSTM's ln_c undefined for the GRU
};

LayerOutputs layernorm_forward(const LayerInputs& in, const LayerNormWeights& ln, bool training);
std::pair<LayerGrads, LayerNormGrads> layernorm_backward(const LayerInputs& in, const LayerNormWeights& ln,
                                                         const LayerGradInputs& grads);

}  // namespace fusedrnn::cpu
