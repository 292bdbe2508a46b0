// `dtrain bench scaling` and `dtrain bench project` run as a user runs them. What is checked is the
// arithmetic of their tables (speed-up, efficiency, the model's error, the projection's step split and
// compute time from FLOPs) and their one-line errors, never a timing.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "launch/cli_test_util.h"
#include "models/vit.h"

using namespace dtrain::cli_test;

namespace {

// A ViT whose step takes milliseconds (one block of width 16 on 7x7 patches of 28x28 images).
const std::vector<std::string> kTinyBenchVit = {
    "--model", "vit",       "--depth", "1",       "--dim", "16",        "--heads",
    "2",       "--mlp-dim", "32",      "--patch", "7",     "--threads", "1"};

class BenchScaling : public CliTest {
 protected:
  RunResult bench(const std::string& what, std::vector<std::string> args) {
    args.insert(args.begin(), {"bench", what});
    args.insert(args.end(), kTinyBenchVit.begin(), kTinyBenchVit.end());
    return run(args);
  }
  std::string launcher() const {
    return shell_quote(mpiexec()) + " --allow-run-as-root --oversubscribe -np {n}";
  }
};

void expect_bench_error(const RunResult& r, const std::string& mention) {
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(r.err.starts_with("dtrain bench: error: ")) << r.err;
  EXPECT_NE(r.err.find(mention), std::string::npos) << "no '" << mention << "' in: " << r.err;
}

double num(const nlohmann::json& j, const char* key) { return j.at(key).get<double>(); }

}  // namespace

