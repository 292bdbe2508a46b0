// Adamax, Adam with the infinity norm (PyTorch 1.13's torch.optim.Adamax). With t the step count:
//
//   g = grad + weight_decay * p
//   m = beta1 * m + (1 - beta1) * g
//   u = max(beta2 * u, |g| + eps)
//   p -= lr / (1 - beta1^t) * m / u
#pragma once
#include "core/optim/optimizer.h"

namespace dtrain::optim {

struct AdamaxOptions {
  static constexpr const char* kName = "adamax";
  double lr = 2e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  void check() const;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(AdamaxOptions, lr, beta1, beta2, eps, weight_decay)

class Adamax : public OptimizerWithOptions<AdamaxOptions> {
 public:
  explicit Adamax(std::vector<ParamGroup<AdamaxOptions>> groups)
      : OptimizerWithOptions(std::move(groups)) {}
  Adamax(std::vector<Tensor> params, const AdamaxOptions& options)
      : Adamax(single_group(std::move(params), options)) {}

 protected:
  void update(size_t group, Tensor& param, const Tensor& grad, ParamState& state) override;
};

}  // namespace dtrain::optim
