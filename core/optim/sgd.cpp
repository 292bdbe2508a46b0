#include "core/optim/sgd.h"

#include "core/ops/elementwise.h"
#include "core/ops/optim_update.h"

namespace dtrain::optim {

void SGDOptions::check() const {
  check_option(lr >= 0, kName, "lr", lr, ">= 0");
  check_option(momentum >= 0, kName, "momentum", momentum, ">= 0");
  check_option(weight_decay >= 0, kName, "weight_decay", weight_decay, ">= 0");
  DTRAIN_CHECK(!nesterov || (momentum > 0 && dampening == 0), kName,
               ": nesterov needs momentum > 0 and dampening 0, got momentum = ", momentum,
               " and dampening = ", dampening);
}

void SGD::update(size_t group, Tensor& param, const Tensor& grad, ParamState& state) {
  const SGDOptions& o = options(group);
  Tensor d = grad_with_weight_decay(grad, param, o.weight_decay);
  const bool owned = !d.same(grad);  // d is our own temporary and may be changed in place
  if (o.momentum != 0) {
    auto it = state.tensors.find("momentum_buffer");
    if (it == state.tensors.end()) {
      // The first buffer is the gradient itself, without dampening. An owned d can become the
      // buffer unless Nesterov adds to d below.
      Tensor buf = owned && !o.nesterov ? d : d.clone();
      it = state.tensors.emplace("momentum_buffer", buf).first;
    } else {
      mul_(it->second, o.momentum);
      add_(it->second, d, 1.0 - o.dampening);
    }
    const Tensor& buf = it->second;
    if (o.nesterov) {
      if (!owned) d = d.clone();
      add_(d, buf, o.momentum);
    } else {
      d = buf;
    }
  }
  add_(param, d, -o.lr);
}

void SGD::update_group(size_t group, const std::vector<PendingUpdate>& pending) {
  if (!fused()) {
    Optimizer::update_group(group, pending);
    return;
  }
  const SGDOptions& o = options(group);
  const FusedLists split = split_for_fused(pending);
  for (const PendingUpdate* u : split.per_tensor) update(group, *u->param, u->grad, *u->state);
  const SgdUpdateArgs args{o.lr, o.momentum, o.dampening, o.weight_decay, o.nesterov};
  for (const auto& list : split.lists) {
    std::vector<SgdUpdateTensors> tensors;
    tensors.reserve(list.size());
    for (const PendingUpdate* u : list) {
      SgdUpdateTensors e{*u->param, u->grad, Tensor(), false};
      if (o.momentum != 0) {
        // The buffer is created here and receives g itself in the kernel on the first step.
        e.first_step = u->state->tensors.count("momentum_buffer") == 0;
        e.momentum_buffer = u->state->tensor_or_fill("momentum_buffer", *u->param);
      }
      tensors.push_back(std::move(e));
    }
    sgd_update_(args, tensors);
  }
}

}  // namespace dtrain::optim
