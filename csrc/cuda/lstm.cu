// LSTM step kernels for every storage dtype (one file per cell, so ninja compiles them in parallel).
#include "cuda/step_kernels.cuh"

namespace fusedrnn::cuda {

FUSEDRNN_INSTANTIATE_STEPS(CellKind::Lstm, float)
FUSEDRNN_INSTANTIATE_STEPS(CellKind::Lstm, __half)
FUSEDRNN_INSTANTIATE_STEPS(CellKind::Lstm, __nv_bfloat16)

}  // namespace fusedrnn::cuda
