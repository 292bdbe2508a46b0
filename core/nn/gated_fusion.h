// Gated fusion of two modalities of the same width D:
//   g   = sigmoid(W [x_a; x_b] + b)       W [D, 2D], b [D]; [x_a; x_b] concatenates features
//   out = g * x_a + (1 - g) * x_b         (computed as x_b + g * (x_a - x_b))
// so each feature picks, per token, a convex mix of the two inputs. The gate is a torch.nn.Linear
// registered as `gate` (gate.weight, gate.bias), with its initialisation.
#pragma once
#include <memory>

#include "core/nn/linear.h"

namespace dtrain::nn {

class GatedFusion : public Module {
 public:
  explicit GatedFusion(int64_t dim, bool bias = true);
  // x_a and x_b of one shape [..., D] -> [..., D].
  Tensor forward(const Tensor& x_a, const Tensor& x_b) const;
  Tensor operator()(const Tensor& x_a, const Tensor& x_b) const { return forward(x_a, x_b); }
  int64_t dim() const { return dim_; }

  std::shared_ptr<Linear> gate;  // 2D -> D

 private:
  int64_t dim_;
};

}  // namespace dtrain::nn
