// Gradient clipping, as torch.nn.utils.clip_grad_norm_ / clip_grad_value_ (PyTorch 1.13).
// Parameters without a gradient are ignored.
#pragma once
#include <vector>

#include "core/tensor/tensor.h"

namespace dtrain::optim {

// The L2 norm of all gradients taken together as one vector (0 when there are none).
double grad_norm(const std::vector<Tensor>& params);
// The same as a 0-dim tensor on the first gradient's device (f32, or f64 for f64 gradients), read
// back by nobody: a training step that logs nothing waits for nothing. Undefined without gradients.
Tensor grad_norm_tensor(const std::vector<Tensor>& params);

// Scales every gradient by c = max_norm / (norm + 1e-6) when c < 1, i.e. when the total norm
// exceeds max_norm (the 1e-6 keeps c finite for zero gradients), and returns the norm before
// clipping. A non-finite norm makes c 0 or NaN and the gradients follow, as in PyTorch; the loss
// scaler (core/amp) skips such steps.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);
// The same without reading the norm back: the gradients are multiplied by min(1, c), computed on the
// device (a product with exactly 1 changes nothing), and the norm is returned as grad_norm_tensor's.
Tensor clip_grad_norm_tensor(const std::vector<Tensor>& params, double max_norm);

// Clamps every gradient element into [-clip_value, clip_value].
void clip_grad_value(const std::vector<Tensor>& params, double clip_value);

}  // namespace dtrain::optim
