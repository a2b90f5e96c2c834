// LSTM step kernels for every storage dtype (one file per cell, so ninja compiles them in parallel).
#include "cuda/step_kernels.cuh"

namespace fusedrnn::cuda {

FUSEDRNN_INSTANTIATE_STEPS(LstmCell, float)
FUSEDRNN_INSTANTIATE_STEPS(LstmCell, __half)
FUSEDRNN_INSTANTIATE_STEPS(LstmCell, __nv_bfloat16)

}  // namespace fusedrnn::cuda
