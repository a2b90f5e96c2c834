// The CPU step kernels, compiled once per instruction set and picked at run time: AVX-512 or
// AVX2+FMA where the CPU has them, else a portable build. No torch includes: the per-ISA translation
// units keep their headers to a minimum.
//
// Forward kernels fuse a step's recurrent product (from packed panels, see step_args.h) with the cell's
// forward math for a range of panels and every row of the step. Backward kernels split in two: the
// gate gradients for a range of hidden units, then the product d W_hh for a range of column panels.
// Every cell of fusedrnn/cells.h gets its forward and backward, instantiated from one generic kernel.
#pragma once

#include <cstdint>

#include "cpu/step_args.h"
#include "cpu/stepwise_step_args.h"
#include "fusedrnn/cells.h"

namespace fusedrnn::cpu {

template <typename T>
struct CellPasses {
  void (*forward)(const ForwardStep<T>&, int64_t panel_begin, int64_t panel_end);
  void (*backward)(const BackwardStep<T>&, int64_t unit_begin, int64_t unit_end);
};

// The row passes of a step-wise cell (fusedrnn/stepwise.h), after a step's products.
template <typename T>
struct StepwisePasses {
  void (*forward)(const StepwiseForwardStep<T>&, int64_t row_begin, int64_t row_end);
  void (*backward)(const StepwiseBackwardStep<T>&, int64_t row_begin, int64_t row_end);
};

template <typename T>
struct StepPasses {
  int64_t lanes;                   // L: SIMD lanes of T, the panels' vector width
  CellPasses<T> cells[kCellCount];  // indexed by CellId
  void (*column_product)(const ColumnProduct<T>&, int64_t panel_begin, int64_t panel_end);
  void (*row_dots)(const MatVec<T>&, int64_t row_begin, int64_t row_end);
  void (*column_sums)(const MatVec<T>&, int64_t col_begin, int64_t col_end);
  StepwisePasses<T> stepwise[kCellCount];  // indexed by CellId

  template <typename Cell>
  const CellPasses<T>& of() const { return cells[static_cast<int>(Cell::id)]; }
  template <typename Cell>
  const StepwisePasses<T>& stepwise_of() const { return stepwise[static_cast<int>(Cell::id)]; }
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
