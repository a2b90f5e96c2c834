// Registers the CPU backend (cpu/layer.h) for every op.
#include "bindings/layer_ops.h"
#include "cpu/layer.h"

TORCH_LIBRARY_IMPL(fusedrnn, CPU, m) {
  fusedrnn::register_layer_ops<&fusedrnn::cpu::forward, &fusedrnn::cpu::backward>(m);
}
