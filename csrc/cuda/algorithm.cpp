#include "cuda/algorithm.h"

#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>

namespace fusedrnn::cuda {
namespace {

std::atomic<int64_t> counts[4];

}  // namespace

Algorithm requested_algorithm() {
  const char* value = std::getenv("FUSEDRNN_ALGO");
  if (value == nullptr || *value == '\0' || std::strcmp(value, "auto") == 0) return Algorithm::Auto;
  if (std::strcmp(value, "step") == 0) return Algorithm::Step;
  if (std::strcmp(value, "persistent") == 0) return Algorithm::Persistent;
  TORCH_CHECK(false, "fusedrnn: FUSEDRNN_ALGO must be 'auto', 'step' or 'persistent', got '", value, "'");
}

bool use_persistent(const PersistentPlan& plan, bool projected, bool varlen, int64_t batch, int64_t hidden) {
  const Algorithm algorithm = requested_algorithm();
  if (algorithm == Algorithm::Step || projected || !plan.ok) return false;
  if (varlen && c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None) return false;
  return algorithm == Algorithm::Persistent || batch * hidden < kStepwiseBatchTimesHidden;
}

void count_algorithm(AlgorithmCount which) { ++counts[static_cast<int>(which)]; }

int64_t algorithm_count(AlgorithmCount which) { return counts[static_cast<int>(which)].load(); }

}  // namespace fusedrnn::cuda
