// The CUDA runtime the CUDA part was linked against, for fusedrnn.backends.cuda.
#include <cuda_runtime.h>

#include "cuda/device_info.h"

namespace fusedrnn::cuda {

int runtime_version() {
  int version = 0;
  if (cudaRuntimeGetVersion(&version) != cudaSuccess) return -1;
  return version;
}

}  // namespace fusedrnn::cuda
