// Reused memory for the large temporaries of the CPU ops: the training workspace, gate gradients,
// packed panels, gathered states. A fresh buffer of that size comes from mmap and is faulted in page
// by page on first touch, at ~0.3 ms per MB (measured on the 2-core EPYC: 41 ms for the 131 MB
// workspace of an LSTM at B=64, H=1024, T=100, eight times the cost of writing it once mapped), and
// glibc unmaps it again when it is freed, so every training step paid that for every buffer.
//
// scratch_empty() hands out such buffers; when the last tensor using one dies its memory goes back to
// the pool, to be reused by the next request of a similar size. Only buffers the ops keep to
// themselves come from here: their storage cannot be resized, which a tensor returned to the user
// should allow. Idle memory is bounded (see scratch_pool.cpp) and can be dropped with
// clear_scratch_pool().
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace fusedrnn::cpu {

// An uninitialised CPU tensor of `sizes` and `options`' dtype, pooled when it is large.
at::Tensor scratch_empty(at::IntArrayRef sizes, const at::TensorOptions& options);

struct ScratchPoolStats {
  int64_t reuses;       // large requests served from idle memory
  int64_t allocations;  // large requests that allocated
  int64_t idle_blocks;  // blocks held idle now
  int64_t idle_bytes;
};
ScratchPoolStats scratch_pool_stats();
void clear_scratch_pool();  // frees every idle block

}  // namespace fusedrnn::cpu
