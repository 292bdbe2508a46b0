// Builds the optimizer and the learning-rate schedule a TrainConfig names. Parameters split into two
// groups as in timm and nanoGPT: matrices (dim >= 2) get weight decay; biases, norms, the class token
// and position tables (dim < 2, or named *_token / pos_embed*) do not.
#pragma once
#include <memory>

#include "core/nn/module.h"
#include "core/optim/optim.h"
#include "distributed/process_group.h"
#include "launch/config.h"

namespace dtrain::launch {

// {matrices, everything else}: the first group gets --weight-decay, the second none.
std::vector<std::vector<Tensor>> decay_groups(const nn::Module& model);
// The optimizer over {decay, no_decay} groups (either may be empty, e.g. a ZeRO-1 shard).
std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& config,
                                                 std::vector<std::vector<Tensor>> groups);
// What `dtrain train` steps: make_optimizer over decay_groups(model), or, with --zero 1, a ZeRO-1
// optimizer that shards that optimizer's state over the ranks of `pg`.
std::unique_ptr<optim::Optimizer> make_training_optimizer(const TrainConfig& config, const nn::Module& model,
                                                          const std::shared_ptr<dist::ProcessGroup>& pg);
optim::LrSchedule make_schedule(const TrainConfig& config, int64_t total_steps);

}  // namespace dtrain::launch
