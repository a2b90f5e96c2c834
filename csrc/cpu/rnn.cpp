// CPU vanilla RNN (tanh or relu): per step one GEMM for h W_hh^T and one fused SIMD pass;
// backward mirrors it in reverse.
#include "cpu/layers.h"
#include "cpu/sequence.h"
#include "cpu/vec_math.h"
#include "fusedrnn/params.h"

namespace fusedrnn::cpu {
namespace {

template <typename T>
void rnn_forward_pass(const RnnForwardStep<T>& p) {
  using M = VecMath<T>;
  const int64_t H = p.hidden;
  parallel_rows(p.rows, H, [&](int64_t r) {
    const T* xproj = p.xproj + r * H;
    const T* hh = p.hh + r * H;
    T* h = p.h + r * H;
    T* y = p.y + r * H;
    T* ws = p.workspace ? p.workspace + r * H : nullptr;
    for_each_vector<T>(H, [&](int64_t j, int64_t n) {
      const auto out = rnn_cell_forward<M>(load(xproj, j, n) + load(hh, j, n) + load(p.b_hh, j, n), p.act);
      store(out, h, j, n);
      store(out, y, j, n);
      if (ws) store(out, ws, j, n);
    });
  });
}

template <typename T>
void rnn_backward_pass(const RnnBackwardStep<T>& p) {
  using M = VecMath<T>;
  const int64_t H = p.hidden;
  parallel_rows(p.rows, H, [&](int64_t r) {
    const T* dh = p.dh + r * H;
    const T* ws = p.workspace + r * H;
    T* dpre = p.dpre + r * H;
    for_each_vector<T>(H, [&](int64_t j, int64_t n) {
      store(rnn_cell_backward<M>(load(dh, j, n), load(ws, j, n), p.act), dpre, j, n);
    });
  });
}

template <typename T>
std::tuple<Tensor, Tensor, Tensor> rnn_forward_typed(
    const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const OptTensor& b_ih,
    const OptTensor& b_hh, const std::vector<int64_t>& batch_sizes, bool reverse, Activation act, bool training) {
  const int64_t N = x.size(0), B = h0.size(0), H = h0.size(1);
  const auto steps = make_schedule(batch_sizes.data(), static_cast<int64_t>(batch_sizes.size()), reverse);

  const Tensor xproj = input_projection(x, w_ih, b_ih);  // [N, H]
  Tensor y = at::empty({N, H}, x.options());
  Tensor h = h0.clone();  // [B, H]
  Tensor workspace = training ? at::empty({N, H}, x.options()) : at::empty({0}, x.options());
  Tensor hh = at::empty({B, H}, x.options());
  const Tensor w_hh_t = w_hh.t();

  for (const Step& s : steps) {
    mm_into(hh.narrow(0, 0, s.rows), h.narrow(0, 0, s.rows), w_hh_t);
    RnnForwardStep<T> p{};
    p.rows = s.rows;
    p.hidden = H;
    p.act = act;
    p.xproj = xproj.data_ptr<T>() + s.offset * H;
    p.hh = hh.data_ptr<T>();
    p.b_hh = data_or_null<T>(b_hh);
    p.h = h.data_ptr<T>();
    p.y = y.data_ptr<T>() + s.offset * H;
    p.workspace = training ? workspace.data_ptr<T>() + s.offset * H : nullptr;
    rnn_forward_pass(p);
  }
  return {y, h, workspace};
}

template <typename T>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> rnn_backward_typed(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& x, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, bool has_bias, const std::vector<int64_t>& batch_sizes, bool reverse, Activation act,
    const Tensor& y, const Tensor& workspace) {
  const int64_t N = x.size(0), H = h0.size(1);
  const auto steps = make_schedule(batch_sizes.data(), static_cast<int64_t>(batch_sizes.size()), reverse);

  Tensor dpre = at::empty({N, H}, x.options());
  Tensor dh = grad_hn.clone();  // [B, H]

  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    const Step& s = *it;
    Tensor dh_rows = dh.narrow(0, 0, s.rows);
    dh_rows.add_(grad_y.narrow(0, s.offset, s.rows));
    RnnBackwardStep<T> p{};
    p.rows = s.rows;
    p.hidden = H;
    p.act = act;
    p.dh = dh_rows.data_ptr<T>();
    p.workspace = workspace.data_ptr<T>() + s.offset * H;
    p.dpre = dpre.data_ptr<T>() + s.offset * H;
    rnn_backward_pass(p);
    mm_into(dh_rows, dpre.narrow(0, s.offset, s.rows), w_hh);
  }

  const Tensor h_prev = gather_prev_state(y, h0, steps);
  LinearGrads g = linear_grads(dpre, dpre, x, h_prev, w_ih, has_bias);
  return {g.dx, dh, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh};
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor> rnn_forward(
    const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const OptTensor& b_ih,
    const OptTensor& b_hh, const std::vector<int64_t>& batch_sizes, bool reverse, Activation act, bool training) {
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fusedrnn_rnn_forward_cpu", [&] {
    return rnn_forward_typed<scalar_t>(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, act, training);
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> rnn_backward(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& x, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, bool has_bias, const std::vector<int64_t>& batch_sizes, bool reverse, Activation act,
    const Tensor& y, const Tensor& workspace) {
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fusedrnn_rnn_backward_cpu", [&] {
    return rnn_backward_typed<scalar_t>(grad_y, grad_hn, x, h0, w_ih, w_hh, has_bias, batch_sizes, reverse, act, y,
                                        workspace);
  });
}

}  // namespace fusedrnn::cpu
