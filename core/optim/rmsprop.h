// RMSprop (PyTorch 1.13's torch.optim.RMSprop):
//
//   g = grad + weight_decay * p
//   v = alpha * v + (1 - alpha) * g^2
//   centered: a = alpha * a + (1 - alpha) * g;  d = sqrt(v - a^2) + eps
//   else:     d = sqrt(v) + eps
//   momentum > 0: b = momentum * b + g / d;  p -= lr * b
//   else:         p -= lr * g / d
#pragma once
#include "core/optim/optimizer.h"

namespace dtrain::optim {

struct RMSpropOptions {
  static constexpr const char* kName = "rmsprop";
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.0;
  bool centered = false;
  void check() const;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(RMSpropOptions, lr, alpha, eps, weight_decay,
                                                momentum, centered)

class RMSprop : public OptimizerWithOptions<RMSpropOptions> {
 public:
  explicit RMSprop(std::vector<ParamGroup<RMSpropOptions>> groups)
      : OptimizerWithOptions(std::move(groups)) {}
  RMSprop(std::vector<Tensor> params, const RMSpropOptions& options)
      : RMSprop(single_group(std::move(params), options)) {}

 protected:
  void update(size_t group, Tensor& param, const Tensor& grad, ParamState& state) override;
};

}  // namespace dtrain::optim
