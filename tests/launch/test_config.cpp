// Options in one place: every option has a Setting (so the rank agreement and the resume check cannot
// miss one), the validation names the option and its range, the INI reader names file and line, and
// state.json is checked field by field.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "launch/config.h"
#include "launch/train_state.h"

namespace dtrain::launch {
namespace {

namespace fs = std::filesystem;

// The message of the Error `f` throws ("" if it throws none).
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string parse_error(std::vector<std::string> args) {
  TrainConfig c;
  return error_of([&] { parse_train_config(args, c, "train"); });
}

TEST(Config, EveryOptionHasASetting) {
  std::set<std::string> names;
  for (const Setting& s : settings(TrainConfig{}))
    EXPECT_TRUE(names.insert(s.name).second) << s.name;
  // Each setting is an option the parser knows, and a changed value shows in the setting's text.
  for (const std::string& name : names) {
    EXPECT_EQ(parse_error({"--" + name + "=@@bad"}).find("unrecognised option"), std::string::npos)
        << name;
  }
  TrainConfig c;
  ASSERT_TRUE(parse_train_config({"--eval-interval", "5", "--lr", "0.25"}, c, "train"));
  for (const Setting& s : settings(c)) {
    if (s.name == "eval-interval") {
      EXPECT_EQ(s.value, "5");
    }
    if (s.name == "lr") {
      EXPECT_EQ(s.value, "0.25");
    }
  }
}

TEST(Config, BadValuesNameTheOptionAndItsRange) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--log-interval", "0"}, "--log-interval must be at least 1 step"},
      {{"--threads", "10000"}, "--threads must be between 0 and"},
      {{"--collective-timeout", "1e300"}, "--collective-timeout must be between 0.1 and"},
      {{"--collective-timeout", "-1"}, "--collective-timeout must be between"},
      {{"--collective-timeout", "0"}, "--collective-timeout must be between"},
      {{"--collective-timeout", "nan"}, "--collective-timeout must be between"},
      {{"--steps", "-5"}, "--steps must be between 0 and"},
      {{"--depth", "-1"}, "--depth must be between 0 and"},
      {{"--lr", "inf"}, "--lr must be between 0 and"},
      {{"--epochs", "1e30"}, "--epochs must be between 0 and"},
      {{"--dropout", "1"}, "--dropout must be between"},
      {{"--grad-accum", "0"}, "--grad-accum must be between 1 and"},
      {{"--min-lr", "1", "--lr", "0.1"}, "--min-lr must be between 0 and 0.1"},
      {{"--zero", "2"}, "--zero must be between 0 and 1"},
      {{"--precision", "f8"}, "--precision must be f32, bf16 or f16"},
  };
  for (const auto& [args, expected] : cases) {
    std::string msg = parse_error(args);
    EXPECT_NE(msg.find(expected), std::string::npos) << args[0] << " " << args[1] << ": " << msg;
  }
  EXPECT_EQ(parse_error({"--log-interval", "1", "--threads", "0"}), "");
}

class ConfigFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dtrain-config-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& text) {
    std::string path = (dir_ / "run.ini").string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  fs::path dir_;
};

TEST_F(ConfigFile, ErrorsNameFileAndLine) {
  std::string path = write("# comment\nsteps = 7\n\nstepz = 3\n");
  std::string msg = parse_error({"--config", path});
  EXPECT_NE(msg.find(path + ":4: "), std::string::npos) << msg;
  EXPECT_NE(msg.find("stepz"), std::string::npos) << msg;
  path = write("steps = 7\nsteps = 8\n");
  EXPECT_NE(parse_error({"--config", path}).find(path + ":2: --steps is set twice"),
            std::string::npos);
  path = write("steps = seven\n");
  EXPECT_NE(parse_error({"--config", path}).find(path + ":1: "), std::string::npos);
  path = write("just words\n");
  EXPECT_NE(parse_error({"--config", path}).find(path + ":1: expected 'option = value'"),
            std::string::npos);
  path = write("log-interval = 0\n");  // the file's values are validated like the command line's
  EXPECT_NE(parse_error({"--config", path}).find(path + ":1: --log-interval must be"),
            std::string::npos);
  path = write("precision = f16\rx\n");  // control characters are shown, not sent to the terminal
  std::string msg2 = parse_error({"--config", path});
  EXPECT_NE(msg2.find(path + ":1: --precision must be"), std::string::npos) << msg2;
  EXPECT_NE(msg2.find("f16\\x0dx"), std::string::npos) << msg2;
  EXPECT_NE(parse_error({"--config", dir_.string()}).find("is a directory"), std::string::npos);
}

