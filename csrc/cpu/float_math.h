// Inline float32 exp and reciprocal for the gate math (VecMath<float> in passes_impl.h), per ISA.
//
// Why not ATen's Vectorized<float>::exp and operator/: exp is a call into Sleef, and around a call
// every vector register is caller-saved, so the LSTM epilogue spilled its accumulators five times per
// vector; and vdivps is the slowest instruction of the epilogue (perf annotate, LSTM B=64 H=256).
//
// Both functions are meant for sigmoid and tanh only: exp_saturating clamps its argument to
// [kExpMin, 88], where those functions are already saturated, so that the results stay finite and the
// reciprocal never sees inf. NaN propagates.
#pragma once

#include <ATen/cpu/vec/vec.h>

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

namespace fusedrnn::cpu::FUSEDRNN_ISA {

using VecF = at::vec::Vectorized<float>;

// The per-ISA pieces: the lowest exp argument kept (below it e^x is clamped), e * 2^n for whole n, and
// 1 / d for finite d.
#if defined(CPU_CAPABILITY_AVX512)
#define FUSEDRNN_INLINE_FLOAT_MATH 1

constexpr float kExpMin = -104.0f;  // e^-104 is below the smallest subnormal: scalef underflows to 0
inline VecF times_pow2(const VecF& e, const VecF& n) { return _mm512_scalef_ps(e, n); }

// A 14-bit estimate and one Newton step (relative error ~2^-28 before rounding).
inline VecF reciprocal(const VecF& d) {
  const __m512 r = _mm512_rcp14_ps(d);
  return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0f)), r);
}

#elif defined(CPU_CAPABILITY_AVX2)
#define FUSEDRNN_INLINE_FLOAT_MATH 1

constexpr float kExpMin = -87.0f;  // 2^n is built in the exponent bits, so it must stay a normal float
inline VecF times_pow2(const VecF& e, const VecF& n) {
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(e, _mm256_castsi256_ps(bits));
}

// AVX2's estimate has 12 bits: one Newton step would leave ~2^-23, so the division stays.
inline VecF reciprocal(const VecF& d) { return VecF(1.0f) / d; }

#else
#define FUSEDRNN_INLINE_FLOAT_MATH 0  // the portable build keeps ATen's exp and the division
#endif

#if FUSEDRNN_INLINE_FLOAT_MATH
// e^x for x in [kExpMin, 88]; x beyond is clamped there (e^88 ~ 1.65e38, so 1 + e^x and its reciprocal
// stay finite). Cody-Waite split of ln 2 and a degree-5 polynomial for (e^r - 1 - r) / r^2 on
// |r| <= ln2 / 2 (Cephes' expf coefficients); at most 1.01 ulp.
inline VecF exp_saturating(VecF x) {
  constexpr float kLog2e = 1.44269504088896341f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  constexpr float kP[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                           4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
  x = at::vec::clamp(x, VecF(kExpMin), VecF(88.0f));  // min(hi, max(lo, x)): NaN, the last operand, stays
  const VecF n = (x * VecF(kLog2e)).round();
  VecF r = at::vec::fnmadd(n, VecF(kLn2Hi), x);
  r = at::vec::fnmadd(n, VecF(kLn2Lo), r);
  VecF p(kP[0]);
  for (int i = 1; i < 6; ++i) p = at::vec::fmadd(p, r, VecF(kP[i]));
  return times_pow2(at::vec::fmadd(p, r * r, r) + VecF(1.0f), n);
}
#endif

}  // namespace fusedrnn::cpu::FUSEDRNN_ISA
