#include "launch/optimizer_factory.h"

#include "distributed/zero.h"

namespace dtrain::launch {

namespace {
template <class Options, class Opt>
std::unique_ptr<optim::Optimizer> grouped(Options options, double weight_decay,
                                          std::vector<Tensor> decay, std::vector<Tensor> no_decay) {
  Options with = options, without = options;
  with.weight_decay = weight_decay;
  without.weight_decay = 0.0;
  std::vector<optim::ParamGroup<Options>> groups;
  groups.push_back({std::move(decay), with});
  groups.push_back({std::move(no_decay), without});
  return std::make_unique<Opt>(std::move(groups));
}

bool exempt_from_decay(const std::string& name, const Tensor& p) {
  return p.dim() < 2 || name.find("_token") != std::string::npos ||
         name.find("pos_embed") != std::string::npos;
}
}  // namespace

std::vector<std::vector<Tensor>> decay_groups(const nn::Module& model) {
  std::vector<std::vector<Tensor>> groups(2);
  for (const auto& [name, p] : model.named_parameters()) {
    if (!p.requires_grad()) continue;
    groups[exempt_from_decay(name, p) ? 1 : 0].push_back(p);
  }
  return groups;
}

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& c,
                                                 std::vector<std::vector<Tensor>> groups) {
  DTRAIN_CHECK(groups.size() == 2, "make_optimizer expects {decay, no_decay} parameter groups");
  std::vector<Tensor>& decay = groups[0];
  std::vector<Tensor>& no_decay = groups[1];
  const std::string& o = c.optimizer;
  if (o == "sgd") {
    return grouped<optim::SGDOptions, optim::SGD>({.lr = c.lr, .momentum = 0.9}, c.weight_decay, decay, no_decay);
  }
  if (o == "adam") return grouped<optim::AdamOptions, optim::Adam>({.lr = c.lr}, c.weight_decay, decay, no_decay);
  if (o == "adamw") return grouped<optim::AdamWOptions, optim::AdamW>({.lr = c.lr}, c.weight_decay, decay, no_decay);
  if (o == "adagrad") {
    return grouped<optim::AdagradOptions, optim::Adagrad>({.lr = c.lr}, c.weight_decay, decay, no_decay);
  }
  if (o == "rmsprop") {
    return grouped<optim::RMSpropOptions, optim::RMSprop>({.lr = c.lr}, c.weight_decay, decay, no_decay);
  }
  if (o == "adamax") {
    return grouped<optim::AdamaxOptions, optim::Adamax>({.lr = c.lr}, c.weight_decay, decay, no_decay);
  }
  if (o == "nadam") return grouped<optim::NAdamOptions, optim::NAdam>({.lr = c.lr}, c.weight_decay, decay, no_decay);
  throw Error("unknown optimizer '" + o + "': use sgd, adam, adamw, adagrad, rmsprop, adamax or nadam");
}

optim::LrSchedule make_schedule(const TrainConfig& c, int64_t total_steps) {
  double min_ratio = c.lr > 0 ? c.min_lr / c.lr : 0.0;
  if (c.schedule == "cosine") return optim::warmup_cosine(c.warmup_steps, total_steps, min_ratio);
  if (c.schedule == "linear") return optim::warmup_linear(c.warmup_steps, total_steps, min_ratio);
  if (c.schedule == "constant") return optim::constant_lr(c.warmup_steps);
  if (c.schedule == "step") return optim::step_lr(std::max<int64_t>(1, total_steps / 3), 0.1, c.warmup_steps);
  throw Error("unknown schedule '" + c.schedule + "': use cosine, linear, step or constant");
}

std::unique_ptr<optim::Optimizer> make_training_optimizer(const TrainConfig& c, const nn::Module& model,
                                                          const std::shared_ptr<dist::ProcessGroup>& pg) {
  if (c.zero == 0) return make_optimizer(c, decay_groups(model));
  return std::make_unique<dist::ZeroRedundancyOptimizer>(
      decay_groups(model), pg,
      [c](std::vector<std::vector<Tensor>> groups) { return make_optimizer(c, std::move(groups)); });
}

}  // namespace dtrain::launch