TEST_F(ConfigFile, CommandLineWinsAndCommentsAreSkipped) {
  std::string path =
      write("steps = 7 # trailing comment\nseed = 4\n; another comment\nprogress = false\n");
  TrainConfig c;
  ASSERT_TRUE(parse_train_config({"--config", path, "--steps", "3"}, c, "train"));
  EXPECT_EQ(c.steps, 3);
  EXPECT_EQ(c.seed, 4u);
  EXPECT_FALSE(c.progress);
}

nlohmann::json good_state() {
  TrainState s;
  s.step = 10, s.epoch = 1, s.global_batch = 2;
  s.optimizer = {{"optimizer", "adamw"}};
  s.scheduler = {{"step", 10}};
  s.rng = {{1, 2, 3, 4, 5, 6}, {7, 8, 9, 10, 11, 12}};
  s.settings = {{"batch-size", "32"}};
  return train_state_to_json(s);
}

TEST(TrainState, RoundTripsAndReadsTheOlderSingleRngForm) {
  TrainState s = parse_train_state(good_state(), "ck");
  EXPECT_EQ(s.step, 10);
  ASSERT_EQ(s.rng.size(), 2u);
  EXPECT_EQ(s.rng[1][5], 12u);
  nlohmann::json old = good_state();
  old.erase("rng_per_rank");
  old["rng"] = {1, 2, 3, 4, 5, 6};
  EXPECT_EQ(parse_train_state(old, "ck").rng.size(), 1u);
  // An older checkpoint's loader position in micro-batches is kept apart from the global one.
  nlohmann::json legacy = good_state();
  legacy["data"] = {{"epoch", 1}, {"batch", 6}};
  const TrainState l = parse_train_state(legacy, "ck");
  EXPECT_EQ(l.legacy_batch, 6);
  EXPECT_EQ(s.legacy_batch, -1);
  EXPECT_EQ(s.global_batch, 2);
}

TEST(TrainState, RecordsTheConfigurationCommandLineAndVersion) {
  TrainState s = parse_train_state(good_state(), "ck");
  s.config = {{"dim", "24"}, {"model", "vit"}};
  s.command_line = {"dtrain", "train", "--dim", "24"};
  s.version = "dtrain 9.9";
  s.elapsed_s = 12.5;
  s.eval = {{"accuracy", 0.5}};
  s.world_size = 3;
  const TrainState back = parse_train_state(train_state_to_json(s), "ck");
  EXPECT_EQ(back.config, s.config);
  EXPECT_EQ(back.command_line, s.command_line);
  EXPECT_EQ(back.version, s.version);
  EXPECT_EQ(back.elapsed_s, 12.5);
  EXPECT_EQ(back.eval, s.eval);
  EXPECT_EQ(back.world_size, 3);
}

TEST(Config, IntervalsInStepsOrEpochs) {
  EXPECT_EQ(Interval::parse("100", "x").steps(12), 100);
  EXPECT_EQ(Interval::parse("1ep", "x").steps(12), 12);
  EXPECT_EQ(Interval::parse("0.5ep", "x").steps(12), 6);
  EXPECT_EQ(Interval::parse("0.01ep", "x").steps(12), 1);  // at least a step
  EXPECT_EQ(Interval::parse("0", "x").steps(12), 0);
  EXPECT_TRUE(Interval::parse("1ep", "x").due(24, 12));
  EXPECT_FALSE(Interval::parse("1ep", "x").due(18, 12));
  EXPECT_EQ(Interval::parse("0.5ep", "x").text(), "0.5ep");
  for (const char* bad : {"1.5", "-1", "ep", "1e", "abc", "1 ep", "nanep"}) {
    EXPECT_NE(error_of([&] { Interval::parse(bad, "eval-interval"); }).find("--eval-interval"),
              std::string::npos)
        << bad;
  }
}

