// Vanilla RNN persistent kernels for every storage dtype (a file of their own, so ninja compiles them in parallel).
#include "cuda/persistent_kernels.cuh"

namespace fusedrnn::cuda {

FUSEDRNN_INSTANTIATE_PERSISTENT(RnnCell, float)
FUSEDRNN_INSTANTIATE_PERSISTENT(RnnCell, __half)
FUSEDRNN_INSTANTIATE_PERSISTENT(RnnCell, __nv_bfloat16)

}  // namespace fusedrnn::cuda
