// Packing of recurrent weights into kernel panels, and the cache of packed panels.
#include "cpu/packed_weights.h"

#include <ATen/Parallel.h>
#include <c10/util/intrusive_ptr.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <vector>

#include "cpu/scratch_pool.h"
#include "cpu/step_args.h"

namespace fusedrnn::cpu {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename T>
void fill_gate_rows(const at::Tensor& w, int64_t gates, int64_t lanes, at::Tensor& out) {
  const int64_t H = w.size(0) / gates, K = w.size(1);
  const int64_t blocks = forward_panel_blocks(static_cast<int>(gates)), vectors = gates * blocks;
  const T* src = w.data_ptr<T>();
  T* dst = out.data_ptr<T>();
  at::parallel_for(0, out.size(0), 1, [&](int64_t begin, int64_t end) {
    for (int64_t panel = begin; panel < end; ++panel) {
      T* panel_out = dst + panel * K * vectors * lanes;
      for (int64_t b = 0; b < blocks; ++b) {
        for (int64_t g = 0; g < gates; ++g) {
          for (int64_t l = 0; l < lanes; ++l) {
            const int64_t unit = (panel * blocks + b) * lanes + l;
            if (unit >= H) break;
            const T* row = src + (g * H + unit) * K;
            T* column = panel_out + (b * gates + g) * lanes + l;
            for (int64_t k = 0; k < K; ++k) column[k * vectors * lanes] = row[k];
          }
        }
      }
    }
  });
}

template <typename T>
void fill_columns(const at::Tensor& w, int64_t lanes, at::Tensor& out) {
  const int64_t M = w.size(0), C = w.size(1), width = kPanelVectors * lanes;
  const T* src = w.data_ptr<T>();
  T* dst = out.data_ptr<T>();
  at::parallel_for(0, out.size(0), 1, [&](int64_t begin, int64_t end) {
    for (int64_t panel = begin; panel < end; ++panel) {
      const int64_t first = panel * width, n = std::min(width, C - first);
      for (int64_t m = 0; m < M; ++m) std::copy_n(src + m * C + first, n, dst + (panel * M + m) * width);
    }
  });
}

// The fills write every lane that holds a weight; only a last panel that is partly past the end
// (`size` % `per_panel` != 0) has lanes to zero. Zero-filling every panel first cost a second pass over
// the packed weights, on every training call.
void zero_partial_last_panel(at::Tensor& panels, int64_t size, int64_t per_panel) {
  if (size % per_panel != 0) panels.select(0, panels.size(0) - 1).zero_();
}

// A 64-bit hash of a tensor's bytes: eight independent multiply-xor lanes, so it runs near memory speed.
uint64_t content_hash(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  const auto* bytes = static_cast<const unsigned char*>(c.data_ptr());
  const size_t n = c.nbytes(), words = n / 8;
  constexpr int kLanes = 8;
  constexpr uint64_t kMul = 0x9E3779B97F4A7C15ull;
  uint64_t lane[kLanes];
  for (int l = 0; l < kLanes; ++l) lane[l] = kMul * (l + 1);
  size_t i = 0;
  for (; i + kLanes <= words; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      uint64_t w;
      std::memcpy(&w, bytes + (i + l) * 8, 8);
      lane[l] = (lane[l] ^ w) * kMul;
      lane[l] ^= lane[l] >> 29;
    }
  }
  uint64_t h = n;
  for (; i * 8 < n; ++i) {  // the last words and bytes
    uint64_t w = 0;
    std::memcpy(&w, bytes + i * 8, std::min<size_t>(8, n - i * 8));
    h = ((h ^ w) * kMul) ^ (h >> 31);
  }
  for (int l = 0; l < kLanes; ++l) h = ((h ^ lane[l]) * kMul) ^ (h >> 31);
  return h;
}

struct Entry {
  // Held weakly: the TensorImpl's memory stays allocated while this lives, so its address cannot be
  // taken by a new tensor and identifies the source even after the source died (then: expired).
  c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl> source;
  int64_t version;
  uint64_t hash;
  const void* data;
  std::vector<int64_t> sizes;
  PanelKind kind;
  int64_t gates, lanes;
  at::ScalarType dtype;
  at::Tensor panels;
  uint64_t last_use;
};