TEST(Config, ProfileStepsAreARange) {
  TrainConfig c;
  ASSERT_TRUE(parse_train_config({"--profile-steps", "3:5"}, c, "train"));
  EXPECT_EQ(c.profile_range(), (std::pair<int64_t, int64_t>{3, 5}));
  for (const char* bad : {"5:3", "0:2", "3", "a:b", "3:"}) {
    EXPECT_NE(parse_error({"--profile-steps", bad}).find("--profile-steps must be A:B"),
              std::string::npos)
        << bad;
  }
}

// A checkpoint's settings fill in what the command line leaves; the command line wins.
TEST(Config, CheckpointSettingsAreDefaultsForEval) {
  TrainConfig c;
  ASSERT_TRUE(parse_train_config(
      {"--resume", "ck", "--eval-batches", "3"}, c, "eval",
      {{"dim", "24"}, {"eval-batches", "9"}, {"lr", "0.5"}, {"data-dir", ""}}, "checkpoint ck"));
  EXPECT_EQ(c.dim, 24);
  EXPECT_EQ(c.eval_batches, 3);
  EXPECT_EQ(c.lr, TrainConfig{}.lr);  // not an eval option: ignored
  std::string msg = error_of([&] {
    TrainConfig d;
    parse_train_config({"--resume", "ck"}, d, "eval", {{"dim", "-4"}}, "checkpoint ck");
  });
  EXPECT_NE(msg.find("checkpoint ck: --dim must be between"), std::string::npos) << msg;
}

TEST(TrainState, DamagedFieldsAreNamed) {
  const std::vector<std::pair<std::function<void(nlohmann::json&)>, std::string>> cases = {
      {[](nlohmann::json& j) { j.erase("step"); }, "no 'step'"},
      {[](nlohmann::json& j) { j["step"] = -3; }, "'step' must be a whole number >= 0"},
      {[](nlohmann::json& j) { j["data"]["epoch"] = -1; }, "'epoch' must be"},
      {[](nlohmann::json& j) { j["data"] = 5; }, "no 'epoch'"},
      {[](nlohmann::json& j) {
         j["rng_per_rank"][0] = {1, 2};
       },
       "an RNG state is 6 numbers"},
      {[](nlohmann::json& j) { j["loss_scale"] = -1; }, "'loss_scale' must be a positive number"},
      {[](nlohmann::json& j) { j["settings"]["heads"] = 4; }, "settings 'heads' must be a string"},
      {[](nlohmann::json& j) { j = nlohmann::json::array(); }, "expected a JSON object"},
  };
  for (const auto& [damage, expected] : cases) {
    nlohmann::json j = good_state();
    damage(j);
    std::string msg = error_of([&] { parse_train_state(j, "runs/ck"); });
    EXPECT_NE(msg.find("checkpoint runs/ck: state.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(expected), std::string::npos) << msg;
  }
}

TEST(TrainState, ResumeRefusesChangedFixedSettingsAndNoStepsLeft) {
  TrainConfig c;
  c.batch_size = 64;
  TrainState s = parse_train_state(good_state(), "ck");
  std::string msg = error_of([&] { check_resume_compatible(c, 100, s, "ck"); });
  EXPECT_NE(msg.find("--batch-size is '64' but the checkpoint at ck was trained with '32'"),
            std::string::npos)
      << msg;
  c.batch_size = 32;
  EXPECT_EQ(error_of([&] { check_resume_compatible(c, 100, s, "ck"); }), "");
  // Exactly the checkpoint's step is a finished run (the trainer says so); fewer is an error.
  EXPECT_EQ(error_of([&] { check_resume_compatible(c, 10, s, "ck"); }), "");
  msg = error_of([&] { check_resume_compatible(c, 9, s, "ck"); });
  EXPECT_NE(msg.find("is at step 10 and this run ends at step 9"), std::string::npos) << msg;
  // Intervals, threads and the like may change; the model's shape may not.
  for (const Setting& setting : settings(c)) {
    if (setting.name == "eval-interval" || setting.name == "threads") {
      EXPECT_NE(setting.scope, Setting::every_rank_and_resume);
    }
    if (setting.name == "heads" || setting.name == "schedule") {
      EXPECT_EQ(setting.scope, Setting::every_rank_and_resume);
    }
  }
}

}  // namespace
}  // namespace dtrain::launch
