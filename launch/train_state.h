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
  int64_t epoch = 0, batch = 0;  // the data loader's position
  nlohmann::json optimizer;       // the optimizer's scalars (its tensors are in optimizer.safetensors)
  nlohmann::json scheduler;
  std::vector<std::array<uint64_t, 6>> rng;  // one default-generator state per rank, rank order
  double loss_scale = 65536.0;
  int64_t loss_scale_clean_steps = 0;
  std::map<std::string, std::string> settings;  // the every_rank_and_resume options, by name
};

nlohmann::json train_state_to_json(const TrainState& state);
// Throws dtrain::Error naming `checkpoint_dir` and the field for anything missing or out of range.
TrainState parse_train_state(const nlohmann::json& json, const std::string& checkpoint_dir);

// The settings a checkpoint fixes (Setting::every_rank_and_resume), as TrainState::settings holds them.
std::map<std::string, std::string> resume_settings(const TrainConfig& config);
// Throws when `config` changes a setting the checkpoint fixes, or does not go beyond its step:
// "--batch-size is 64 but the checkpoint at DIR was trained with 128".
void check_resume_compatible(const TrainConfig& config, int64_t total_steps, const TrainState& state,
                             const std::string& checkpoint_dir);

}  // namespace dtrain::launch
