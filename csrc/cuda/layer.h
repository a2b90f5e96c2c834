// The CUDA backend of the layer ops: one layer, one direction, the whole sequence, for any cell of
// fusedrnn/cells.h (sequence/layer.h describes the arguments); float32, float16 and bfloat16.
//
// The input projection for all steps is one cuBLAS GEMM (through ATen) with a float output; the
// recurrence runs the persistent kernel or the step-wise path, as cuda/algorithm.h chooses; weight
// gradients are GEMMs over all steps afterwards. Every launch is on the current stream, with no host
// synchronisation and no allocation outside the caching allocator, so the ops can be captured in CUDA
// graphs.
#pragma once

#include "sequence/layer.h"

namespace fusedrnn::cuda {

LayerOutputs forward(const LayerInputs& in, bool training);
LayerGrads backward(const LayerInputs& in, const LayerGradInputs& grads);

}  // namespace fusedrnn::cuda
