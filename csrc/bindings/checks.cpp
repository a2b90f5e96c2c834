#include "bindings/checks.h"

#include <c10/util/Exception.h>

#include <sstream>

namespace fusedrnn {
namespace {

std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "torch.float32";
    case at::kDouble: return "torch.float64";
    case at::kHalf: return "torch.float16";
    case at::kBFloat16: return "torch.bfloat16";
    case at::kLong: return "torch.int64";
    case at::kInt: return "torch.int32";
    default: return std::string("torch.") + c10::toString(t);
  }
}

std::string shape_str(std::initializer_list<int64_t> dims) {
  std::ostringstream os;
  os << "[";
  bool first = true;
  for (int64_t d : dims) {
    os << (first ? "" : ", ") << d;
    first = false;
  }
  return os.str() + "]";
}

void check_like_x(const char* op, const char* name, const at::Tensor& t, const at::Tensor& x) {
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), "fusedrnn.", op, ": ", name, " must have dtype ",
              dtype_name(x.scalar_type()), " like x, got ", dtype_name(t.scalar_type()));
  TORCH_CHECK(t.device() == x.device(), "fusedrnn.", op, ": ", name, " must be on ", x.device(),
              " like x, got ", t.device());
}

void check_shape(const char* op, const char* name, const at::Tensor& t, std::initializer_list<int64_t> expected) {
  TORCH_CHECK(t.sizes().equals(expected), "fusedrnn.", op, ": ", name, " must have shape ", shape_str(expected),
              ", got ", t.sizes());
}

}  // namespace

LayerShape check_layer_inputs(const char* op, int gates, const at::Tensor& x, const at::Tensor& h0,
                              const at::Tensor* c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
                              const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& w_hr,
                              const OptTensor& batch_sizes) {
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "fusedrnn.", op,
              ": x must have a floating dtype (float32, float64, bfloat16 or float16), got ",
              dtype_name(x.scalar_type()));
  const bool packed = batch_sizes.has_value() && batch_sizes->defined();
  LayerShape s{};
  s.packed = packed;

  if (packed) {
    const at::Tensor& bs = *batch_sizes;
    TORCH_CHECK(bs.dim() == 1 && bs.scalar_type() == at::kLong && bs.device().is_cpu(), "fusedrnn.", op,
                ": batch_sizes must be a 1-D torch.int64 CPU tensor (as in PackedSequence), got ",
                dtype_name(bs.scalar_type()), " of shape ", bs.sizes(), " on ", bs.device());
    TORCH_CHECK(x.dim() == 2, "fusedrnn.", op, ": with batch_sizes, x must be packed [N, input_size], got shape ",
                x.sizes());
    s.T = bs.size(0);
    s.N = x.size(0);
    s.I = x.size(1);
    const at::Tensor bs_c = bs.contiguous();
    const int64_t* b = bs_c.data_ptr<int64_t>();
    int64_t total = 0;
    for (int64_t t = 0; t < s.T; ++t) {
      TORCH_CHECK(b[t] > 0, "fusedrnn.", op, ": batch_sizes must be positive, got ", b[t], " at step ", t);
      TORCH_CHECK(t == 0 || b[t] <= b[t - 1], "fusedrnn.", op,
                  ": batch_sizes must be non-increasing (sorted by length, as pack_sequence makes it), got ",
                  b[t - (t > 0)], " then ", b[t], " at step ", t);
      total += b[t];
    }
    TORCH_CHECK(total == s.N, "fusedrnn.", op, ": batch_sizes sum to ", total, " but x has ", s.N, " rows");
    s.B = s.T > 0 ? b[0] : h0.size(0);
  } else {
    TORCH_CHECK(x.dim() == 3, "fusedrnn.", op, ": x must be [seq_len, batch, input_size], got shape ", x.sizes());
    s.T = x.size(0);
    s.B = x.size(1);
    s.I = x.size(2);
    s.N = s.T * s.B;
  }

  check_like_x(op, "w_ih", w_ih, x);
  check_like_x(op, "w_hh", w_hh, x);
  check_like_x(op, "h0", h0, x);
  TORCH_CHECK(w_ih.dim() == 2 && w_ih.size(0) % gates == 0 && w_ih.size(1) == s.I, "fusedrnn.", op,
              ": w_ih must have shape [", gates, " * hidden_size, ", s.I, "] (input_size from x), got ",
              w_ih.sizes());
  s.H = w_ih.size(0) / gates;
  s.P = s.H;
  if (w_hr.has_value() && w_hr->defined()) {
    check_like_x(op, "w_hr", *w_hr, x);
    TORCH_CHECK(w_hr->dim() == 2 && w_hr->size(1) == s.H, "fusedrnn.", op,
                ": w_hr must have shape [proj_size, ", s.H, "] (hidden_size from w_ih), got ", w_hr->sizes());
    s.P = w_hr->size(0);
  }
  check_shape(op, "w_hh", w_hh, {gates * s.H, s.P});
  for (const auto& [name, b] : {std::pair{"b_ih", &b_ih}, std::pair{"b_hh", &b_hh}}) {
    if (b->has_value() && (*b)->defined()) {
      check_like_x(op, name, **b, x);
      check_shape(op, name, **b, {gates * s.H});
    }
  }
  check_shape(op, "h0", h0, {s.B, s.P});
  if (c0 != nullptr) {
    check_like_x(op, "c0", *c0, x);
    check_shape(op, "c0", *c0, {s.B, s.H});
  }
  return s;
}

