// LSTM persistent kernels for every storage dtype (a file of their own, so ninja compiles them in parallel).
#include "cuda/persistent_kernels.cuh"

namespace fusedrnn::cuda {

FUSEDRNN_INSTANTIATE_PERSISTENT(LstmCell, float)
FUSEDRNN_INSTANTIATE_PERSISTENT(LstmCell, __half)
FUSEDRNN_INSTANTIATE_PERSISTENT(LstmCell, __nv_bfloat16)

}  // namespace fusedrnn::cuda
