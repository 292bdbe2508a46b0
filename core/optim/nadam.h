// NAdam, Adam with Nesterov momentum (Dozat 2016; PyTorch 1.13's torch.optim.NAdam). With t the
// parameter's step count and the momentum schedule
//   mu_t = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay)):
//
//   g = grad + weight_decay * p
//   P_t = mu_1 * ... * mu_t   (the parameter's scalar state mu_product, kept in f32 as PyTorch)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g^2
//   d = sqrt(v / (1 - beta2^t)) + eps
//   p -= lr * (1 - mu_t) / (1 - P_t) * g / d
//   p -= lr * mu_{t+1} / (1 - P_t * mu_t * mu_{t+1}) * m / d
//
// The second denominator is PyTorch 1.13's, which counts mu_t twice (later releases use
// 1 - P_t * mu_{t+1}); it is kept so that trajectories match that release.
#pragma once
#include "core/optim/optimizer.h"

namespace dtrain::optim {

struct NAdamOptions {
  static constexpr const char* kName = "nadam";
  double lr = 2e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum_decay = 4e-3;
  void check() const;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(NAdamOptions, lr, beta1, beta2, eps, weight_decay,
                                                momentum_decay)

class NAdam : public OptimizerWithOptions<NAdamOptions> {
 public:
  explicit NAdam(std::vector<ParamGroup<NAdamOptions>> groups)
      : OptimizerWithOptions(std::move(groups)) {}
  NAdam(std::vector<Tensor> params, const NAdamOptions& options)
      : NAdam(single_group(std::move(params), options)) {}

 protected:
  void update(size_t group, Tensor& param, const Tensor& grad, ParamState& state) override;
};

}  // namespace dtrain::optim
