// Registers the CUDA backend (cuda/layer.h) for every op. CPU-only builds compile no_cuda.cpp instead.
#include "bindings/layer_ops.h"
#include "cuda/layer.h"

TORCH_LIBRARY_IMPL(fusedrnn, CUDA, m) {
  fusedrnn::register_layer_ops<&fusedrnn::cuda::forward, &fusedrnn::cuda::backward>(m);
}
