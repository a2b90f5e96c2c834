// A team of threads that runs a whole sequence in one parallel region and meets at a spin barrier
// once per step (a per-step parallel_for would pay a fork/join per step instead).
//
// The team is torch's own OpenMP team (at::parallel_for), so torch.set_num_threads is respected and no
// second thread pool competes with torch's. The body gets a range of worker slots: usually one, but
// when OpenMP hands a thread several slots (a nested call runs them all on one thread) that thread
// does each slot's share of a step before it meets the others.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace fusedrnn::cpu {

inline void spin_pause() {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_pause();
#endif
}

class Team {
 public:
  explicit Team(int64_t slots) : slots_(slots) {}

  // Every thread calls this once, before its first sync(), with the number of slots it took.
  void join(int64_t slots) {
    members_.fetch_add(1, std::memory_order_acq_rel);
    claimed_.fetch_add(slots, std::memory_order_acq_rel);
  }

  // The barrier: returns once every member has called it as often as this thread has. Writes made
  // before it are visible to every member after it.
  void sync() {
    // The team's size is final once every slot is claimed (members join before they claim).
    spin_until([&] { return claimed_.load(std::memory_order_acquire) == slots_; });
    const int64_t members = members_.load(std::memory_order_acquire);
    if (members == 1) return;
    const int64_t generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == members) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.store(generation + 1, std::memory_order_release);
    } else {
      spin_until([&] { return generation_.load(std::memory_order_acquire) != generation; });
    }
  }

 private:
  // Spins briefly (a step takes microseconds), then yields so an oversubscribed machine still progresses.
  template <typename Ready>
  static void spin_until(const Ready& ready) {
    for (int spins = 0; !ready(); ++spins) {
      if (spins < 4096) {
        spin_pause();
      } else {
        std::this_thread::yield();
      }
    }
  }

  const int64_t slots_;
  std::atomic<int64_t> members_{0}, claimed_{0}, arrived_{0}, generation_{0};
};

// Runs body(slot_begin, slot_end, team) for worker slots [0, slots) on up to `slots` threads at once.
// The body must not throw: a member that left early would leave the others waiting at the barrier.
template <typename Body>
void run_team(int64_t slots, const Body& body) {
  Team team(slots);
#if AT_PARALLEL_OPENMP
  if (slots > 1) {
    at::parallel_for(0, slots, 1, [&](int64_t begin, int64_t end) {
      team.join(end - begin);
      body(begin, end, team);
    });
    return;
  }
#endif
  // Without OpenMP, parallel_for's tasks need not run at the same time, so a barrier could wait
  // forever: one thread then does every slot.
  team.join(slots);
  body(int64_t{0}, slots, team);
}

// How many worker slots a sequence gets: no more than torch's threads or the pieces of work, few enough
// that each slot's share of a step outweighs a barrier (~1 us), and one for a call whose whole work
// (steps x macs_per_step) is too small to pay for starting a team (an OpenMP fork and join, ~10 us on
// a 2-core VM): a cell step at B = 1, H = 256 ran 23% faster on one thread than on two.
inline int64_t team_slots(int64_t pieces, int64_t macs_per_step, int64_t steps = 1) {
  constexpr int64_t kMacsPerSlot = 32768, kMinTeamMacs = int64_t{1} << 19;
  if (macs_per_step * steps < kMinTeamMacs) return 1;
  const int64_t by_work = std::max<int64_t>(1, macs_per_step / kMacsPerSlot);
  return std::max<int64_t>(1, std::min({static_cast<int64_t>(at::get_num_threads()), pieces, by_work}));
}

// Slot w's share [begin, end) of `pieces` split as evenly as possible over `slots`.
struct Share {
  int64_t begin, end;
};
inline Share share_of(int64_t pieces, int64_t slots, int64_t w) {
  return {pieces * w / slots, pieces * (w + 1) / slots};
}

// f(share) for each of a thread's slots [slot_begin, slot_end).
template <typename F>
inline void for_each_share(int64_t slot_begin, int64_t slot_end, int64_t slots, int64_t pieces, const F& f) {
  for (int64_t w = slot_begin; w < slot_end; ++w) f(share_of(pieces, slots, w));
}

}  // namespace fusedrnn::cpu
