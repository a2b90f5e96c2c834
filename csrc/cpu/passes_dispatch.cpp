// Picks the instruction set of the fused passes once, from the CPU (or FUSEDRNN_CPU_ISA).
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "cpu/passes.h"

namespace fusedrnn::cpu {
namespace {

Isa best_supported() { return cpu_supports(Isa::Avx2) ? Isa::Avx2 : Isa::Default; }

Isa initial_isa() {
  const char* forced = std::getenv("FUSEDRNN_CPU_ISA");
  if (forced != nullptr && std::strcmp(forced, "default") == 0) return Isa::Default;
  return best_supported();
}

std::atomic<Isa>& isa_setting() {
  static std::atomic<Isa> isa{initial_isa()};
  return isa;
}

}  // namespace

bool cpu_supports(Isa isa) {
  if (isa == Isa::Default) return true;
#if defined(__x86_64__) && defined(__GNUC__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

Isa active_isa() { return isa_setting().load(); }

bool set_active_isa(Isa isa) {
  if (!cpu_supports(isa)) return false;
  isa_setting().store(isa);
  return true;
}

template <typename T>
const StepPasses<T>& step_passes() {
  static const StepPasses<T> portable = make_step_passes_default<T>();
  static const StepPasses<T> avx2 = cpu_supports(Isa::Avx2) ? make_step_passes_avx2<T>() : portable;
  return active_isa() == Isa::Avx2 ? avx2 : portable;
}

template const StepPasses<float>& step_passes<float>();
template const StepPasses<double>& step_passes<double>();

}  // namespace fusedrnn::cpu
