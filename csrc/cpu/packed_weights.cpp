// Packing of recurrent weights into kernel panels, and the cache of packed panels.
#include "cpu/packed_weights.h"

#include <ATen/Parallel.h>
#include <c10/util/intrusive_ptr.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include "cpu/scratch_pool.h"
#include "cpu/step_args.h"

namespace fusedrnn::cpu {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

constexpr uint64_t kHashMul = 0x9E3779B97F4A7C15ull;

// Mixes the lanes of a hash and the bytes past its last full step into one 64-bit value.
uint64_t finish_hash(size_t n, const uint64_t* lanes, int count, const unsigned char* rest, size_t rest_bytes) {
  uint64_t h = n;
  for (size_t i = 0; i < rest_bytes; i += 8) {
    uint64_t w = 0;
    std::memcpy(&w, rest + i, std::min<size_t>(8, rest_bytes - i));
    h = ((h ^ w) * kHashMul) ^ (h >> 31);
  }
  for (int l = 0; l < count; ++l) h = ((h ^ lanes[l]) * kHashMul) ^ (h >> 31);
  return h;
}

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

// A 64-bit hash of n bytes: eight independent multiply-xor lanes (the portable version).
uint64_t hash_bytes_scalar(const unsigned char* bytes, size_t n) {
  const size_t words = n / 8;
  constexpr int kLanes = 8;
  uint64_t lane[kLanes];
  for (int l = 0; l < kLanes; ++l) lane[l] = kHashMul * (l + 1);
  size_t i = 0;
  for (; i + kLanes <= words; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      uint64_t w;
      std::memcpy(&w, bytes + (i + l) * 8, 8);
      lane[l] = (lane[l] ^ w) * kHashMul;
      lane[l] ^= lane[l] >> 29;
    }
  }
  return finish_hash(n, lane, kLanes, bytes + i * 8, n - i * 8);
}

#if defined(__x86_64__) || defined(_M_X64)
// The same idea on 64 lanes of 32 bits in eight AVX2 registers, four times the scalar version's rate:
// that one is bound by its 64-bit multiplies (~16 GB/s here), below the cache's bandwidth. Each step
// (lane ^ w) * odd is a bijection that keeps the lowest changed bit, so a change in any one word always
// changes its lane.
__attribute__((target("avx2"))) uint64_t hash_bytes_avx2(const unsigned char* bytes, size_t n) {
  constexpr int kVectors = 8;
  const __m256i mul = _mm256_set1_epi32(static_cast<int>(0x9E3779B1u));
  __m256i lane[kVectors];
  for (int v = 0; v < kVectors; ++v) lane[v] = _mm256_set_epi32(8 * v + 8, 8 * v + 7, 8 * v + 6, 8 * v + 5, 8 * v + 4,
                                                                 8 * v + 3, 8 * v + 2, 8 * v + 1);
  constexpr size_t kStep = kVectors * 32;
  size_t i = 0;
  for (; i + kStep <= n; i += kStep) {
    for (int v = 0; v < kVectors; ++v) {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bytes + i + 32 * v));
      lane[v] = _mm256_mullo_epi32(_mm256_xor_si256(lane[v], w), mul);
    }
  }
  uint64_t words[kVectors * 4];
  for (int v = 0; v < kVectors; ++v) _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + 4 * v), lane[v]);
  return finish_hash(n, words, kVectors * 4, bytes + i, n - i);
}
#endif

uint64_t hash_bytes(const unsigned char* bytes, size_t n) {
#if defined(__x86_64__) || defined(_M_X64)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return hash_bytes_avx2(bytes, n);
#endif
  return hash_bytes_scalar(bytes, n);
}

// The hash of a tensor's bytes, over chunks of 256 KB that the threads share (the hash reads the weights
// once per call, so it runs at memory bandwidth: two cores read faster than one), combined in chunk
// order, so the result is the same for any thread count.
uint64_t content_hash(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  const auto* bytes = static_cast<const unsigned char*>(c.data_ptr());
  constexpr int64_t kChunk = int64_t{256} << 10;
  const int64_t n = static_cast<int64_t>(c.nbytes()), chunks = (n + kChunk - 1) / kChunk;
  if (chunks <= 1) return hash_bytes(bytes, n);
  std::vector<uint64_t> parts(chunks);
  at::parallel_for(0, chunks, 4, [&](int64_t begin, int64_t end) {  // threads from 1 MB up
    for (int64_t i = begin; i < end; ++i) parts[i] = hash_bytes(bytes + i * kChunk, std::min(kChunk, n - i * kChunk));
  });
  return hash_bytes(reinterpret_cast<const unsigned char*>(parts.data()), parts.size() * sizeof(uint64_t));
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

constexpr size_t kMaxEntries = 64;  // 3 kinds of panels per layer direction, in training

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
         c10::IntArrayRef(e.sizes) == source.sizes() && e.hash == hash;
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
                         int64_t lanes) {
  if (source.is_inference()) return pack(w, kind, gates, lanes);
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
