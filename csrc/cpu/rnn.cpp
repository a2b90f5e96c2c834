// CPU vanilla RNN (tanh or relu): per step one GEMM for h W_hh^T and one fused SIMD pass;
// backward mirrors it in reverse.
#include "cpu/layers.h"
#include "bindings/sequence.h"
#include "cpu/parallel.h"
#include "cpu/passes.h"
#include "fusedrnn/params.h"

namespace fusedrnn::cpu {
namespace {

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
    const auto pass = step_passes<T>().rnn_forward;
    parallel_rows(s.rows, H, [&](int64_t begin, int64_t end) { pass(p, begin, end); });
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
    const auto pass = step_passes<T>().rnn_backward;
    parallel_rows(s.rows, H, [&](int64_t begin, int64_t end) { pass(p, begin, end); });
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
