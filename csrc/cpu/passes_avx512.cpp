// The CPU kernels compiled for AVX-512 (F, DQ, BW, VL) + FMA: ATen's 512-bit Vectorized (Sleef
// exp/tanh). Only called on CPUs that report them (passes_dispatch.cpp). As in passes_avx2.cpp, the
// target is set here, before any header, and the feature macros tell sleef.h and ATen's vec headers
// to declare their AVX-512 code, as -mavx512f ... would.
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx,avx2,fma,f16c,avx512f,avx512dq,avx512bw,avx512vl")
#ifndef __AVX__
#define __AVX__ 1
#endif
#ifndef __AVX2__
#define __AVX2__ 1
#endif
#ifndef __FMA__
#define __FMA__ 1
#endif
#ifndef __AVX512F__
#define __AVX512F__ 1
#endif
#ifndef __AVX512DQ__
#define __AVX512DQ__ 1
#endif
#ifndef __AVX512BW__
#define __AVX512BW__ 1
#endif
#ifndef __AVX512VL__
#define __AVX512VL__ 1
#endif
#pragma GCC diagnostic ignored "-Wpsabi"  // ABI notes about 512-bit vector returns inside this file
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#endif

#define FUSEDRNN_ISA isa_avx512
#include "cpu/passes_impl.h"

namespace fusedrnn::cpu {

template <typename T>
StepPasses<T> make_step_passes_avx512() {
  return isa_avx512::make_step_passes<T>();
}

template StepPasses<float> make_step_passes_avx512<float>();
template StepPasses<double> make_step_passes_avx512<double>();

}  // namespace fusedrnn::cpu
