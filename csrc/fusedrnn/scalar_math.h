// Scalar activation policies shared by host and device code, and the RNN's nonlinearity. No torch
// includes: the CUDA kernels and the per-ISA CPU translation units include this.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define FUSEDRNN_HD __host__ __device__ __forceinline__
#else
#define FUSEDRNN_HD inline
#endif

namespace fusedrnn {

enum class Activation : int { Tanh = 0, Relu = 1 };

// A math policy has static sigmoid(V), tanh(V), relu(V) and relu_grad(V) (1 where the output > 0).
// The CPU kernels bring their own over SIMD vectors (cpu/passes_impl.h); this is the scalar one.
template <typename T>
struct ScalarMath;

template <>
struct ScalarMath<float> {
  static FUSEDRNN_HD float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
  static FUSEDRNN_HD float tanh(float x) { return tanhf(x); }
  // NaN propagates (NaN < 0 is false), as torch.relu does.
  static FUSEDRNN_HD float relu(float x) { return x < 0.0f ? 0.0f : x; }
  static FUSEDRNN_HD float relu_grad(float y) { return y > 0.0f ? 1.0f : 0.0f; }
};

template <>
struct ScalarMath<double> {
  static FUSEDRNN_HD double sigmoid(double x) { return 1.0 / (1.0 + ::exp(-x)); }
  static FUSEDRNN_HD double tanh(double x) { return ::tanh(x); }
  static FUSEDRNN_HD double relu(double x) { return x < 0.0 ? 0.0 : x; }
  static FUSEDRNN_HD double relu_grad(double y) { return y > 0.0 ? 1.0 : 0.0; }
};

}  // namespace fusedrnn
