// Adam and AdamW (PyTorch 1.13's torch.optim.Adam / AdamW). With t the parameter's step count:
//
//   Adam:  g = grad + weight_decay * p            (L2 penalty folded into the gradient)
//   AdamW: p *= 1 - lr * weight_decay; g = grad   (decoupled decay, Loshchilov & Hutter)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g^2
//   v_hat = max(v_hat, v) with amsgrad, else v
//   p -= lr / (1 - beta1^t) * m / (sqrt(v_hat) / sqrt(1 - beta2^t) + eps)
#pragma once
#include "core/optim/optimizer.h"

namespace dtrain::optim {

struct AdamOptions {
  static constexpr const char* kName = "adam";
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool amsgrad = false;
  void check() const;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(AdamOptions, lr, beta1, beta2, eps, weight_decay,
                                                amsgrad)

struct AdamWOptions {
  static constexpr const char* kName = "adamw";
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool amsgrad = false;
  void check() const;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(AdamWOptions, lr, beta1, beta2, eps, weight_decay,
                                                amsgrad)

class Adam : public OptimizerWithOptions<AdamOptions> {
 public:
  explicit Adam(std::vector<ParamGroup<AdamOptions>> groups)
      : OptimizerWithOptions(std::move(groups)) {}
  Adam(std::vector<Tensor> params, const AdamOptions& options)
      : Adam(single_group(std::move(params), options)) {}

 protected:
  void update(size_t group, Tensor& param, const Tensor& grad, ParamState& state) override;
  void update_group(size_t group, const std::vector<PendingUpdate>& pending) override;
  bool has_fused_path() const override { return true; }
};

class AdamW : public OptimizerWithOptions<AdamWOptions> {
 public:
  explicit AdamW(std::vector<ParamGroup<AdamWOptions>> groups)
      : OptimizerWithOptions(std::move(groups)) {}
  AdamW(std::vector<Tensor> params, const AdamWOptions& options)
      : AdamW(single_group(std::move(params), options)) {}

 protected:
  void update(size_t group, Tensor& param, const Tensor& grad, ParamState& state) override;
  void update_group(size_t group, const std::vector<PendingUpdate>& pending) override;
  bool has_fused_path() const override { return true; }
};

}  // namespace dtrain::optim