constexpr size_t kMaxEntries = 32;

struct Cache {
  std::mutex mutex;
  std::vector<Entry> entries;
  uint64_t clock = 0;
  std::atomic<int64_t> packs{0}, hits{0};
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: tensors must not be freed after torch unloads
  return *c;
}

at::Tensor pack(const at::Tensor& w, PanelKind kind, int64_t gates, int64_t lanes) {
  cache().packs.fetch_add(1);
  return kind == PanelKind::GateRows ? pack_gate_rows(w, gates, lanes) : pack_columns(w, lanes);
}

bool same_key(const Entry& e, const at::Tensor& source, const at::Tensor& w, PanelKind kind, int64_t gates,
              int64_t lanes) {
  return e.source._unsafe_get_target() == source.unsafeGetTensorImpl() && e.kind == kind && e.gates == gates && e.lanes == lanes &&
         e.dtype == w.scalar_type();
}

bool still_valid(const Entry& e, const at::Tensor& source, uint64_t hash) {
  return !e.source.expired() && e.version == source._version() && e.data == source.data_ptr() &&
         e.sizes == source.sizes().vec() && e.hash == hash;
}

}  // namespace

at::Tensor pack_gate_rows(const at::Tensor& w, int64_t gates, int64_t lanes) {
  const int64_t H = w.size(0) / gates, K = w.size(1);
  const int64_t blocks = forward_panel_blocks(static_cast<int>(gates));
  at::Tensor out = scratch_empty({ceil_div(H, blocks * lanes), K, gates * blocks, lanes}, w.options());
  zero_partial_last_panel(out, H, blocks * lanes);
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "fusedrnn_pack_gate_rows",
                             [&] { fill_gate_rows<scalar_t>(w.contiguous(), gates, lanes, out); });
  return out;
}

at::Tensor pack_columns(const at::Tensor& w, int64_t lanes) {
  const int64_t M = w.size(0), C = w.size(1);
  at::Tensor out = scratch_empty({ceil_div(C, kPanelVectors * lanes), M, kPanelVectors, lanes}, w.options());
  zero_partial_last_panel(out, C, kPanelVectors * lanes);
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "fusedrnn_pack_columns",
                             [&] { fill_columns<scalar_t>(w.contiguous(), lanes, out); });
  return out;
}

at::Tensor packed_panels(const at::Tensor& source, const at::Tensor& w, PanelKind kind, int64_t gates,
                         int64_t lanes, bool use_cache) {
  if (!use_cache || source.is_inference()) return pack(w, kind, gates, lanes);
  const uint64_t hash = content_hash(source);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    for (auto it = c.entries.begin(); it != c.entries.end(); ++it) {
      if (!same_key(*it, source, w, kind, gates, lanes)) continue;
      if (still_valid(*it, source, hash)) {
        it->last_use = ++c.clock;
        c.hits.fetch_add(1);
        return it->panels;
      }
      c.entries.erase(it);  // stale: the tensor changed, or died
      break;
    }
  }
  at::Tensor panels = pack(w, kind, gates, lanes);
  std::lock_guard<std::mutex> lock(c.mutex);
  std::erase_if(c.entries, [](const Entry& e) { return e.source.expired(); });
  if (c.entries.size() >= kMaxEntries) {
    c.entries.erase(std::min_element(c.entries.begin(), c.entries.end(),
                                     [](const Entry& a, const Entry& b) { return a.last_use < b.last_use; }));
  }
  c.entries.push_back(Entry{c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>(
                                source.getIntrusivePtr()),
                            source._version(), hash, source.data_ptr(),
                            source.sizes().vec(), kind, gates, lanes, w.scalar_type(), panels, ++c.clock});
  return panels;
}

PanelCacheStats panel_cache_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return {c.packs.load(), c.hits.load(), static_cast<int64_t>(c.entries.size())};
}

void clear_panel_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.entries.clear();
}

}  // namespace fusedrnn::cpu
