// Adagrad (PyTorch 1.13's torch.optim.Adagrad). With t the parameter's step count:
//
//   g = grad + weight_decay * p
//   s = s + g^2                    (s starts at initial_accumulator_value)
//   p -= lr / (1 + (t - 1) * lr_decay) * g / (sqrt(s) + eps)
#pragma once
#include "core/optim/optimizer.h"

namespace dtrain::optim {

struct AdagradOptions {
  static constexpr const char* kName = "adagrad";
  double lr = 1e-2;
  double lr_decay = 0.0;
  double weight_decay = 0.0;
  double initial_accumulator_value = 0.0;
  double eps = 1e-10;
  void check() const;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(AdagradOptions, lr, lr_decay, weight_decay,
                                                initial_accumulator_value, eps)

class Adagrad : public OptimizerWithOptions<AdagradOptions> {
 public:
  explicit Adagrad(std::vector<ParamGroup<AdagradOptions>> groups)
      : OptimizerWithOptions(std::move(groups)) {}
  Adagrad(std::vector<Tensor> params, const AdagradOptions& options)
      : Adagrad(single_group(std::move(params), options)) {}

 protected:
  void update(size_t group, Tensor& param, const Tensor& grad, ParamState& state) override;
};

}  // namespace dtrain::optim