TEST_F(BenchScaling, SweepWritesTheTableJsonAndTheModelsError) {
  REQUIRE_MPIEXEC();
  const fs::path out = dir_ / "sweep";
  // The link is given: a fitted one depends on how busy the machine is (and without one the sweep runs
  // on without the model's columns, which the calibration test below accepts).
  RunResult r = bench("scaling", {"--ranks", "2,1", "--scaling", "both", "--out", out.string(),
                                  "--plot", "0", "--launcher", launcher(), "--steps", "2",
                                  "--batch-size", "8", "--link", "5,2.5"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("# weak scaling: batch 8 per rank"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("# strong scaling: global batch 8"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("# ring link as given: alpha 5.0 us, 2.50 GB/s"), std::string::npos)
      << r.out;
  for (const char* name : {"weak-np1.log", "weak-np2.log", "strong-np1.log", "strong-np2.log"}) {
    EXPECT_TRUE(fs::exists(out / name)) << name;
  }
  const nlohmann::json sweep = nlohmann::json::parse(read_text(out / "scaling.json"));
  EXPECT_EQ(sweep.at("unit"), "images");
  EXPECT_EQ(num(sweep.at("link"), "bandwidth_gbs"), 2.5);
  const nlohmann::json& points = sweep.at("points");
  ASSERT_EQ(points.size(), 4u);
  const std::vector<std::pair<std::string, int>> order = {
      {"weak", 1}, {"weak", 2}, {"strong", 1}, {"strong", 2}};
  const std::vector<int> batch_per_rank = {8, 8, 8, 4};
  for (size_t i = 0; i < points.size(); ++i) {
    const nlohmann::json& p = points[i];
    const nlohmann::json& base = points[i < 2 ? 0 : 2];
    const int ranks = p.at("ranks");
    EXPECT_EQ(p.at("mode"), order[i].first);
    EXPECT_EQ(ranks, order[i].second);
    EXPECT_EQ(p.at("batch_per_rank"), batch_per_rank[i]);
    const double step = num(p, "step_ms"), compute = num(p, "compute_ms");
    EXPECT_GT(step, 0.0);
    EXPECT_GT(compute, 0.0);
    // images/s = images per step over the step; speed-up against one rank; efficiency = speed-up / ranks.
    EXPECT_NEAR(num(p, "throughput"), batch_per_rank[i] * ranks / (step / 1e3),
                1e-6 * num(p, "throughput"));
    EXPECT_NEAR(num(p, "speedup"), num(p, "throughput") / num(base, "throughput"), 1e-12);
    EXPECT_NEAR(num(p, "efficiency"), num(p, "speedup") / ranks, 1e-12);
    EXPECT_NEAR(num(p, "exposed_ms"), step - compute, 1e-9);
    EXPECT_NEAR(num(p, "vs_independent"), compute / step, 1e-12);
    // The model's compute is the point's independent processes, plus whatever communication it predicts.
    EXPECT_GE(num(p, "predicted_step_ms"), compute - 1e-9);
    EXPECT_NEAR(num(p, "error_percent"), 100.0 * (num(p, "predicted_step_ms") / step - 1.0), 1e-9);
  }
  EXPECT_NEAR(num(points[0], "predicted_step_ms"), num(points[0], "compute_ms"),
              1e-9);  // one rank: no comm
}

// Without --link the sweep fits one to `bench allreduce` at its smallest world size above one: either a
// link with a positive bandwidth, or (timings too noisy to fit) one line saying so and no model columns.
TEST_F(BenchScaling, CalibratesTheLinkOrSaysWhyNot) {
  REQUIRE_MPIEXEC();
  const fs::path out = dir_ / "sweep";
  RunResult r =
      bench("scaling", {"--ranks", "1,2", "--scaling", "weak", "--out", out.string(), "--plot", "0",
                        "--launcher", launcher(), "--steps", "1", "--batch-size", "4"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(fs::exists(out / "allreduce-np2.json"));
  const nlohmann::json sweep = nlohmann::json::parse(read_text(out / "scaling.json"));
  if (sweep.at("link").is_null()) {
    EXPECT_NE(
        r.out.find("# no model beside the points: the all-reduce times at 2 ranks did not fit"),
        std::string::npos)
        << r.out;
    EXPECT_FALSE(sweep.at("points")[1].contains("predicted_step_ms"));
  } else {
    EXPECT_EQ(sweep.at("link").at("fitted_at_ranks"), 2);
    EXPECT_GT(num(sweep.at("link"), "bandwidth_gbs"), 0.0);
    EXPECT_TRUE(sweep.at("points")[1].contains("predicted_step_ms"));
  }
}

TEST_F(BenchScaling, BadInputIsOneLine) {
  expect_bench_error(bench("scaling", {"--ranks", "1,x", "--out", (dir_ / "a").string()}),
                     "--ranks '1,x'");
  expect_bench_error(bench("scaling", {"--ranks", "1,3", "--scaling", "strong", "--batch-size", "8",
                                       "--out", (dir_ / "b").string()}),
                     "splits --batch-size 8 over 3 ranks");
  expect_bench_error(bench("scaling", {"--scaling", "sideways"}), "--scaling 'sideways'");
  expect_bench_error(bench("scaling", {"--ranks", "1,2", "--launcher", "mpirun -np", "--out",
                                       (dir_ / "c").string()}),
                     "has no {n}");
  // A launcher that fails: the error names the log that holds its output.
  const RunResult failed = bench("scaling", {"--ranks", "1,2", "--launcher", "false {n}", "--steps",
                                             "1", "--out", (dir_ / "d").string()});
  expect_bench_error(failed, (dir_ / "d" / "allreduce-np2.log").string());
  for (const char* bad : {"5", "-1,2", "5,0", "x,3", "5,3,1"}) {
    expect_bench_error(
        bench("scaling", {"--ranks", "1", "--link", bad, "--out", (dir_ / "e").string()}),
        std::string("--link '") + bad + "' must be ALPHA_US,GBS");
  }
  expect_bench_error(bench("project", {"--cluster", "nope"}), "h100-nvlink-ib400");
  expect_bench_error(bench("project", {"--mfu", "1.5"}), "--mfu");
}

TEST_F(BenchScaling, ProjectionSplitsTheStepAndDerivesComputeFromFlops) {
  const fs::path json = dir_ / "projection.json";
  RunResult r = bench("project", {"--cluster", "a100-nvlink-ib200", "--gpus", "16,1,8", "--mfu",
                                  "0.5", "--batch-size", "4", "--profile-batch", "2", "--steps",
                                  "1", "--json", json.string()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("# cluster a100-nvlink-ib200: 8 GPUs per node"), std::string::npos) << r.out;
  const nlohmann::json p = nlohmann::json::parse(read_text(json));
  // Compute per GPU step: 3 x forward FLOPs x 4 images at 0.5 x 312 TFLOP/s, with the optimizer's share
  // of the measured step added in proportion.
  dtrain::models::VitConfig vc = dtrain::models::VitConfig::preset("fm");
  vc.dim = 16, vc.depth = 1, vc.heads = 2, vc.mlp_dim = 32, vc.patch_size = 7;
  const double flops_s = 3.0 * dtrain::models::vit_forward_flops(vc) * 4 / (0.5 * 312e12);
  const nlohmann::json& prof = p.at("profile");
  const double fb = num(prof, "forward_ms") + num(prof, "backward_ms");
  EXPECT_NEAR(num(p, "compute_ms"), flops_s * 1e3 * (1.0 + num(prof, "optimizer_ms") / fb),
              1e-9 * num(p, "compute_ms"));
  const nlohmann::json& rows = p.at("rows");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].at("gpus"), 1);
  EXPECT_EQ(rows[0].at("largest_bucket_algorithm"), "none");
  EXPECT_EQ(num(rows[0], "comm_ms"), 0.0);
  EXPECT_DOUBLE_EQ(num(rows[0], "efficiency"), 1.0);
  EXPECT_EQ(rows[1].at("nodes"), 1);
  EXPECT_EQ(rows[2].at("nodes"), 2);
  EXPECT_TRUE(rows[2].at("largest_bucket_algorithm").get<std::string>().starts_with("hier("))
      << rows[2];
  for (const nlohmann::json& row : rows) {
    const double step = num(row, "step_ms");
    EXPECT_NEAR(step, num(p, "compute_ms") + num(row, "exposed_ms"), 1e-9 * step);
    EXPECT_NEAR(num(row, "efficiency"), num(p, "compute_ms") / step, 1e-12);
    EXPECT_NEAR(num(row, "throughput"), row.at("gpus").get<double>() * 4 / (step / 1e3),
                1e-9 * num(row, "throughput"));
    EXPECT_LE(num(row, "exposed_ms"), num(row, "comm_ms") + 1e-12);
    // 25 MB (the run's cap) is among the caps searched, so the best is at least as good.
    EXPECT_GE(num(row, "best_efficiency"), num(row, "efficiency") - 1e-12);
  }
  EXPECT_LT(num(rows[2], "efficiency"), num(rows[1], "efficiency"));  // leaving the node costs
}
