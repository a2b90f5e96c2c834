// The CUDA part of the build. The kernels themselves come with the CUDA ops; for now this file
// proves that nvcc compiles the shared cell math for the device and that cudart links.
#include <cuda_runtime.h>

#include "fusedrnn/cell_math.h"

namespace fusedrnn {

// Instantiates every cell function on the device, so a CUDA build checks that cell_math.h stays
// host+device clean. Not launched.
template <typename T>
__global__ void cell_math_device_instantiation(T* v) {
  using M = ScalarMath<T>;
  const auto l = lstm_cell_forward<M>(v[0], v[1], v[2], v[3], v[4]);
  const auto dl = lstm_cell_backward<M>(v[5], v[6], l.i, l.f, l.g, l.o, l.c, v[4]);
  const auto g = gru_cell_forward<M>(v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
  const auto dg = gru_cell_backward<M>(v[7], g.r, g.z, g.n, v[5], v[6]);
  v[8] = l.h + dl.pre_i + dl.pre_f + dl.pre_g + dl.pre_o + dl.c_prev + g.h + dg.pre_r + dg.pre_z + dg.xn +
         dg.hn + dg.h_prev + rnn_cell_forward<M>(v[0], Activation::Relu) + rnn_cell_backward<M>(v[1], v[2], Activation::Tanh);
}

template __global__ void cell_math_device_instantiation<float>(float*);
template __global__ void cell_math_device_instantiation<double>(double*);

}  // namespace fusedrnn

extern "C" int fusedrnn_cuda_runtime_version() {
  int version = 0;
  if (cudaRuntimeGetVersion(&version) != cudaSuccess) return -1;
  return version;
}
