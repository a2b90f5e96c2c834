// RNN (tanh/relu) step kernels for every storage dtype (one file per cell, so ninja compiles them in parallel).
#include "cuda/step_kernels.cuh"

namespace fusedrnn::cuda {

FUSEDRNN_INSTANTIATE_STEPS(RnnCell, float)
FUSEDRNN_INSTANTIATE_STEPS(RnnCell, __half)
FUSEDRNN_INSTANTIATE_STEPS(RnnCell, __nv_bfloat16)

}  // namespace fusedrnn::cuda
