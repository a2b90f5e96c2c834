// The CPU kernels for any x86-64 (or other) CPU: compiled with the extension's default flags.
#define FUSEDRNN_ISA isa_default
#include "cpu/passes_impl.h"

namespace fusedrnn::cpu {

template <typename T>
StepPasses<T> make_step_passes_default() {
  return isa_default::make_step_passes<T>();
}

template StepPasses<float> make_step_passes_default<float>();
template StepPasses<double> make_step_passes_default<double>();

}  // namespace fusedrnn::cpu
