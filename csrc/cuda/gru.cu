// GRU step kernels for every storage dtype (one file per cell, so ninja compiles them in parallel).
#include "cuda/step_kernels.cuh"

namespace fusedrnn::cuda {

FUSEDRNN_INSTANTIATE_STEPS(CellKind::Gru, float)
FUSEDRNN_INSTANTIATE_STEPS(CellKind::Gru, __half)
FUSEDRNN_INSTANTIATE_STEPS(CellKind::Gru, __nv_bfloat16)

}  // namespace fusedrnn::cuda
