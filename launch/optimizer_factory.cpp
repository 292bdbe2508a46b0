#include "launch/optimizer_factory.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "distributed/zero.h"

namespace dtrain::launch {

namespace {
template <class Options, class Opt>
std::unique_ptr<optim::Optimizer> grouped(Options options, double weight_decay,
                                          std::vector<GroupSpec> specs) {
  std::vector<optim::ParamGroup<Options>> groups;
  for (GroupSpec& spec : specs) {
    Options o = options;
    o.lr = options.lr * spec.lr_scale;
    o.weight_decay = spec.decay ? weight_decay : 0.0;
    groups.push_back({std::move(spec.params), o});
  }
  return std::make_unique<Opt>(std::move(groups));
}

// The block index in a parameter name ("blocks.3.attn.qkv.weight", "decoder_layers.0.mlp..."), or -1.
int64_t block_index(const std::string& name) {
  for (const char* stack : {"blocks.", "layers."}) {
    for (size_t at = name.find(stack); at != std::string::npos; at = name.find(stack, at + 1)) {
      size_t digits = at + std::char_traits<char>::length(stack), end = digits;
      while (end < name.size() && name[end] >= '0' && name[end] <= '9') ++end;
      if (end > digits && end - digits < 7 && end < name.size() && name[end] == '.') {
        return std::stoll(name.substr(digits, end - digits));
      }
    }
  }
  return -1;
}

bool exempt_from_decay(const std::string& name, const Tensor& p) {
  return p.dim() < 2 || name.find("_token") != std::string::npos ||
         name.find("pos_embed") != std::string::npos;
}
}  // namespace

ParameterLayers parameter_layers(const nn::Module& model) {
  ParameterLayers result;
  std::vector<int64_t> blocks;
  for (const auto& [name, p] : model.named_parameters()) blocks.push_back(block_index(name));
  const auto first = std::find_if(blocks.begin(), blocks.end(), [](int64_t b) { return b >= 0; });
  result.depth = blocks.empty() ? 0 : *std::max_element(blocks.begin(), blocks.end()) + 1;
  for (auto it = blocks.begin(); it != blocks.end(); ++it) {
    result.layer.push_back(*it >= 0 ? *it + 1 : it < first ? 0 : result.depth + 1);
  }
  return result;
}

int64_t freeze_below_last_blocks(const nn::Module& model, int64_t trainable_blocks) {
  if (trainable_blocks < 0) return 0;
  const ParameterLayers layers = parameter_layers(model);
  DTRAIN_CHECK(trainable_blocks <= layers.depth, "--trainable-blocks ", trainable_blocks,
               " but the model has ", layers.depth, " blocks: give at most ", layers.depth,
               " (or -1 to train everything)");
  int64_t frozen = 0, i = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    if (layers.layer[i++] <= layers.depth - trainable_blocks) {
      Tensor(p).set_requires_grad(false);
      ++frozen;
    }
  }
  return frozen;
}

std::vector<GroupSpec> param_groups(const TrainConfig& c, const nn::Module& model) {
  const ParameterLayers layers = parameter_layers(model);
  const bool per_layer = c.layer_lr_decay != 1.0;
  std::vector<GroupSpec> groups(per_layer ? 2 * (layers.depth + 2) : 2);
  for (size_t g = 0; g < groups.size(); ++g) {
    groups[g].decay = g % 2 == 0;
    const auto layer =
        static_cast<int64_t>(g / 2);  // groups come in pairs per layer: decay, no decay
    if (per_layer)
      groups[g].lr_scale =
          std::pow(c.layer_lr_decay, static_cast<double>(layers.depth + 1 - layer));
  }
  int64_t i = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    const int64_t layer = layers.layer[i++];
    if (!p.requires_grad()) continue;
    const size_t pair = per_layer ? 2 * static_cast<size_t>(layer) : 0;
    groups[pair + (exempt_from_decay(name, p) ? 1 : 0)].params.push_back(p);
  }
  return groups;
}

std::vector<std::vector<Tensor>> decay_groups(const nn::Module& model) {
  std::vector<std::vector<Tensor>> groups(2);
  for (const auto& [name, p] : model.named_parameters()) {
    if (!p.requires_grad()) continue;
    groups[exempt_from_decay(name, p) ? 1 : 0].push_back(p);
  }
  return groups;
}

