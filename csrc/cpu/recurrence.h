// The step loops every cell shares: one team of threads per sequence, one barrier per step.
#pragma once

#include <algorithm>
#include <span>

#include "cpu/passes.h"
#include "cpu/team.h"
#include "fusedrnn/schedule.h"

namespace fusedrnn::cpu {

// parallel_shares counts work in MACs of the register-tiled products, which use each loaded weight for
// several rows. A matrix-vector product (a single row's step) reads a weight per MAC, and an outer
// product (a single row's weight gradient) stores an output per MAC: bound by memory, not arithmetic,
// they pay for a team from fewer MACs, so their MACs count this much more.
constexpr int64_t kWeightReadMacs = 4;
constexpr int64_t kOutputStoreMacs = 8;

// f(share) for every share of `pieces` in parallel, no barrier (one-shot products).
template <typename F>
void parallel_shares(int64_t pieces, int64_t macs, const F& f) {
  const int64_t slots = team_slots(pieces, macs);
  run_team(slots, [&](int64_t slot_begin, int64_t slot_end, Team&) {
    for_each_share(slot_begin, slot_end, slots, pieces, f);
  });
}

// Forward, steps in order: each thread runs step_kernel(step, panel_begin, panel_end) over its share of
// the `panels` forward panels (its hidden units), then the team meets before the next step.
template <typename StepKernel>
void run_forward_steps(std::span<const Step> steps, int64_t panels, int64_t macs_per_step,
                       const StepKernel& step_kernel) {
  const int64_t slots = team_slots(panels, macs_per_step, static_cast<int64_t>(steps.size()));
  run_team(slots, [&](int64_t slot_begin, int64_t slot_end, Team& team) {
    for (const Step& s : steps) {
      for_each_share(slot_begin, slot_end, slots, panels, [&](Share sh) { step_kernel(s, sh.begin, sh.end); });
      team.sync();
    }
  });
}

// Backward, steps in reverse: each thread computes the gate gradients of its hidden units
// (cell_grads(step, unit_begin, unit_end)), the team meets, then each thread computes its columns of
// dh_{t-1} (the ColumnProduct product_of(step) over its share of the `panels` column panels). A thread's
// units are its panels' columns, so the only data crossing threads are the step's gate gradients.
template <typename T, typename CellGrads, typename ProductOf>
void run_backward_steps(std::span<const Step> steps, int64_t panels, int64_t hidden, int64_t macs_per_step,
                        const CellGrads& cell_grads, const ProductOf& product_of) {
  const StepPasses<T>& kernels = step_passes<T>();
  const int64_t panel_units = kPanelVectors * kernels.lanes;
  const int64_t slots = team_slots(panels, macs_per_step, static_cast<int64_t>(steps.size()));
  run_team(slots, [&](int64_t slot_begin, int64_t slot_end, Team& team) {
    for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
      for_each_share(slot_begin, slot_end, slots, panels, [&](Share sh) {
        cell_grads(*it, sh.begin * panel_units, std::min(hidden, sh.end * panel_units));
      });
      team.sync();
      const ColumnProduct<T> q = product_of(*it);
      for_each_share(slot_begin, slot_end, slots, panels, [&](Share sh) { kernels.column_product(q, sh.begin, sh.end); });
    }
  });
}

// Steps of two phases that each need the other's whole result (the layer-normalised layers: a row's
// norm reads every column of the step's product, the next product every column of the rows): per step,
// first(step, slot_begin, slot_end), the team meets, second(...), the team meets again. One team for
// the sequence: a team per phase cost an OpenMP fork and join (~10 us on the 2-core VM) twice a step.
template <typename Steps, typename First, typename Second>
void run_phased_steps(const Steps& steps, int64_t slots, const First& first, const Second& second) {
  run_team(slots, [&](int64_t slot_begin, int64_t slot_end, Team& team) {
    for (const Step& s : steps) {
      first(s, slot_begin, slot_end);
      team.sync();
      second(s, slot_begin, slot_end);
      team.sync();
    }
  });
}

}  // namespace fusedrnn::cpu
