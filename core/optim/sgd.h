// Stochastic gradient descent with momentum (PyTorch 1.13's torch.optim.SGD):
//
//   g = grad + weight_decay * p
//   b = g on the first step, else momentum * b + (1 - dampening) * g      (when momentum != 0)
//   d = g + momentum * b  (Nesterov)  or  b  (classical)                  (g itself when momentum
//   == 0) p -= lr * d
#pragma once
#include "core/optim/optimizer.h"

namespace dtrain::optim {

struct SGDOptions {
  static constexpr const char* kName = "sgd";
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;  // needs momentum > 0 and dampening 0
  void check() const;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SGDOptions, lr, momentum, dampening, weight_decay,
                                                nesterov)

class SGD : public OptimizerWithOptions<SGDOptions> {
 public:
  explicit SGD(std::vector<ParamGroup<SGDOptions>> groups)
      : OptimizerWithOptions(std::move(groups)) {}
  SGD(std::vector<Tensor> params, const SGDOptions& options)
      : SGD(single_group(std::move(params), options)) {}

 protected:
  void update(size_t group, Tensor& param, const Tensor& grad, ParamState& state) override;
  void update_group(size_t group, const std::vector<PendingUpdate>& pending) override;
  bool has_fused_path() const override { return true; }
};

}  // namespace dtrain::optim
