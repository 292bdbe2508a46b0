#include "core/optim/adam.h"

#include <cmath>

#include "core/ops/elementwise.h"
#include "core/ops/optim_update.h"

namespace dtrain::optim {

namespace {

// The moment updates and the step shared by Adam and AdamW (see adam.h); g already holds any L2
// term.
template <class Options>
void adam_step(const Options& o, Tensor& param, const Tensor& g, ParamState& state) {
  Tensor& exp_avg = state.tensor_or_fill("exp_avg", param);
  Tensor& exp_avg_sq = state.tensor_or_fill("exp_avg_sq", param);
  update_moving_average(exp_avg, g, o.beta1);
  update_moving_average_of_square(exp_avg_sq, g, o.beta2);

  const double t = static_cast<double>(state.step);
  const double bias_correction1 = 1.0 - std::pow(o.beta1, t);
  const double bias_correction2 = 1.0 - std::pow(o.beta2, t);
  const double step_size = o.lr / bias_correction1;

  Tensor denom;
  if (o.amsgrad) {
    Tensor& max_exp_avg_sq = state.tensor_or_fill("max_exp_avg_sq", param);
    max_exp_avg_sq.copy_(maximum(max_exp_avg_sq, exp_avg_sq));
    denom = sqrt(max_exp_avg_sq);
  } else {
    denom = sqrt(exp_avg_sq);
  }
  mul_(denom, 1.0 / std::sqrt(bias_correction2));
  denom = add(denom, o.eps);
  addcdiv_(param, exp_avg, denom, -step_size);
}

// The fused path of both: one adam_update_ call per list of one device and dtype.
template <class Options, class PerTensor>
void adam_group(const Options& o, bool decoupled, bool fused,
                const std::vector<PendingUpdate>& pending, PerTensor per_tensor) {
  if (!fused) {
    for (const PendingUpdate& u : pending) per_tensor(*u.param, u.grad, *u.state);
    return;
  }
  const FusedLists split = split_for_fused(pending);
  for (const PendingUpdate* u : split.per_tensor) per_tensor(*u->param, u->grad, *u->state);
  const AdamUpdateArgs args{o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, decoupled, o.amsgrad};
  for (const auto& list : split.lists) {
    std::vector<AdamUpdateTensors> tensors;
    tensors.reserve(list.size());
    for (const PendingUpdate* u : list) {
      Tensor& p = *u->param;
      ParamState& st = *u->state;
      const double t = static_cast<double>(st.step);
      AdamUpdateTensors e{p, u->grad, st.tensor_or_fill("exp_avg", p),
                          st.tensor_or_fill("exp_avg_sq", p),
                          o.amsgrad ? st.tensor_or_fill("max_exp_avg_sq", p) : Tensor()};
      e.step_size = o.lr / (1.0 - std::pow(o.beta1, t));
      e.inv_sqrt_bc2 = 1.0 / std::sqrt(1.0 - std::pow(o.beta2, t));
      tensors.push_back(std::move(e));
    }
    adam_update_(args, tensors);
  }
}

}  // namespace

void AdamOptions::check() const { check_adam_family_options(*this); }
void AdamWOptions::check() const { check_adam_family_options(*this); }

void Adam::update(size_t group, Tensor& param, const Tensor& grad, ParamState& state) {
  const AdamOptions& o = options(group);
  adam_step(o, param, grad_with_weight_decay(grad, param, o.weight_decay), state);
}

void AdamW::update(size_t group, Tensor& param, const Tensor& grad, ParamState& state) {
  const AdamWOptions& o = options(group);
  // Decoupled decay shrinks the weights directly, before (and independent of) the adaptive step.
  if (o.weight_decay != 0) mul_(param, 1.0 - o.lr * o.weight_decay);
  adam_step(o, param, grad, state);
}

void Adam::update_group(size_t group, const std::vector<PendingUpdate>& pending) {
  adam_group(options(group), false, fused(), pending,
             [&](Tensor& p, const Tensor& g, ParamState& st) { update(group, p, g, st); });
}

void AdamW::update_group(size_t group, const std::vector<PendingUpdate>& pending) {
  adam_group(options(group), true, fused(), pending,
             [&](Tensor& p, const Tensor& g, ParamState& st) { update(group, p, g, st); });
}

}  // namespace dtrain::optim
