// Which CUDA algorithm runs a layer direction: the persistent kernel (one cooperative launch for the
// whole sequence) or the step-wise path (a GEMM and a pointwise kernel per step), and a count of
// what ran, for tests, benchmarks and fusedrnn.backends.cuda to see.
#pragma once

#include <atomic>
#include <cstdint>

#include "cuda/persistent_args.h"

namespace fusedrnn::cuda {

enum class Algorithm { Auto, Step, Persistent };

// FUSEDRNN_ALGO=step|persistent forces one algorithm (persistent where the layer allows it, see
// use_persistent); unset or auto lets the plan and the batch size decide. Read on every call.
Algorithm requested_algorithm();

// Auto runs step-wise from this many batch rows times hidden units. On an H200 (T = 128, LSTM and
// GRU, float32 and bfloat16, both algorithms forced) step-wise was faster in eager mode in 22 of the
// 24 cases with B * H >= 65536 and slower in all 24 with B * H <= 16384, where its per-step launches
// cost more than a whole persistent step.
constexpr int64_t kStepwiseBatchTimesHidden = 65536;

// The persistent kernels cover every layer without a projection (proj_size needs the projection's
// product between two steps). A varlen schedule is copied to the device, which a CUDA graph capture
// cannot hold, so varlen layers under capture run step-wise. Auto takes the persistent kernels when
// the plan fits on chip (every block resident, its weight slice in shared memory) and the batch is
// small enough (kStepwiseBatchTimesHidden).
bool use_persistent(const PersistentPlan& plan, bool projected, bool varlen, int64_t batch, int64_t hidden);

enum class AlgorithmCount : int { ForwardStep = 0, ForwardPersistent = 1, BackwardStep = 2, BackwardPersistent = 3 };

// Layer directions run by each algorithm since the library was loaded.
void count_algorithm(AlgorithmCount which);
int64_t algorithm_count(AlgorithmCount which);

}  // namespace fusedrnn::cuda