namespace {
// Every optimizer by name, with the per-tensor update (make_optimizer turns the fused path on).
std::unique_ptr<optim::Optimizer> make_unfused_optimizer(const TrainConfig& c,
                                                         std::vector<GroupSpec> groups);
}  // namespace

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& c,
                                                 std::vector<std::vector<Tensor>> groups) {
  DTRAIN_CHECK(groups.size() == 2, "make_optimizer expects {decay, no_decay} parameter groups");
  std::vector<GroupSpec> specs(2);
  specs[0] = {std::move(groups[0]), true, 1.0};
  specs[1] = {std::move(groups[1]), false, 1.0};
  return make_optimizer(c, std::move(specs));
}

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& c,
                                                 std::vector<GroupSpec> groups) {
  std::unique_ptr<optim::Optimizer> opt = make_unfused_optimizer(c, std::move(groups));
  opt->set_fused(c.fused_optimizer == "on" ||
                 (c.fused_optimizer == "auto" && opt->has_fused_path()));
  return opt;
}

namespace {
std::unique_ptr<optim::Optimizer> make_unfused_optimizer(const TrainConfig& c,
                                                         std::vector<GroupSpec> groups) {
  const std::string& o = c.optimizer;
  if (o == "sgd") {
    return grouped<optim::SGDOptions, optim::SGD>({.lr = c.lr, .momentum = 0.9}, c.weight_decay,
                                                  std::move(groups));
  }
  if (o == "adam")
    return grouped<optim::AdamOptions, optim::Adam>(
        {.lr = c.lr, .beta1 = c.beta1, .beta2 = c.beta2}, c.weight_decay, std::move(groups));
  if (o == "adamw")
    return grouped<optim::AdamWOptions, optim::AdamW>(
        {.lr = c.lr, .beta1 = c.beta1, .beta2 = c.beta2}, c.weight_decay, std::move(groups));
  if (o == "adagrad") {
    return grouped<optim::AdagradOptions, optim::Adagrad>({.lr = c.lr}, c.weight_decay,
                                                          std::move(groups));
  }
  if (o == "rmsprop") {
    return grouped<optim::RMSpropOptions, optim::RMSprop>({.lr = c.lr}, c.weight_decay,
                                                          std::move(groups));
  }
  if (o == "adamax") {
    return grouped<optim::AdamaxOptions, optim::Adamax>(
        {.lr = c.lr, .beta1 = c.beta1, .beta2 = c.beta2}, c.weight_decay, std::move(groups));
  }
  if (o == "nadam")
    return grouped<optim::NAdamOptions, optim::NAdam>(
        {.lr = c.lr, .beta1 = c.beta1, .beta2 = c.beta2}, c.weight_decay, std::move(groups));
  throw Error("unknown optimizer '" + o +
              "': use sgd, adam, adamw, adagrad, rmsprop, adamax or nadam");
}
}  // namespace

optim::LrSchedule make_schedule(const TrainConfig& c, int64_t total_steps) {
  double min_ratio = c.lr > 0 ? c.min_lr / c.lr : 0.0;
  if (c.schedule == "cosine") return optim::warmup_cosine(c.warmup_steps, total_steps, min_ratio);
  if (c.schedule == "linear") return optim::warmup_linear(c.warmup_steps, total_steps, min_ratio);
  if (c.schedule == "constant") return optim::constant_lr(c.warmup_steps);
  if (c.schedule == "step")
    return optim::step_lr(std::max<int64_t>(1, total_steps / 3), 0.1, c.warmup_steps);
  throw Error("unknown schedule '" + c.schedule + "': use cosine, linear, step or constant");
}

std::unique_ptr<optim::Optimizer> make_training_optimizer(
    const TrainConfig& c, const nn::Module& model, const std::shared_ptr<dist::ProcessGroup>& pg) {
  std::vector<GroupSpec> specs = param_groups(c, model);
  if (c.zero == 0) return make_optimizer(c, std::move(specs));
  // ZeRO-1 hands the inner optimizer each group's shard, in the same order.
  std::vector<std::vector<Tensor>> tensors;
  tensors.reserve(specs.size());
  for (GroupSpec& spec : specs) tensors.push_back(std::move(spec.params));
  return std::make_unique<dist::ZeroRedundancyOptimizer>(
      std::move(tensors), pg, [c, specs](std::vector<std::vector<Tensor>> shards) {
        std::vector<GroupSpec> sharded = specs;
        DTRAIN_CHECK(shards.size() == sharded.size(), "ZeRO-1 gave ", shards.size(),
                     " parameter groups for ", sharded.size());
        for (size_t g = 0; g < shards.size(); ++g) sharded[g].params = std::move(shards[g]);
        return make_optimizer(c, std::move(sharded));
      });
}

}  // namespace dtrain::launch
