// Inline float32 exp and reciprocal for the gate math (VecMath<float> in passes_impl.h), per ISA.
//
// Why not ATen's Vectorized<float>::exp and operator/: exp is a call into Sleef, and around a call
// every vector register is caller-saved, so the LSTM epilogue spilled its accumulators five times per
// vector; and vdivps is the slowest instruction of the epilogue (perf annotate, LSTM B=64 H=256).
//
// Both functions are meant for sigmoid and tanh only: exp_saturating clamps its argument to
// [-104, 88], where those functions are already saturated, so that the results stay finite and the
// reciprocal never sees inf. NaN propagates (vminps/vmaxps return their second operand when one is
// NaN, which is x here).
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <immintrin.h>

namespace fusedrnn::cpu::FUSEDRNN_ISA {

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#define FUSEDRNN_INLINE_FLOAT_MATH 1

// Cody-Waite split of ln 2 and a degree-5 polynomial for (e^r - 1 - r) / r^2 on |r| <= ln2 / 2
// (Cephes' expf coefficients).
namespace float_exp {
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kP[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                         4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
constexpr float kMin = -104.0f;  // e^-104 is below the smallest subnormal
constexpr float kMax = 88.0f;    // e^88 ~ 1.65e38, so 1 + e^x and its reciprocal stay finite
}  // namespace float_exp
#else
#define FUSEDRNN_INLINE_FLOAT_MATH 0  // the portable build keeps ATen's exp and the division
#endif

#if defined(CPU_CAPABILITY_AVX512)

// e^x for x in [-104, 88]; x beyond is clamped there. scalef applies 2^n with correct underflow.
inline __m512 exp_saturating(__m512 x) {
  using namespace float_exp;
  x = _mm512_max_ps(_mm512_set1_ps(kMin), _mm512_min_ps(_mm512_set1_ps(kMax), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kP[0]);
  for (int i = 1; i < 6; ++i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP[i]));
  const __m512 e = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(e, n);
}

// 1 / d for finite d: a 14-bit estimate and one Newton step (relative error ~2^-28 before rounding).
inline __m512 reciprocal(__m512 d) {
  const __m512 r = _mm512_rcp14_ps(d);
  return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0f)), r);
}

#elif defined(CPU_CAPABILITY_AVX2)

// e^x for x in [-87, 88]; x beyond is clamped there (2^n must stay a normal float: e^-87 ~ 1.6e-38).
inline __m256 exp_saturating(__m256 x) {
  using namespace float_exp;
  x = _mm256_max_ps(_mm256_set1_ps(-87.0f), _mm256_min_ps(_mm256_set1_ps(kMax), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kP[0]);
  for (int i = 1; i < 6; ++i) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP[i]));
  const __m256 e = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(e, _mm256_castsi256_ps(bits));
}

// AVX2's estimate has 12 bits: one Newton step would leave ~2^-23, so the division stays.
inline __m256 reciprocal(__m256 d) { return _mm256_div_ps(_mm256_set1_ps(1.0f), d); }

#endif

}  // namespace fusedrnn::cpu::FUSEDRNN_ISA
