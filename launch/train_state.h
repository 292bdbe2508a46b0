// state.json of a training checkpoint: where training stands (step, data position), the optimizer's
// and scheduler's scalars, every rank's RNG state, the loss scaler, and the settings a resume must keep.
// Parsing checks every field, so a damaged or hand-edited file is a one-line error naming the checkpoint
// and the field, never an exception from the JSON library or a silently wrong resume.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "launch/config.h"

namespace dtrain::launch {

struct TrainState {
  int64_t step = 0;
  // The data's position: global batches of `epoch` already trained on (whatever the world size and
  // --grad-accum; an older checkpoint's loader position in micro-batches is read as legacy_batch).
  int64_t epoch = 0, global_batch = 0;
  int64_t legacy_batch = -1;
  double elapsed_s = 0;      // training time before this checkpoint, over all sessions of the run
  nlohmann::json eval;       // the last evaluation's metrics ({} before the first)
  nlohmann::json optimizer;  // the optimizer's scalars (its tensors are in optimizer.safetensors)
  nlohmann::json scheduler;
  std::vector<std::array<uint64_t, 6>> rng;  // one default-generator state per rank, rank order
  double loss_scale = 65536.0;
  int64_t loss_scale_clean_steps = 0;
  std::map<std::string, std::string> settings;  // the every_rank_and_resume options, by name
  // Provenance: every option's value (what eval and predict rebuild the model from), the command line
  // and the dtrain version that wrote it.
  std::map<std::string, std::string> config;
  std::vector<std::string> command_line;
  std::string version;
  int world_size = 1;
};

nlohmann::json train_state_to_json(const TrainState& state);
// Throws dtrain::Error naming `checkpoint_dir` and the field for anything missing or out of range.
TrainState parse_train_state(const nlohmann::json& json, const std::string& checkpoint_dir);

// The settings a checkpoint fixes (Setting::every_rank_and_resume), as TrainState::settings holds them.
std::map<std::string, std::string> resume_settings(const TrainConfig& config);
// Every option of `config` by name, as a checkpoint records it.
std::map<std::string, std::string> all_settings(const TrainConfig& config);
// Throws when `config` changes a setting the checkpoint fixes, or asks for fewer steps than it holds:
// "--batch-size is 64 but the checkpoint at DIR was trained with 128". A run that asks for exactly
// the checkpoint's step is finished; the caller says so.
void check_resume_compatible(const TrainConfig& config, int64_t total_steps,
                             const TrainState& state, const std::string& checkpoint_dir);

}  // namespace dtrain::launch
