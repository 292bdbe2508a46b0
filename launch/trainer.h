// The training loop of `dtrain train`, one screen long: get batch, forward, loss, backward (DDP
// reduces inside backward), clip, step, log; evaluation and checkpoints at their intervals.
#pragma once
#include <memory>
#include <string>
#include <nlohmann/json.hpp>

#include "distributed/process_group.h"
#include "launch/config.h"

namespace dtrain::launch {

// What a finished run reports (the summary line prints it).
struct TrainResult {
  int64_t steps = 0;
  double final_loss = 0.0;
  double items_per_s = 0.0;  // over this session
  std::string unit;        // what items_per_s counts: the workload's unit ("images", "tokens", ...)
  nlohmann::json eval;     // the last evaluation's metrics
  std::string checkpoint;  // the last checkpoint written, if any
  std::string finished_at;  // set when the run resumed was already finished: its checkpoint
  int stopped_by = 0;       // SIGTERM or SIGINT when a signal ended the run early
  // This rank's peak resident memory, and the peak held in tensors on its device.
  double peak_rss_mb = 0, peak_device_mb = 0;
  bool on_gpu = false;  // whether peak_device_mb is a GPU's
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
