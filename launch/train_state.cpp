#include "launch/train_state.h"

#include <cmath>

#include "core/error.h"

namespace dtrain::launch {

namespace {

const nlohmann::json& field(const nlohmann::json& object, const char* key,
                            const std::string& where) {
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
          {"data", {{"epoch", s.epoch}, {"global_batch", s.global_batch}}},
          {"elapsed_s", s.elapsed_s},
          {"eval", s.eval.is_null() ? nlohmann::json::object() : s.eval},
          {"config", s.config},
          {"command_line", s.command_line},
          {"dtrain_version", s.version},
          {"world_size", s.world_size},
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
  if (data.is_object() && data.contains("batch") && !data.contains("global_batch")) {
    s.legacy_batch = count_field(data, "batch", where + " data");
  } else {
    s.global_batch = count_field(data, "global_batch", where + " data");
  }
  if (json.contains("elapsed_s")) {
    const nlohmann::json& e = json.at("elapsed_s");
    DTRAIN_CHECK(e.is_number() && std::isfinite(e.get<double>()) && e.get<double>() >= 0, where,
                 ": 'elapsed_s' must be a number >= 0, got ", e.dump());
    s.elapsed_s = e.get<double>();
  }
  if (json.contains("eval")) {
    DTRAIN_CHECK(json.at("eval").is_object(), where, ": 'eval' must be an object");
    s.eval = json.at("eval");
  }
  if (json.contains("world_size"))
    s.world_size = static_cast<int>(count_field(json, "world_size", where));
  if (json.contains("dtrain_version")) {
    DTRAIN_CHECK(json.at("dtrain_version").is_string(), where,
                 ": 'dtrain_version' must be a string");
    s.version = json.at("dtrain_version").get<std::string>();
  }
  if (json.contains("command_line")) {
    const nlohmann::json& line = json.at("command_line");
    DTRAIN_CHECK(line.is_array(), where, ": 'command_line' must be a list of strings");
    for (const auto& arg : line) {
      DTRAIN_CHECK(arg.is_string(), where, ": 'command_line' must be a list of strings");
      s.command_line.push_back(arg.get<std::string>());
    }
  }
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
      const bool non_negative = words[i].is_number_unsigned() ||
                                (words[i].is_number_integer() && words[i].get<int64_t>() >= 0);
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
  for (auto [key, out] :
       {std::pair<const char*, std::map<std::string, std::string>*>{"settings", &s.settings},
        {"config", &s.config}}) {
    if (!json.contains(key)) continue;
    const nlohmann::json& settings = json.at(key);
    DTRAIN_CHECK(settings.is_object(), where, ": '", key, "' must be an object");
    for (const auto& [name, value] : settings.items()) {
      DTRAIN_CHECK(value.is_string(), where, ": ", key, " '", name, "' must be a string");
      (*out)[name] = value.get<std::string>();
    }
  }
  return s;
}

std::map<std::string, std::string> all_settings(const TrainConfig& config) {
  std::map<std::string, std::string> out;
  for (const Setting& s : settings(config)) out[s.name] = s.value;
  return out;
}

std::map<std::string, std::string> resume_settings(const TrainConfig& config) {
  std::map<std::string, std::string> out;
  for (const Setting& s : settings(config)) {
    if (s.scope == Setting::every_rank_and_resume) out[s.name] = s.value;
  }
  return out;
}

void check_resume_compatible(const TrainConfig& config, int64_t total_steps,
                             const TrainState& state, const std::string& checkpoint_dir) {
  for (const auto& [name, value] : resume_settings(config)) {
    auto saved = state.settings.find(name);
    if (saved == state.settings.end())
      continue;  // a checkpoint from before the setting was recorded
    DTRAIN_CHECK(saved->second == value, "--", name, " is '", value, "' but the checkpoint at ",
                 checkpoint_dir, " was trained with '", saved->second, "'; resume with --", name,
                 " ", saved->second, " (or train a new run without --resume)");
  }
  DTRAIN_CHECK(total_steps >= state.step, "the checkpoint at ", checkpoint_dir, " is at step ",
               state.step, " and this run ends at step ", total_steps,
               ": give more --steps (or --epochs) than were trained to resume");
}

}  // namespace dtrain::launch
