// Builds the optimizer and the learning-rate schedule a TrainConfig names. Parameters split into
// groups as in timm and nanoGPT: matrices (dim >= 2) get weight decay; biases, norms, the class token
// and position tables (dim < 2, or named *_token / pos_embed*) do not. With --layer-lr-decay each
// layer's parameters form their own pair of groups with a scaled learning rate (BEiT's layer-wise
// decay), and --trainable-blocks freezes the layers below the last N blocks.
#pragma once
#include <memory>

#include "core/nn/module.h"
#include "core/optim/optim.h"
#include "distributed/process_group.h"
#include "launch/config.h"

namespace dtrain::launch {

// The layer of each of `model`'s parameters (in named_parameters() order), for fine-tuning: a name
// with "blocks.<i>." or "layers.<i>." is in block i and gets layer i + 1; a parameter named before
// the first block (embeddings, stem, class token) gets 0, any other (the final norm, the head) gets
// depth + 1, where depth is one more than the highest block index. A model without blocks has depth 0.
struct ParameterLayers {
  std::vector<int64_t> layer;
  int64_t depth = 0;
};
ParameterLayers parameter_layers(const nn::Module& model);

// Freezes (requires_grad false) every parameter below the last `trainable_blocks` blocks, so the
// last N blocks, the final norm and the head train; -1 freezes nothing, 0 trains the head alone.
// Returns how many parameter tensors it froze.
int64_t freeze_below_last_blocks(const nn::Module& model, int64_t trainable_blocks);

// A group of parameters that share weight decay and a learning-rate scale.
struct GroupSpec {
  std::vector<Tensor> params;
  bool decay = true;      // --weight-decay, or none
  double lr_scale = 1.0;  // of --lr (and of whatever the schedule makes of it)
};
// {matrices, everything else} of the trainable parameters; with --layer-lr-decay d < 1, that pair
// once per layer l of parameter_layers, scaled by d^(depth + 1 - l), layer 0 first.
std::vector<GroupSpec> param_groups(const TrainConfig& config, const nn::Module& model);
// {matrices, everything else} of the trainable parameters: the first gets --weight-decay.
std::vector<std::vector<Tensor>> decay_groups(const nn::Module& model);
// The optimizer over `groups` (any may be empty, e.g. in a ZeRO-1 shard).
std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& config,
                                                 std::vector<GroupSpec> groups);
// The same over {decay, no_decay} groups at --lr.
std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& config,
                                                 std::vector<std::vector<Tensor>> groups);
// What `dtrain train` steps: make_optimizer over param_groups(config, model), or, with --zero 1, a ZeRO-1
// optimizer that shards that optimizer's state over the ranks of `pg`.
std::unique_ptr<optim::Optimizer> make_training_optimizer(
    const TrainConfig& config, const nn::Module& model,
    const std::shared_ptr<dist::ProcessGroup>& pg);
optim::LrSchedule make_schedule(const TrainConfig& config, int64_t total_steps);

}  // namespace dtrain::launch
