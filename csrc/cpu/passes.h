// The fused per-step passes (gate math over rows [begin, end) of one step), compiled once per
// instruction set and picked at run time: AVX2+FMA where the CPU has them, else a portable build.
// No torch includes: the per-ISA translation units keep their headers to a minimum.
#pragma once

#include <cstdint>

#include "fusedrnn/params.h"

namespace fusedrnn::cpu {

template <typename T>
struct StepPasses {
  void (*lstm_forward)(const LstmForwardStep<T>&, int64_t begin, int64_t end);
  void (*lstm_backward)(const LstmBackwardStep<T>&, int64_t begin, int64_t end);
  void (*gru_forward)(const GruForwardStep<T>&, int64_t begin, int64_t end);
  void (*gru_backward)(const GruBackwardStep<T>&, int64_t begin, int64_t end);
  void (*rnn_forward)(const RnnForwardStep<T>&, int64_t begin, int64_t end);
  void (*rnn_backward)(const RnnBackwardStep<T>&, int64_t begin, int64_t end);
};

enum class Isa : int { Default = 0, Avx2 = 1 };

template <typename T>
StepPasses<T> make_step_passes_default();  // passes_default.cpp
template <typename T>
StepPasses<T> make_step_passes_avx2();     // passes_avx2.cpp

// The passes of the active instruction set.
template <typename T>
const StepPasses<T>& step_passes();

// The best the CPU supports, unless FUSEDRNN_CPU_ISA=default|avx2 asked for another at start-up.
Isa active_isa();
// Forces an instruction set (tests compare them); returns false when the CPU lacks it.
bool set_active_isa(Isa isa);
bool cpu_supports(Isa isa);

}  // namespace fusedrnn::cpu
