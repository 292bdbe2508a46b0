#include "core/nn/init.h"

#include <cmath>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/error.h"

namespace dtrain::nn::init {

namespace {

Generator& pick(Generator* gen) { return gen ? *gen : default_generator(); }

// Draws numel values with `draw` and copies them into t (converting dtype, moving to t's device).
template <class Draw>
void fill_host(const Tensor& t, const char* op, Draw&& draw) {
  DTRAIN_CHECK(t.defined(), "init::", op, ": the tensor is undefined");
  DTRAIN_CHECK(is_floating(t.dtype()), "init::", op, ": needs a floating tensor, got ",
               dtype_name(t.dtype()), " of shape ", shape_str(t.shape()));
  std::vector<double> values(static_cast<size_t>(t.numel()));
  for (auto& v : values) v = draw();
  NoGradGuard no_grad;
  Tensor dst = t;
  dst.copy_(Tensor::from_vector(values, t.shape(), t.dtype(), t.device()));
}

}  // namespace

std::pair<int64_t, int64_t> fan_in_and_fan_out(const Tensor& weight) {
  DTRAIN_CHECK(weight.dim() >= 2,
               "init: fan in/out needs a weight of 2 or more dims [out, in, ...], got ",
               shape_str(weight.shape()));
  int64_t receptive = 1;
  for (int64_t d = 2; d < weight.dim(); ++d) receptive *= weight.size(d);
  return {weight.size(1) * receptive, weight.size(0) * receptive};
}

void uniform_(const Tensor& t, double low, double high, Generator* gen) {
  DTRAIN_CHECK(low <= high, "init::uniform_: low ", low, " is above high ", high);
  Generator& g = pick(gen);
  fill_host(t, "uniform_", [&] { return low + (high - low) * g.next_double(); });
}

void normal_(const Tensor& t, double mean, double std, Generator* gen) {
  DTRAIN_CHECK(std >= 0.0, "init::normal_: std ", std, " is negative");
  Generator& g = pick(gen);
  fill_host(t, "normal_", [&] { return mean + std * g.next_normal(); });
}

void trunc_normal_(const Tensor& t, double std, double mean, double low, double high,
                   Generator* gen) {
  // A window far out in a tail would make the rejection loop below run (almost) forever.
  DTRAIN_CHECK(std > 0.0 && low < high && high > -4.0 && low < 4.0,
               "init::trunc_normal_: needs std > 0 and a window [low, high] (in std units) that "
               "overlaps [-4, 4], got std ",
               std, ", [", low, ", ", high, "]");
  Generator& g = pick(gen);
  // Rejection: a standard normal is redrawn until it falls in [low, high]; for the default [-2, 2]
  // that accepts 95.4% of draws. The kept value is exactly the conditioned distribution.
  fill_host(t, "trunc_normal_", [&] {
    double z = g.next_normal();
    while (z < low || z > high) z = g.next_normal();
    return mean + std * z;
  });
}

void kaiming_uniform_(const Tensor& t, double a, Generator* gen) {
  double fan_in = static_cast<double>(fan_in_and_fan_out(t).first);
  double gain = std::sqrt(2.0 / (1.0 + a * a));
  double bound = fan_in > 0 ? gain * std::sqrt(3.0 / fan_in) : 0.0;
  uniform_(t, -bound, bound, gen);
}

void xavier_uniform_(const Tensor& t, double gain, Generator* gen) {
  auto [fan_in, fan_out] = fan_in_and_fan_out(t);
  double total = static_cast<double>(fan_in + fan_out);
  double bound = total > 0 ? gain * std::sqrt(6.0 / total) : 0.0;
  uniform_(t, -bound, bound, gen);
}

}  // namespace dtrain::nn::init
