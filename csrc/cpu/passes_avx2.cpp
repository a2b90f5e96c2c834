// The CPU kernels compiled for AVX2 + FMA: ATen's 256-bit Vectorized (Sleef exp/tanh). Only called
// on CPUs that report both (passes_dispatch.cpp). The extension builds every file with one set of
// flags, so the target is set here, before any header; the feature macros tell sleef.h (which ATen's
// 256-bit exp/tanh call) to declare its AVX2 entry points, as -mavx2 -mfma would.
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx,avx2,fma,f16c")
#ifndef __AVX__
#define __AVX__ 1
#endif
#ifndef __AVX2__
#define __AVX2__ 1
#endif
#ifndef __FMA__
#define __FMA__ 1
#endif
#pragma GCC diagnostic ignored "-Wpsabi"  // ABI notes about 256-bit vector returns inside this file
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#endif

#define FUSEDRNN_ISA isa_avx2
#include "cpu/passes_impl.h"

namespace fusedrnn::cpu {

template <typename T>
StepPasses<T> make_step_passes_avx2() {
  return isa_avx2::make_step_passes<T>();
}

template StepPasses<float> make_step_passes_avx2<float>();
template StepPasses<double> make_step_passes_avx2<double>();

}  // namespace fusedrnn::cpu