void check_backward_inputs(const char* op, const LayerShape& shape, const at::Tensor& x, const at::Tensor& grad_y,
                           const at::Tensor& grad_hn, const at::Tensor* grad_cn, const at::Tensor& y,
                           const at::Tensor& workspace, int64_t workspace_cols) {
  check_like_x(op, "y", y, x);
  check_like_x(op, "grad_y", grad_y, x);
  check_like_x(op, "grad_hn", grad_hn, x);
  if (grad_cn != nullptr) check_like_x(op, "grad_cn", *grad_cn, x);
  TORCH_CHECK(workspace.device() == x.device(), "fusedrnn.", op, ": workspace must be on ", x.device(),
              " like x, got ", workspace.device());
  TORCH_CHECK(grad_y.sizes().equals(y.sizes()), "fusedrnn.", op, ": grad_y must have y's shape ", y.sizes(),
              ", got ", grad_y.sizes());
  check_shape(op, "grad_hn", grad_hn, {shape.B, shape.P});
  if (grad_cn != nullptr) check_shape(op, "grad_cn", *grad_cn, {shape.B, shape.H});
  TORCH_CHECK(workspace.dim() == 2, "fusedrnn.", op,
              ": needs the workspace of a forward run with training=True; this one ran with training=False");
  check_shape(op, "workspace", workspace, {shape.N, workspace_cols});
  TORCH_CHECK(workspace.scalar_type() == accumulate_dtype(y.scalar_type()), "fusedrnn.", op,
              ": workspace must have dtype ", dtype_name(accumulate_dtype(y.scalar_type())), ", got ",
              dtype_name(workspace.scalar_type()));
}

void check_stepwise_options(const char* op, int gates, int states, const LayerShape& shape, const at::Tensor& x,
                            const OptTensor& ln_ih, const OptTensor& ln_hh, const OptTensor& ln_c_w,
                            const OptTensor& ln_c_b, const OptTensor& zoneout, const OptTensor& recurrent_mask) {
  const bool norm = ln_ih.has_value();
  for (const auto& [name, w] : {std::pair{"ln_hh_weight", &ln_hh}, std::pair{"ln_c_weight", &ln_c_w},
                                std::pair{"ln_c_bias", &ln_c_b}}) {
    const bool expected = norm && (states == 2 || w == &ln_hh);
    TORCH_CHECK(w->has_value() == expected, "fusedrnn.", op, ": ", name, expected ? " is required" : " must be None",
                norm ? " with ln_ih_weight" : " without ln_ih_weight");
  }
  for (const auto& [name, w] : {std::pair{"ln_ih_weight", &ln_ih}, std::pair{"ln_hh_weight", &ln_hh}}) {
    if (!w->has_value()) continue;
    check_like_x(op, name, **w, x);
    check_shape(op, name, **w, {gates * shape.H});
  }
  for (const auto& [name, w] : {std::pair{"ln_c_weight", &ln_c_w}, std::pair{"ln_c_bias", &ln_c_b}}) {
    if (!w->has_value()) continue;
    check_like_x(op, name, **w, x);
    check_shape(op, name, **w, {shape.H});
  }
  if (zoneout.has_value()) {
    check_like_x(op, "zoneout", *zoneout, x);
    if (shape.packed) {
      check_shape(op, "zoneout", *zoneout, {shape.N, states * shape.H});
    } else {
      check_shape(op, "zoneout", *zoneout, {shape.T, shape.B, states * shape.H});
    }
  }
  if (recurrent_mask.has_value()) {
    check_like_x(op, "recurrent_mask", *recurrent_mask, x);
    check_shape(op, "recurrent_mask", *recurrent_mask, {shape.B, shape.H});
  }
}

Activation parse_nonlinearity(const char* op, const std::string& nonlinearity) {
  if (nonlinearity == "tanh") return Activation::Tanh;
  if (nonlinearity == "relu") return Activation::Relu;
  TORCH_CHECK_VALUE(false, "fusedrnn.", op, ": nonlinearity must be 'tanh' or 'relu', got '", nonlinearity, "'");
}

}  // namespace fusedrnn
