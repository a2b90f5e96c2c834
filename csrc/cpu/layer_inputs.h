// A layer's tensors brought to the layout and dtype the CPU kernels run in (cpu/layer.cpp,
// cpu/stepwise_layer.cpp), and the results brought back to the caller's.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "sequence/layer.h"
#include "sequence/sequence.h"

namespace fusedrnn::cpu {

// t in dtype; t itself when it is already (a step-by-step call is short enough that the dispatcher
// round trip of a no-op Tensor::to shows).
inline at::Tensor to_dtype(const at::Tensor& t, at::ScalarType dtype) {
  return !t.defined() || t.scalar_type() == dtype ? t : t.to(dtype);
}

// Brings every tensor to the compute dtype, contiguous.
struct ToCompute {
  at::ScalarType dtype;
  at::Tensor operator()(const at::Tensor& t) const { return to_dtype(t, dtype).contiguous(); }
  OptTensor operator()(const OptTensor& t) const {
    if (!t.has_value() || !t->defined()) return std::nullopt;
    return (*this)(*t);
  }
};

inline at::Tensor as_packed(const at::Tensor& t, const LayerShape& s) { return t.reshape({s.N, t.size(-1)}); }

inline at::Tensor as_layout(const at::Tensor& t2d, const LayerShape& s, at::ScalarType dtype) {
  const at::Tensor out = to_dtype(t2d, dtype);
  return s.packed ? out : out.view({s.T, s.B, t2d.size(1)});
}

// A layer's tensors as the kernels read them: compute dtype, contiguous, x packed [N, I].
struct Layer {
  at::Tensor x, h0, c0, w_ih, w_hh;  // c0 undefined without a cell state
  OptTensor b_ih, b_hh, w_hr;
  at::Tensor w_ih_source, w_hh_source;  // the caller's weights: the packed-weight cache's keys
  std::vector<Step> steps;
  Activation act;
  bool projected() const { return w_hr.has_value(); }
};

inline Layer compute_layer(const LayerInputs& in) {
  const ToCompute to{accumulate_dtype(in.x.scalar_type())};
  return {as_packed(to(in.x), in.shape),
          to(in.h0),
          in.c0.has_value() ? to(*in.c0) : at::Tensor(),
          to(in.w_ih),
          to(in.w_hh),
          to(in.b_ih),
          to(in.b_hh),
          to(in.w_hr),
          in.w_ih,
          in.w_hh,
          layer_schedule(in),
          in.act};
}

}  // namespace fusedrnn::cpu
