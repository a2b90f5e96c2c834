// The cores' float32 FMA ceiling: 24 independent AVX-512 FMA chains in registers, no memory traffic,
// on one thread and on two at once. The GEMM-rate floor of scripts/gemm_floor.py is what torch.mm
// reaches; this is what no kernel can pass. x86-64 with AVX-512 only:
//
//   g++ -O3 -mavx512f -mfma scripts/fma_peak.cpp -o /tmp/fma_peak -lpthread && /tmp/fma_peak
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

namespace {

constexpr int kChains = 24;  // > FMA latency x issue width, < the 32 vector registers
constexpr long kIterations = 40'000'000;

// Seconds for kIterations rounds of kChains dependent-per-chain FMAs.
double run_chains() {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(i * 1e-3f);
  const __m512 scale = _mm512_set1_ps(0.999999f), add = _mm512_set1_ps(1e-7f);
  const auto start = std::chrono::steady_clock::now();
  for (long k = 0; k < kIterations; ++k) {
#pragma GCC unroll 24
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], scale, add);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  float sum = 0;  // the results are used, so the loop cannot be dropped
  for (int i = 0; i < kChains; ++i) sum += _mm512_reduce_add_ps(acc[i]);
  if (sum == 12345.0f) std::printf(" ");
  return seconds;
}

}  // namespace

int main() {
  const double flops = 2.0 * 16 * kChains * static_cast<double>(kIterations);  // per thread
  for (int round = 0; round < 3; ++round) {
    const double one = run_chains();
    double seconds[2];
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) threads.emplace_back([&seconds, t] { seconds[t] = run_chains(); });
    for (auto& t : threads) t.join();
    std::printf("1 thread: %.1f GFLOP/s (%.2f G FMA/s per core)   2 threads: %.1f GFLOP/s\n", flops / one / 1e9,
                flops / 32 / one / 1e9, 2 * flops / std::max(seconds[0], seconds[1]) / 1e9);
  }
}
