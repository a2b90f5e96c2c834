// The CPU backend of the layer ops: one layer, one direction, the whole sequence, for any cell of
// fusedrnn/cells.h (sequence/layer.h describes the arguments). float32 and float64 run natively;
// bfloat16 and float16 run in float32 and are rounded back on output.
//
// Forward: one team of threads runs the whole sequence; per step each thread multiplies h_{t-1} by
// its panels of W_hh (every gate of its hidden units) in registers, applies the cell's math and meets
// the others at one barrier. Backward: per step each thread computes the gate gradients of its units,
// a barrier, then its columns of dh_{t-1} = dgates W_hh. With proj_size the projection runs as a
// per-step GEMM between team runs. Weight gradients are batched products after the loop.
#pragma once

#include "sequence/layer.h"

namespace fusedrnn::cpu {

LayerOutputs forward(const LayerInputs& in, bool training);
LayerGrads backward(const LayerInputs& in, const LayerGradInputs& grads);

}  // namespace fusedrnn::cpu
