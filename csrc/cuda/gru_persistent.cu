// GRU persistent kernels for every storage dtype (a file of their own, so ninja compiles them in parallel).
#include "cuda/persistent_kernels.cuh"

namespace fusedrnn::cuda {

FUSEDRNN_INSTANTIATE_PERSISTENT(GruCell, float)
FUSEDRNN_INSTANTIATE_PERSISTENT(GruCell, __half)
FUSEDRNN_INSTANTIATE_PERSISTENT(GruCell, __nv_bfloat16)

}  // namespace fusedrnn::cuda
