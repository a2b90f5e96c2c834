// GRU step kernels for every storage dtype (one file per cell, so ninja compiles them in parallel).
#include "cuda/step_kernels.cuh"

namespace fusedrnn::cuda {

FUSEDRNN_INSTANTIATE_STEPS(GruCell, float)
FUSEDRNN_INSTANTIATE_STEPS(GruCell, __half)
FUSEDRNN_INSTANTIATE_STEPS(GruCell, __nv_bfloat16)

}  // namespace fusedrnn::cuda
