// Recurrent weights packed into the panels the CPU step kernels read (layout: cpu/step_args.h), and a
// small cache of them so that repeated calls with unchanged weights do not re-pack.
//
// Inference and training calls use the cache (a step-by-step loop calls a layer many times between two
// optimizer steps); inference-mode tensors are never cached. An entry is
// keyed by the caller's weight tensor, held weakly (the cache keeps no parameter alive and no new
// tensor can take its address), and is used only while the tensor's version counter, data pointer,
// shape and a hash of its contents all still match: in-place changes through the tensor bump the
// version, and writes that bypass it (`.data.copy_()`, another alias of the storage) change the hash.
// The hash reads the weights once per call, a fraction of what packing them costs.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace fusedrnn::cpu {

enum class PanelKind : int {
  GateRows = 0,  // forward: h W^T, every gate of a block of units in one panel
  Columns = 1,   // backward: d W, blocks of output columns
};

// w: [G*H, K] -> [ceil(H / (blocks*L)), K, G*blocks, L] with blocks = forward_panel_blocks(G).
at::Tensor pack_gate_rows(const at::Tensor& w, int64_t gates, int64_t lanes);
// w: [M, C] -> [ceil(C / (4L)), M, 4, L].
at::Tensor pack_columns(const at::Tensor& w, int64_t lanes);

// The panels of w (the caller's `source`, converted to the compute dtype): from the cache when source
// has not changed since they were packed (inference tensors are never cached: they have no version
// counter). Training calls use the cache too: a step-by-step loop calls a layer many times between two
// optimizer steps, and a call that packs its weights anyway pays only the hash (one read of them).
at::Tensor packed_panels(const at::Tensor& source, const at::Tensor& w, PanelKind kind, int64_t gates,
                         int64_t lanes);

struct PanelCacheStats {
  int64_t packs;    // panels packed (cache misses and uncacheable calls)
  int64_t hits;     // calls served from the cache
  int64_t entries;  // entries held now
};
PanelCacheStats panel_cache_stats();
void clear_panel_cache();

}  // namespace fusedrnn::cpu
