// Arguments of the persistent kernels (torch-free; cuda/layer.cpp fills them). One cooperative launch runs
// every step of a layer direction: each block keeps its slice of W_hh in shared memory for the whole
// sequence and the blocks meet at one grid-wide barrier per step.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cuda/step_args.h"

namespace fusedrnn::cuda {

// Where step k's rows live, as fusedrnn/schedule.h's Step. A dense batch needs no table.
struct StepRows {
  int64_t offset, rows, prev_offset, prev_rows;
};

struct StepTable {
  const int64_t* table;  // [steps, 4]: offset, rows, prev_offset, prev_rows; nullptr for a dense batch
  int steps;             // T
  int batch;             // B: rows of a dense step, the most rows of any step
  bool reverse;          // dense batch only

  __host__ __device__ StepRows at(int k) const {
    if (table != nullptr) return {table[4 * k], table[4 * k + 1], table[4 * k + 2], table[4 * k + 3]};
    const int64_t t = reverse ? steps - 1 - k : k;
    const int64_t prev_t = reverse ? t + 1 : t - 1;
    return {t * batch, batch, k > 0 ? prev_t * batch : 0, k > 0 ? batch : 0};
  }
};

// How the product of a block's weight slice with the rows of a step is computed.
enum class Product : int {
  Fma = 0,  // float FMA on the CUDA cores (exact float32 accumulation of the storage values)
  Mma = 1,  // tensor cores: bf16/fp16 operands, or tf32 for float32 when cudnn.allow_tf32 is set
};

// Launch shape chosen on the host (see plan_persistent in persistent_kernels.cuh).
struct PersistentPlan {
  bool ok = false;     // false: the slice does not fit on chip, or the grid cannot be co-resident
  int blocks = 0;      // one per slice of `units` hidden units; all resident at once
  int units = 0;       // hidden units (forward) or W_hh columns (backward) per block
  int chunk_rows = 0;  // batch rows per shared-memory chunk of a step
  size_t smem = 0;     // dynamic shared memory per block, bytes
  Product product = Product::Fma;
};

// Forward: `step` holds the pointers of step offset 0 (xproj, h_out = y, workspace, h_prev.from_step =
// y, h_prev.initial = h0); the kernel offsets them per step. step.w_hh is gate-interleaved [H * G, P].
template <typename T>
struct PersistentForwardArgs {
  ForwardStepArgs<T> step;
  // [2, B, P] or nullptr: float h for 16-bit T, in two slots. Step k (visiting order) writes slot k % 2
  // and reads slot (k + 1) % 2: a step's row r is batch row r in every step, so the previous step's rows
  // sit at the same row index. The barrier that ends step k - 1 separates its reads of slot k % 2 from
  // step k's writes. nullptr: h_prev reads y (float T), or h_prev_stored is set (tensor cores).
  float* h_slots;
  StepTable schedule;
  PersistentPlan plan;
};

// Backward (no projection, so P == H): `step` holds base pointers as in the forward; the kernel
// offsets grad_y, workspace, dgates, dgates_hh and the previous-state sources per step.
template <typename T>
struct PersistentBackwardArgs {
  BackwardStepArgs<T> step;
  const float* dgates_next;  // [N, G * H]: h-side gate gradients of every step (dgates_hh for cells with an
                             // input_apart gate, else dgates)
  const float* c0;           // [B, H]: initial cell state (float) of cells with c, or nullptr
  const T* y;                // [N, P]: the forward output, previous h of every step
  const T* h0;               // [B, P]
  StepTable schedule;
  PersistentPlan plan;
};

// The device's limits the plan is made from.
struct DeviceLimits {
  int sm_count;
  size_t smem_per_block;  // opt-in maximum of dynamic shared memory
};

template <typename Cell, typename T>
PersistentPlan plan_persistent_forward(int hidden, int out, int batch, bool tensor_cores, const DeviceLimits& device);
template <typename Cell, typename T>
PersistentPlan plan_persistent_backward(int hidden, int batch, const DeviceLimits& device);

template <typename Cell, typename T>
cudaError_t launch_persistent_forward(const PersistentForwardArgs<T>& args, cudaStream_t stream);
template <typename Cell, typename T>
cudaError_t launch_persistent_backward(const PersistentBackwardArgs<T>& args, cudaStream_t stream);

}  // namespace fusedrnn::cuda
