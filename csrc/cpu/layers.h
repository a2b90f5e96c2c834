// The CPU layers: one layer, one direction, the whole sequence.
//
// Inputs are contiguous, float or double (the bindings convert other dtypes), in packed layout:
// x: [N, I] with step t owning rows [offset_t, offset_t + batch_sizes[t]), h0: [B, P], c0: [B, H],
// w_ih: [G*H, I], w_hh: [G*H, P], b_ih/b_hh: [G*H], w_hr: [P, H]. Outputs y: [N, P],
// h_n: [B, P], c_n: [B, H], workspace as in fusedrnn/params.h (empty when not training).
// w_hh_source: the caller's W_hh before any dtype conversion, the key of the packed-weight cache
// (cpu/packed_weights.h). Backward returns gradients in input order; absent biases/projection give
// empty tensors.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>
#include <vector>

#include "fusedrnn/cell_math.h"

namespace fusedrnn::cpu {

using at::Tensor;
using OptTensor = std::optional<at::Tensor>;

std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_forward(
    const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
    const Tensor& w_ih_source, const Tensor& w_hh_source, const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& w_hr,
    const std::vector<int64_t>& batch_sizes, bool reverse, bool training);

// -> dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& grad_cn, const Tensor& x, const Tensor& h0,
    const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& w_hh_source, const OptTensor& w_hr, bool has_bias,
    const std::vector<int64_t>& batch_sizes, bool reverse, const Tensor& y, const Tensor& workspace);

std::tuple<Tensor, Tensor, Tensor> gru_forward(
    const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& w_ih_source,
    const Tensor& w_hh_source, const OptTensor& b_ih, const OptTensor& b_hh, const std::vector<int64_t>& batch_sizes, bool reverse, bool training);

// -> dx, dh0, dw_ih, dw_hh, db_ih, db_hh
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> gru_backward(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& x, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, const Tensor& w_hh_source, bool has_bias, const std::vector<int64_t>& batch_sizes, bool reverse, const Tensor& y,
    const Tensor& workspace);

std::tuple<Tensor, Tensor, Tensor> rnn_forward(
    const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& w_ih_source,
    const Tensor& w_hh_source, const OptTensor& b_ih, const OptTensor& b_hh, const std::vector<int64_t>& batch_sizes, bool reverse, Activation act, bool training);

// -> dx, dh0, dw_ih, dw_hh, db_ih, db_hh
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> rnn_backward(
    const Tensor& grad_y, const Tensor& grad_hn, const Tensor& x, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, const Tensor& w_hh_source, bool has_bias, const std::vector<int64_t>& batch_sizes, bool reverse, Activation act,
    const Tensor& y, const Tensor& workspace);

}  // namespace fusedrnn::cpu
