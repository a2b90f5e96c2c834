// The pool of scratch_pool.h: a mutex-guarded list of idle blocks, best fit within a quarter of the
// request's size.
#include "cpu/scratch_pool.h"

#include <c10/core/impl/alloc_cpu.h>

#include <algorithm>
#include <mutex>
#include <vector>

namespace fusedrnn::cpu {
namespace {

// Smaller buffers are left to malloc: its heap serves them without fresh pages often enough, and
// the pool would mostly add a lock.
constexpr size_t kMinPooledBytes = size_t{256} << 10;
// Requests are rounded up to this, so that near-equal sizes (another sequence length) can share.
constexpr size_t kGranule = size_t{64} << 10;
// Idle memory is bounded in size, and in age: a block not reused within this many pooled requests
// (several training steps of a deep stack) belongs to shapes no longer in use and is freed.
constexpr size_t kMaxIdleBytes = size_t{1} << 30;
constexpr uint64_t kMaxIdleRequests = 256;

struct Block {
  void* data;
  size_t bytes;
  uint64_t released_at;  // the request count when it went idle
};

struct Pool {
  std::mutex mutex;
  std::vector<Block> idle;
  size_t idle_bytes = 0;
  uint64_t requests = 0;
  int64_t reuses = 0, allocations = 0;

  // Frees the idle blocks of `doomed` (caller holds the lock).
  template <typename Pred>
  void free_idle_if(const Pred& doomed) {
    std::erase_if(idle, [&](const Block& b) {
      if (!doomed(b)) return false;
      c10::free_cpu(b.data);
      idle_bytes -= b.bytes;
      return true;
    });
  }

  // An idle block of at least `bytes` (and at most a quarter more), or {nullptr, 0}.
  Block take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex);
    ++requests;
    free_idle_if([&](const Block& b) { return requests - b.released_at > kMaxIdleRequests; });
    auto best = idle.end();
    for (auto it = idle.begin(); it != idle.end(); ++it) {
      const bool fits = it->bytes >= bytes && it->bytes - bytes <= bytes / 4;
      if (fits && (best == idle.end() || it->bytes < best->bytes)) best = it;
    }
    if (best == idle.end()) {
      ++allocations;
      return {nullptr, 0, 0};
    }
    const Block block = *best;
    idle_bytes -= block.bytes;
    idle.erase(best);
    ++reuses;
    return block;
  }

  void give_back(void* data, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex);
    if (idle_bytes + bytes > kMaxIdleBytes) {
      c10::free_cpu(data);
      return;
    }
    idle.push_back({data, bytes, requests});
    idle_bytes += bytes;
  }
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: pooled tensors may die after static destructors ran
  return *p;
}

}  // namespace

at::Tensor scratch_empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  const size_t bytes = static_cast<size_t>(c10::multiply_integers(sizes)) * options.dtype().itemsize();
  if (bytes < kMinPooledBytes) return at::empty(sizes, options);
  const size_t block_bytes = (bytes + kGranule - 1) / kGranule * kGranule;
  Block block = pool().take(block_bytes);
  if (block.data == nullptr) block = {c10::alloc_cpu(block_bytes), block_bytes, 0};
  const size_t held = block.bytes;  // a reused block may be larger than this request
  return at::from_blob(block.data, sizes, [held](void* p) { pool().give_back(p, held); }, options.device(at::kCPU));
}

ScratchPoolStats scratch_pool_stats() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  return {p.reuses, p.allocations, static_cast<int64_t>(p.idle.size()), static_cast<int64_t>(p.idle_bytes)};
}

void clear_scratch_pool() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  p.free_idle_if([](const Block&) { return true; });
}

}  // namespace fusedrnn::cpu
