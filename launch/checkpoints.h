// A run's checkpoints in one place: where they go, which are kept, what a save writes and what a
// resume restores.
//
// --checkpoint-dir RUN holds
//   RUN/step-00000100/   one checkpoint per save; the newest --keep-checkpoints are kept
//   RUN/best/            the checkpoint of the best evaluation so far, by the workload's headline
//                        metric (accuracy up; CER, bits per character down)
// each a checkpoint directory (core/io/checkpoint.h: written whole or not at all, dtrain removes only
// what it wrote) of model.safetensors, optimizer.safetensors and state.json (launch/train_state.h).
// `--resume auto` continues RUN from its newest step checkpoint, or starts afresh when there is none,
// so the same command line restarts a preempted job; without it, a RUN that holds checkpoints is refused
// rather than mixed with a new run's.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "core/amp/loss_scaler.h"
#include "core/optim/lr_schedule.h"
#include "core/optim/optimizer.h"
#include "distributed/process_group.h"
#include "launch/config.h"
#include "launch/train_state.h"
#include "launch/workload.h"

namespace dtrain::launch {

// "step-00000100"
std::string step_checkpoint_name(int64_t step);
// The newest complete step checkpoint under `run_dir`, or "" when there is none.
std::string latest_checkpoint(const std::string& run_dir);
// `path` when it is a checkpoint, else the newest step checkpoint of the run directory `path`; throws a
// one-line error when it is neither.
std::string resolve_checkpoint(const std::string& path);
// The options a checkpoint was trained with, by name ({} for a checkpoint older than that record):
// eval and predict take them as defaults (parse_train_config's fallback).
std::map<std::string, std::string> recorded_settings(const std::string& checkpoint_dir);
// The TrainConfig a checkpoint was trained with; `args` (predict's or eval's command line) override it.
TrainConfig load_run_config(const std::string& checkpoint_dir,
                            const std::vector<std::string>& args = {},
                            const char* subcommand = "predict");
// Fine-tuning (--init-from): copies the model tensors of the checkpoint at `path` (a checkpoint or a
// run directory) into `workload`'s model by name. A tensor the model has but the checkpoint lacks, or
// holds in another shape (a new head for other classes), keeps its fresh initialisation; a tensor only
// the checkpoint has is ignored. Returns one line saying what was taken and what was not. Throws when
// no tensor matches (a checkpoint of another model).
std::string load_initial_weights(const std::string& path, Workload& workload);
// Whether a larger value of `metric` is better (accuracy, BLEU) or a smaller one (loss, CER, bpc).
bool higher_is_better(const std::string& metric);

// What a checkpoint saves and a resume restores.
struct TrainingParts {
  Workload& workload;
  optim::Optimizer& optimizer;
  optim::LrScheduler& scheduler;
  amp::DynamicLossScaler& scaler;
};

class RunCheckpoints {
 public:
  // Resolves --resume and refuses a fresh run over an existing one (its checkpoints, or a metrics file
  // that already holds records); parses and checks the checkpoint to resume from against `config`.
  // Every rank; no collective (call it inside run_on_every_rank).
  RunCheckpoints(const TrainConfig& config, int rank, int64_t total_steps);

  // The checkpoint this run continues ("" for a fresh start) and its state.
  const std::string& resume_dir() const { return resume_dir_; }
  const TrainState& resumed() const { return resumed_; }
  // The metrics file's records to keep: those up to the resumed step (-1: none, a fresh file).
  int64_t metrics_keep_through() const { return resume_dir_.empty() ? -1 : resumed_.step; }

  // Collective. Loads model, optimizer, scheduler and loss scaler from resume_dir() and continues this
  // rank's dropout stream (or, at another world size, starts one from the seed, step and rank).
  void restore(TrainingParts parts, dist::ProcessGroup& pg) const;
  // Collective. Writes RUN/step-<state.step>, then removes step checkpoints beyond --keep-checkpoints.
  // Does nothing without --checkpoint-dir.
  void save(TrainingParts parts, dist::ProcessGroup& pg, TrainState state);
  // Collective. Writes RUN/best when state.eval's headline metric beats every earlier one of the run.
  void save_if_best(TrainingParts parts, dist::ProcessGroup& pg, TrainState state);

 private:
  void mark_run() const;  // rank 0: creates the run directory and its marker
  void write(const std::string& dir, TrainingParts parts, dist::ProcessGroup& pg,
             TrainState state) const;

  const TrainConfig& config_;
  std::string resume_dir_;
  TrainState resumed_;
  nlohmann::json best_eval_;  // the eval of RUN/best, or null
};

}  // namespace dtrain::launch
