#include "launch/train_state.h"

#include <cmath>

#include "core/error.h"

namespace dtrain::launch {

namespace {

const nlohmann::json& field(const nlohmann::json& object, const char* key, const std::string& where) {
  DTRAIN_CHECK(object.is_object() && object.contains(key), where, ": no '", key,
               "' (the file is damaged or not a dtrain checkpoint's)");
  return object.at(key);
}

int64_t count_field(const nlohmann::json& object, const char* key, const std::string& where) {
  const nlohmann::json& v = field(object, key, where);
  DTRAIN_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0, where, ": '", key,
               "' must be a whole number >= 0, got ", v.dump());
  return v.get<int64_t>();
}

}  // namespace

nlohmann::json train_state_to_json(const TrainState& s) {
  nlohmann::json rng = nlohmann::json::array();
  for (const auto& words : s.rng) rng.push_back(std::vector<uint64_t>(words.begin(), words.end()));
  return {{"step", s.step},
          {"data", {{"epoch", s.epoch}, {"batch", s.batch}}},
          {"optimizer", s.optimizer},
          {"scheduler", s.scheduler},
          {"rng_per_rank", rng},
          {"loss_scale", s.loss_scale},
          {"loss_scale_clean_steps", s.loss_scale_clean_steps},
          {"settings", s.settings}};
}

TrainState parse_train_state(const nlohmann::json& json, const std::string& checkpoint_dir) {
  const std::string where = "checkpoint " + checkpoint_dir + ": state.json";
  DTRAIN_CHECK(json.is_object(), where, ": expected a JSON object, got ", json.type_name());
  TrainState s;
  s.step = count_field(json, "step", where);
  const nlohmann::json& data = field(json, "data", where);
  s.epoch = count_field(data, "epoch", where + " data");
  s.batch = count_field(data, "batch", where + " data");
  s.optimizer = field(json, "optimizer", where);
  s.scheduler = field(json, "scheduler", where);
  // Checkpoints of earlier versions hold rank 0's state alone, as "rng".
  const bool per_rank = json.contains("rng_per_rank");
  const nlohmann::json& rng = field(json, per_rank ? "rng_per_rank" : "rng", where);
  const nlohmann::json states = per_rank ? rng : nlohmann::json::array({rng});
  DTRAIN_CHECK(states.is_array() && !states.empty(), where, ": the RNG states must be a list");
  for (const auto& words : states) {
    DTRAIN_CHECK(words.is_array() && words.size() == 6, where, ": an RNG state is 6 numbers, got ",
                 words.dump().substr(0, 80));
    std::array<uint64_t, 6> state{};
    for (size_t i = 0; i < 6; ++i) {
      const bool non_negative =
          words[i].is_number_unsigned() || (words[i].is_number_integer() && words[i].get<int64_t>() >= 0);
      DTRAIN_CHECK(non_negative, where, ": RNG state word ", words[i].dump(),
                   " is not a 64-bit unsigned number");
      state[i] = words[i].get<uint64_t>();
    }
    s.rng.push_back(state);
  }
  if (json.contains("loss_scale")) {
    const nlohmann::json& scale = json.at("loss_scale");
    DTRAIN_CHECK(scale.is_number() && std::isfinite(scale.get<double>()) && scale.get<double>() > 0,
                 where, ": 'loss_scale' must be a positive number, got ", scale.dump());
    s.loss_scale = scale.get<double>();
    s.loss_scale_clean_steps = count_field(json, "loss_scale_clean_steps", where);
  }
  if (json.contains("settings")) {
    const nlohmann::json& settings = json.at("settings");
    DTRAIN_CHECK(settings.is_object(), where, ": 'settings' must be an object");
    for (const auto& [name, value] : settings.items()) {
      DTRAIN_CHECK(value.is_string(), where, ": setting '", name, "' must be a string");
      s.settings[name] = value.get<std::string>();
    }
  }
  return s;
}

std::map<std::string, std::string> resume_settings(const TrainConfig& config) {
  std::map<std::string, std::string> out;
  for (const Setting& s : settings(config)) {
    if (s.scope == Setting::every_rank_and_resume) out[s.name] = s.value;
  }
  return out;
}

void check_resume_compatible(const TrainConfig& config, int64_t total_steps, const TrainState& state,
                             const std::string& checkpoint_dir) {
  for (const auto& [name, value] : resume_settings(config)) {
    auto saved = state.settings.find(name);
    if (saved == state.settings.end()) continue;  // a checkpoint from before the setting was recorded
    DTRAIN_CHECK(saved->second == value, "--", name, " is '", value, "' but the checkpoint at ",
                 checkpoint_dir, " was trained with '", saved->second, "'; resume with --", name, " ",
                 saved->second, " (or train a new run without --resume)");
  }
  DTRAIN_CHECK(total_steps > state.step, "the checkpoint at ", checkpoint_dir, " is at step ", state.step,
               " and this run ends at step ", total_steps,
               ": give more --steps (or --epochs) than were trained to resume");
}

}  // namespace dtrain::launch
