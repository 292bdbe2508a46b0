// The training loop of `dtrain train`, one screen long: get batch, forward, loss, backward (DDP
// reduces inside backward), clip, step, log; evaluation and checkpoints at their intervals.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>

#include "distributed/process_group.h"
#include "launch/config.h"

namespace dtrain::launch {

// What a finished run reports (the summary line prints it).
struct TrainResult {
  int64_t steps = 0;
  double final_loss = 0.0;
  double items_per_s = 0.0;
  nlohmann::json eval;  // the last evaluation's metrics
};

// The device this rank trains on: the CPU, its local rank's GPU (--device cuda; at most one rank per
// visible GPU), or the one named (--device cuda:K; one rank per node). Throws a one-line error else.
Device pick_device(const TrainConfig& config);

// Trains as `config` says. `pg` is the job's process group (a one-rank group without a launcher).
TrainResult train(const TrainConfig& config, std::shared_ptr<dist::ProcessGroup> pg);

// Loads the checkpoint at config.resume into the workload config describes and evaluates it on the
// eval split (every rank a shard, metrics summed across ranks).
nlohmann::json evaluate_checkpoint(const TrainConfig& config, dist::ProcessGroup& pg);

}  // namespace dtrain::launch
