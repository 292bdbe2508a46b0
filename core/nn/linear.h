// Linear: y = x W^T + b, with W [out, in] and b [out].
#pragma once
#include "core/nn/module.h"

namespace dtrain::nn {

class Linear : public Module {
 public:
  // torch.nn.Linear's initialisation: W ~ U(-k, k) (kaiming_uniform_ with a = sqrt(5)) and
  // b ~ U(-k, k), k = 1/sqrt(in_features), from the default generator.
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }
  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

  Tensor weight;  // [out_features, in_features]
  Tensor bias;    // [out_features], undefined without bias

 private:
  int64_t in_features_;
  int64_t out_features_;
};

}  // namespace dtrain::nn
