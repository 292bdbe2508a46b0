// Parameter initialisation. Values are drawn on the host from a Generator (the default one unless
// given) in row-major order and copied into the tensor, so a seed gives the same weights for any
// dtype and on any device. The tensors are written in place without recording autograd.
#pragma once
#include <utility>

#include "core/tensor/random.h"
#include "core/tensor/tensor.h"

namespace dtrain::nn::init {

// (fan_in, fan_out) of a weight [out, in, *kernel]: in * prod(kernel) and out * prod(kernel).
std::pair<int64_t, int64_t> fan_in_and_fan_out(const Tensor& weight);

void uniform_(const Tensor& t, double low, double high, Generator* gen = nullptr);
void normal_(const Tensor& t, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
// Normal(mean, std) conditioned on [mean + low * std, mean + high * std] (by rejection); the
// default keeps values within two standard deviations, the ViT initialisation (std 0.02).
void trunc_normal_(const Tensor& t, double std = 0.02, double mean = 0.0, double low = -2.0,
                   double high = 2.0, Generator* gen = nullptr);
// He et al. uniform for a leaky ReLU of negative slope a: U(-b, b) with
// b = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + a^2)).
// With a = sqrt(5) this is b = 1/sqrt(fan_in), torch.nn.Linear's default.
void kaiming_uniform_(const Tensor& t, double a = 0.0, Generator* gen = nullptr);
// Glorot uniform: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)).
void xavier_uniform_(const Tensor& t, double gain = 1.0, Generator* gen = nullptr);

}  // namespace dtrain::nn::init
