// The CPU step kernels, compiled once per instruction set and picked at run time: AVX-512 or
// AVX2+FMA where the CPU has them, else a portable build. No torch includes: the per-ISA translation
// units keep their headers to a minimum.
//
// Forward kernels fuse a step's recurrent product (from packed panels, see step_args.h) with the gate
// math for a range of panels and every row of the step. Backward kernels split in two: the gate
// gradients for a range of hidden units, then the product d W_hh for a range of column panels.
#pragma once

#include <cstdint>

#include "cpu/step_args.h"

namespace fusedrnn::cpu {

template <typename T>
struct StepPasses {
  int64_t lanes;  // L: SIMD lanes of T, the panels' vector width
  void (*lstm_forward)(const LstmForwardStep<T>&, int64_t panel_begin, int64_t panel_end);
  void (*gru_forward)(const GruForwardStep<T>&, int64_t panel_begin, int64_t panel_end);
  void (*rnn_forward)(const RnnForwardStep<T>&, int64_t panel_begin, int64_t panel_end);
  void (*lstm_backward)(const LstmBackwardStep<T>&, int64_t unit_begin, int64_t unit_end);
  void (*gru_backward)(const GruBackwardStep<T>&, int64_t unit_begin, int64_t unit_end);
  void (*rnn_backward)(const RnnBackwardStep<T>&, int64_t unit_begin, int64_t unit_end);
  void (*column_product)(const ColumnProduct<T>&, int64_t panel_begin, int64_t panel_end);
};

enum class Isa : int { Default = 0, Avx2 = 1, Avx512 = 2 };

template <typename T>
StepPasses<T> make_step_passes_default();  // passes_default.cpp
template <typename T>
StepPasses<T> make_step_passes_avx2();     // passes_avx2.cpp
template <typename T>
StepPasses<T> make_step_passes_avx512();   // passes_avx512.cpp

// The kernels of the active instruction set.
template <typename T>
const StepPasses<T>& step_passes();

// The best the CPU supports, unless FUSEDRNN_CPU_ISA=default|avx2|avx512 asked for another at start-up.
Isa active_isa();
// Forces an instruction set (tests compare them); returns false when the CPU lacks it.
bool set_active_isa(Isa isa);
bool cpu_supports(Isa isa);
const char* isa_name(Isa isa);

}  // namespace fusedrnn::cpu
