// CPU-only builds: CUDA tensors get a clear error instead of the dispatcher's "could not run ...
// with arguments from the CUDA backend". (CUDA builds compile bindings/cuda.cpp instead.)
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <string>

#include "fusedrnn/cells.h"

namespace {

void cuda_unavailable(const c10::OperatorHandle& op, torch::jit::Stack*) {
  TORCH_CHECK(false, op.schema().name(),
              ": fusedrnn was built without CUDA support, so it cannot run on CUDA tensors. Rebuild it with a "
              "CUDA build of torch and nvcc on the PATH (or CUDA_HOME set): "
              "FUSEDRNN_CUDA=1 pip install --no-build-isolation .");
}

}  // namespace

TORCH_LIBRARY_IMPL(fusedrnn, CUDA, m) {
  fusedrnn::for_each_cell([&](auto cell) {
    for (const char* direction : {"_forward", "_backward"}) {
      const std::string op = std::string(decltype(cell)::name) + direction;
      m.impl(op.c_str(), torch::CppFunction::makeFromBoxedFunction<&cuda_unavailable>());
    }
  });
}
