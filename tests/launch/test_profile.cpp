// `dtrain train --profile-steps A:B`: each rank writes <profile-dir>/trace-rank<r>.json, a Chrome trace of
// optimizer steps A..B with the model's modules in forward and backward, the optimizer, the data waits,
// and (under mpiexec) DDP's all-reduces on a track of their own.
#include <map>
#include <string>
#include <vector>

#include "cli_test_util.h"

namespace dtrain::cli_test {
namespace {

using nlohmann::json;

json read_trace(const fs::path& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path << " was not written";
  if (!in.good()) return json{{"traceEvents", json::array()}};
  return json::parse(in);
}

// The complete events of `category`, named `name` (any name when empty).
std::vector<json> events(const json& trace, const std::string& category,
                         const std::string& name = "") {
  std::vector<json> out;
  for (const json& e : trace.at("traceEvents"))
    if (e.at("ph") == "X" && e.at("cat") == category && (name.empty() || e.at("name") == name))
      out.push_back(e);
  return out;
}

// tid -> thread name, from the thread_name metadata.
std::map<int64_t, std::string> thread_names(const json& trace) {
  std::map<int64_t, std::string> names;
  for (const json& e : trace.at("traceEvents"))
    if (e.at("ph") == "M" && e.at("name") == "thread_name")
      names[e.at("tid")] = e.at("args").at("name");
  return names;
}

// What a trace of steps 2..3 of the tiny ViT holds whatever the number of ranks.
void expect_steps_2_to_3(const json& trace, int rank) {
  for (const json& e : trace.at("traceEvents")) ASSERT_EQ(e.at("pid"), rank) << e;
  const std::map<int64_t, std::string> names = thread_names(trace);
  // One forward and one backward per step, the model at the root and its modules inside.
  const std::vector<json> model = events(trace, "forward", "VisionTransformer");
  ASSERT_EQ(model.size(), 2u);
  const int64_t main_tid = model.front().at("tid");
  EXPECT_EQ(names.at(main_tid), "main");
  for (const std::string module : {"patch_embed.proj", "blocks.0", "blocks.0.attn",
                                   "blocks.0.attn.qkv", "blocks.0.mlp.fc2", "norm", "head"}) {
    EXPECT_EQ(events(trace, "forward", module).size(), 2u) << module;
    EXPECT_EQ(events(trace, "backward", module).size(), 2u) << module;
  }
  EXPECT_EQ(events(trace, "backward", "backward").size(), 2u);
  EXPECT_EQ(events(trace, "optimizer").size(), 2u);
  // The training thread's waits for its batches.
  const std::vector<json> data = events(trace, "data", "wait for batch");
  EXPECT_GE(data.size(), 2u);
  for (const json& e : data) EXPECT_EQ(e.at("tid"), main_tid);
}

class Profile : public CliTest {};

TEST_F(Profile, OneProcessWritesTheStepsAsked) {
  const fs::path profile = dir_ / "profile";
  RunResult r =
      train_tiny_vit({"--steps", "4", "--profile-steps", "2:3", "--profile-dir", profile.string()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const json trace = read_trace(profile / "trace-rank0.json");
  EXPECT_EQ(trace.at("displayTimeUnit"), "ms");
  expect_steps_2_to_3(trace, 0);
  // Nothing else in the directory (the temporary file was renamed).
  int files = 0;
  for (const auto& entry : fs::directory_iterator(profile)) files += entry.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST_F(Profile, EachRankWritesItsOwnTraceWithAllReducesOffTheMainThread) {
  REQUIRE_MPIEXEC();
  ensure_data();
  const fs::path profile = dir_ / "profile";
  std::vector<std::string> args = {
      "train",           "--data-dir", data_dir().string(), "--steps",       "4",
      "--profile-steps", "2:3",        "--profile-dir",     profile.string()};
  args.insert(args.end(), kTinyVit.begin(), kTinyVit.end());
  RunResult r = run(args, "timeout 120 " + mpi_prefix(2));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  for (int rank = 0; rank < 2; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    const json trace = read_trace(profile / ("trace-rank" + std::to_string(rank) + ".json"));
    expect_steps_2_to_3(trace, rank);
    const std::map<int64_t, std::string> names = thread_names(trace);
    const std::vector<json> model = events(trace, "forward", "VisionTransformer");
    ASSERT_FALSE(model.empty());
    const int64_t main_tid = model.front().at("tid");
    const std::vector<json> comm = events(trace, "comm");
    ASSERT_GE(comm.size(), 2u);  // at least one bucket per step
    for (const json& e : comm) {
      EXPECT_NE(e.at("tid"), main_tid) << e;
      EXPECT_EQ(names.at(e.at("tid")), "ddp-comm") << e;
      EXPECT_TRUE(e.at("name").get<std::string>().starts_with("all_reduce bucket ")) << e;
      EXPECT_GT(e.at("args").at("bytes").get<int64_t>(), 0) << e;
      EXPECT_EQ(e.at("args").at("dtype"), "f32") << e;
      EXPECT_TRUE(e.at("args").contains("bucket")) << e;
    }
  }
}

}  // namespace
}  // namespace dtrain::cli_test
