// Picks the instruction set of the CPU kernels once, from the CPU (or FUSEDRNN_CPU_ISA).
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "cpu/passes.h"

namespace fusedrnn::cpu {
namespace {

Isa best_supported() {
  if (cpu_supports(Isa::Avx512)) return Isa::Avx512;
  return cpu_supports(Isa::Avx2) ? Isa::Avx2 : Isa::Default;
}

Isa initial_isa() {
  const Isa best = best_supported();
  const char* forced = std::getenv("FUSEDRNN_CPU_ISA");
  if (forced == nullptr) return best;
  for (Isa isa : {Isa::Default, Isa::Avx2, Isa::Avx512}) {
    if (std::strcmp(forced, isa_name(isa)) == 0 && cpu_supports(isa)) return isa;
  }
  return best;
}

std::atomic<Isa>& isa_setting() {
  static std::atomic<Isa> isa{initial_isa()};
  return isa;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "default";
  }
}

bool cpu_supports(Isa isa) {
#if defined(__x86_64__) && defined(__GNUC__)
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  switch (isa) {
    case Isa::Avx512:
      return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    case Isa::Avx2: return avx2;
    default: return true;
  }
#else
  return isa == Isa::Default;
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
  static const StepPasses<T> avx512 = cpu_supports(Isa::Avx512) ? make_step_passes_avx512<T>() : portable;
  switch (active_isa()) {
    case Isa::Avx512: return avx512;
    case Isa::Avx2: return avx2;
    default: return portable;
  }
}

template const StepPasses<float>& step_passes<float>();
template const StepPasses<double>& step_passes<double>();

}  // namespace fusedrnn::cpu
