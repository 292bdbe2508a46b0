// Runs a user manages: the run directory (step-N checkpoints, the newest K kept, best/), --resume auto,
// the refusal to train over an existing run, eval from a checkpoint alone, what a checkpoint records,
// intervals in epochs, elapsed time across sessions, --version and --help, and a torchrun-style start.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <regex>

#include "tests/launch/cli_test_util.h"

namespace dtrain::cli_test {
namespace {

class Runs : public CliTest {
 protected:
  // The step-N directories of a run, sorted.
  std::vector<std::string> step_dirs(const fs::path& rundir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(rundir)) {
      const std::string name = e.path().filename().string();
      if (name.starts_with("step-")) out.push_back(name);
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  nlohmann::json state_of(const fs::path& checkpoint) {
    return nlohmann::json::parse(read_text(checkpoint / "state.json"));
  }
  std::vector<nlohmann::json> records(const fs::path& metrics, bool eval) {
    std::vector<nlohmann::json> out;
    for (const auto& r : read_jsonl(metrics)) {
      if (r.contains("split") == eval) out.push_back(r);
    }
    return out;
  }
};

// The same command line starts a run, continues it after an interruption, and, once it is done, says
// so; the data, optimizer and schedule continue where the checkpoint left them.
TEST_F(Runs, ResumeAutoStartsContinuesAndFinishes) {
  const fs::path rundir = dir_ / "rundir", metrics = dir_ / "m.jsonl";
  auto command = [&](const std::string& steps) {
    return std::vector<std::string>{"--steps",
                                    steps,
                                    "--checkpoint-dir",
                                    rundir.string(),
                                    "--checkpoint-interval",
                                    "2",
                                    "--log-interval",
                                    "1",
                                    "--metrics-file",
                                    metrics.string(),
                                    "--resume",
                                    "auto",
                                    "--schedule",
                                    "constant"};
  };
  RunResult a = train_tiny_vit(command("4"));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out.find("resuming"), std::string::npos) << a.out;
  EXPECT_EQ(step_dirs(rundir), (std::vector<std::string>{"step-00000002", "step-00000004"}));

  RunResult b = train_tiny_vit(command("7"));
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_NE(b.out.find("resuming at step 4 from " + (rundir / "step-00000004").string()),
            std::string::npos)
      << b.out;
  std::vector<int64_t> steps;
  for (const auto& r : records(metrics, false)) steps.push_back(r["step"].get<int64_t>());
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7}));
  const nlohmann::json state = state_of(rundir / "step-00000007");
  EXPECT_EQ(state["step"], 7);
  EXPECT_EQ(state["data"]["global_batch"], 7);  // 12 batches of 16 per epoch

  RunResult c = train_tiny_vit(command("7"));
  EXPECT_EQ(c.exit_code, 0) << c.err;
  EXPECT_NE(c.out.find("already finished"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("step 7 of 7"), std::string::npos) << c.out;
  EXPECT_EQ(c.out.find("throughput"), std::string::npos) << c.out;
  EXPECT_EQ(records(metrics, false).size(), 7u)
      << "the finished rundir was trained or logged again";
}

// A second run into the same directory or metrics file, without --resume, is refused before it
// touches either.
TEST_F(Runs, RerunWithoutResumeIsRefusedAndChangesNothing) {
  const fs::path rundir = dir_ / "rundir", metrics = dir_ / "m.jsonl";
  ASSERT_EQ(train_tiny_vit({"--steps", "2", "--checkpoint-dir", rundir.string(), "--metrics-file",
                            metrics.string()})
                .exit_code,
            0);
  const std::string model_before = read_text(rundir / "step-00000002" / "model.safetensors");
  const std::string metrics_before = read_text(metrics);
  ASSERT_FALSE(model_before.empty());
  RunResult again =
      train_tiny_vit({"--steps", "2", "--checkpoint-dir", rundir.string(), "--seed", "3"});
  expect_one_line_error(again, {rundir.string(), "--resume auto"});
  RunResult metrics_again = train_tiny_vit({"--steps", "2", "--metrics-file", metrics.string()});
  expect_one_line_error(metrics_again, {metrics.string(), "--resume auto"});
  EXPECT_EQ(read_text(rundir / "step-00000002" / "model.safetensors"), model_before);
  EXPECT_EQ(read_text(metrics), metrics_before);
}

// --keep-checkpoints K keeps the newest K step checkpoints; best/ holds the checkpoint of the best
// evaluation, which is not always the last.
TEST_F(Runs, KeepsTheNewestAndTheBest) {
  const fs::path rundir = dir_ / "rundir", metrics = dir_ / "m.jsonl";
  RunResult r =
      train_tiny_vit({"--steps", "8", "--checkpoint-dir", rundir.string(), "--checkpoint-interval",
                      "1", "--keep-checkpoints", "2", "--eval-interval", "2", "--lr", "0.02",
                      "--metrics-file", metrics.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(step_dirs(rundir), (std::vector<std::string>{"step-00000007", "step-00000008"}));
  const auto evals = records(metrics, true);
  ASSERT_EQ(evals.size(), 4u);
  size_t best = 0;
  for (size_t i = 1; i < evals.size(); ++i) {
    if (evals[i]["accuracy"].get<double>() > evals[best]["accuracy"].get<double>()) best = i;
  }
  const nlohmann::json state = state_of(rundir / "best");
  EXPECT_EQ(state["step"], evals[best]["step"]);
  EXPECT_EQ(state["eval"]["accuracy"], evals[best]["accuracy"]);
  // Loadable like any checkpoint: eval gives the recorded metrics again.
  RunResult eval = run({"eval", "--resume", (rundir / "best").string()});
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  char expected[64];
  std::snprintf(expected, sizeof expected, "accuracy %.4f", evals[best]["accuracy"].get<double>());
  EXPECT_NE(eval.out.find(expected), std::string::npos) << eval.out;
}

// A checkpoint records the whole configuration, the command line and the version; eval takes the
// model and data settings from it, so --resume alone evaluates a non-default model.
TEST_F(Runs, EvalNeedsOnlyTheCheckpoint) {
  const fs::path rundir = dir_ / "rundir";
  ensure_data();
  RunResult t = train({"--steps",
                       "3",
                       "--dim",
                       "24",
                       "--mlp-dim",
                       "40",
                       "--depth",
                       "1",
                       "--heads",
                       "2",
                       "--patch",
                       "7",
                       "--batch-size",
                       "16",
                       "--eval-batches",
                       "2",
                       "--threads",
                       "1",
                       "--progress",
                       "0",
                       "--data-dir",
                       data_dir().string(),
                       "--checkpoint-dir",
                       rundir.string()});
  ASSERT_EQ(t.exit_code, 0) << t.err;
  const nlohmann::json state = state_of(rundir / "step-00000003");
  EXPECT_EQ(state["config"]["dim"], "24");
  EXPECT_EQ(state["config"]["mlp-dim"], "40");
  EXPECT_EQ(state["config"]["data-dir"], data_dir().string());
  EXPECT_EQ(state["command_line"][0], "dtrain");
  EXPECT_EQ(state["command_line"][1], "train");
  EXPECT_NE(std::find(state["command_line"].begin(), state["command_line"].end(), "24"),
            state["command_line"].end());
  RunResult version = run({"--version"});
  ASSERT_EQ(version.exit_code, 0);
  EXPECT_TRUE(version.out.starts_with("dtrain ")) << version.out;
  EXPECT_EQ(state["dtrain_version"].get<std::string>() + "\n", version.out);

  // The run directory stands for its latest checkpoint; the summary's eval equals eval's.
  RunResult eval = run({"eval", "--resume", rundir.string()});
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(t.out, m, std::regex("eval: (accuracy [0-9.]+  loss [0-9.]+)")))
      << t.out;
  EXPECT_NE(eval.out.find(m[1].str()), std::string::npos) << eval.out << " vs " << t.out;
  // One config file serves train and eval: eval skips the file's training options.
  write_text(dir_ / "run.ini", "lr = 0.5\nwarmup-steps = 3\neval-batches = 2\n");
  RunResult with_file =
      run({"eval", "--resume", rundir.string(), "--config", (dir_ / "run.ini").string()});
  ASSERT_EQ(with_file.exit_code, 0) << with_file.err;
  EXPECT_NE(with_file.out.find(m[1].str()), std::string::npos) << with_file.out;
  // The command line still wins: another width does not fit the weights, and says so.
  RunResult wrong = run({"eval", "--resume", rundir.string(), "--dim", "32"});
  EXPECT_NE(wrong.exit_code, 0);
  EXPECT_NE(wrong.err.find("cls_token"), std::string::npos) << wrong.err;
}

// Intervals in epochs: 12 batches of 16 make an epoch of the 192-sample set.
TEST_F(Runs, IntervalsInEpochsAndAReadableEvalLine) {
  const fs::path metrics = dir_ / "m.jsonl";
  RunResult r = train_tiny_vit({"--epochs", "2", "--eval-interval", "1ep", "--log-interval",
                                "0.5ep", "--metrics-file", metrics.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<int64_t> evals, logs;
  for (const auto& e : records(metrics, true)) evals.push_back(e["step"].get<int64_t>());
  for (const auto& e : records(metrics, false)) logs.push_back(e["step"].get<int64_t>());
  EXPECT_EQ(evals, (std::vector<int64_t>{12, 24}));
  EXPECT_EQ(logs, (std::vector<int64_t>{6, 12, 18, 24}));
  EXPECT_TRUE(std::regex_search(
      r.out, std::regex("eval @ step 12: accuracy 0\\.[0-9]{4}  loss [0-9]+\\.[0-9]{4}\n")))
      << r.out;
  expect_one_line_error(train_tiny_vit({"--steps", "2", "--eval-interval", "1.5"}),
                        {"--eval-interval", "1ep"});
  expect_one_line_error(train_tiny_vit({"--steps", "2", "--eval-interval", "xep"}),
                        {"--eval-interval"});
}

// elapsed_s counts the run's training time over its sessions; the ETA only this session's pace.
TEST_F(Runs, ElapsedTimeContinuesAfterResume) {
  const fs::path rundir = dir_ / "rundir", metrics = dir_ / "m.jsonl";
  auto command = [&](const std::string& steps) {
    return std::vector<std::string>{
        "--steps",        steps, "--checkpoint-dir", rundir.string(), "--resume", "auto",
        "--log-interval", "1",   "--metrics-file",   metrics.string()};
  };
  ASSERT_EQ(train_tiny_vit(command("3")).exit_code, 0);
  const double saved = state_of(rundir / "step-00000003")["elapsed_s"].get<double>();
  EXPECT_GT(saved, 0);
  ASSERT_EQ(train_tiny_vit(command("5")).exit_code, 0);
  const auto logged = records(metrics, false);
  ASSERT_EQ(logged.size(), 5u);
  EXPECT_GT(logged[3]["elapsed_s"].get<double>(), saved);
  EXPECT_GT(state_of(rundir / "step-00000005")["elapsed_s"].get<double>(),
            logged[3]["elapsed_s"].get<double>() - 1e-9);
}

// Memory in the metrics and the summary.
TEST_F(Runs, PeakMemoryIsReported) {
  const fs::path metrics = dir_ / "m.jsonl";
  RunResult r =
      train_tiny_vit({"--steps", "2", "--log-interval", "1", "--metrics-file", metrics.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const auto& record : records(metrics, false)) {
    ASSERT_TRUE(record.contains("peak_rss_mb")) << record.dump();
    EXPECT_GT(record["peak_rss_mb"].get<double>(), 1.0);
  }
  EXPECT_TRUE(std::regex_search(r.out, std::regex("peak memory [0-9]+ MiB"))) << r.out;
}

// --help by purpose; eval's lists only what eval uses.
TEST_F(Runs, HelpIsGroupedAndEvalListsItsOwn) {
  RunResult train_help = run({"train", "--help"});
  ASSERT_EQ(train_help.exit_code, 0);
  for (const char* group :
       {"Model:", "Data:", "Length and optimisation:", "Numerics and devices:", "Distributed:",
        "Checkpoints and evaluation:", "Output and profiling:"}) {
    EXPECT_NE(train_help.out.find(group), std::string::npos) << group;
  }
  RunResult eval_help = run({"eval", "--help"});
  ASSERT_EQ(eval_help.exit_code, 0);
  for (const char* used : {"--resume", "--dim", "--data-dir", "--device", "--eval-batches"}) {
    EXPECT_NE(eval_help.out.find(used), std::string::npos) << used;
  }
  for (const char* unused :
       {"--lr ", "--warmup-steps", "--checkpoint-interval", "--zero", "--profile-steps"}) {
    EXPECT_EQ(eval_help.out.find(unused), std::string::npos) << unused;
  }
  RunResult top = run({"--help"});
  EXPECT_EQ(top.out.find("matmul"), std::string::npos) << top.out;
  EXPECT_NE(top.out.find("--version"), std::string::npos) << top.out;
}

// Started as torchrun starts workers, each process would train alone: one line saying how to launch.
TEST_F(Runs, TorchrunStyleStartIsRefused) {
  ensure_data();
  std::vector<std::string> args = {"train", "--steps", "1", "--data-dir", data_dir().string()};
  args.insert(args.end(), kTinyVit.begin(), kTinyVit.end());
  RunResult r = run(args, "env WORLD_SIZE=4 RANK=1 LOCAL_RANK=1 ");
  expect_one_line_error(r, {"WORLD_SIZE=4", "mpirun -np 4"});
}

// On a terminal, alone: one live line redrawn in place, with a rate from the first step. Under a
// launcher (Open MPI gives every rank a terminal): plain lines from rank 0 only, so `| tee log` keeps
// a readable log. `script` runs the command on a pseudo-terminal.
TEST_F(Runs, LiveLineAloneAndPlainLinesUnderALauncher) {
  ensure_data();
  std::string tiny;
  for (size_t i = 0; i < kTinyVit.size(); i += 2) {
    if (kTinyVit[i] != "--progress") tiny += " " + kTinyVit[i] + " " + kTinyVit[i + 1];
  }
  const std::string command = shell_quote(kDtrain) +
                              " train --steps 4 --log-interval 2 --progress 1 --data-dir " +
                              shell_quote(data_dir().string()) + tiny;
  RunResult alone = run_shell("script -qec " + shell_quote(command) + " /dev/null", dir_);
  ASSERT_EQ(alone.exit_code, 0) << alone.out << alone.err;
  EXPECT_NE(alone.out.find("\033[K"), std::string::npos) << "no live line on a terminal:\n"
                                                         << alone.out;
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(alone.out, m, std::regex("step 1/4  loss -  lr [^ ]+  ([0-9]+) images/s")))
      << alone.out;
  EXPECT_GT(std::stod(m[1]), 0) << "the live line shows no rate before the first log interval";
  if (mpiexec().empty()) GTEST_SKIP() << "no mpiexec for the launcher half";
  RunResult launched =
      run_shell("script -qec " + shell_quote(mpi_prefix(2) + command) + " /dev/null", dir_);
  ASSERT_EQ(launched.exit_code, 0) << launched.out << launched.err;
  EXPECT_EQ(launched.out.find("\033[K"), std::string::npos) << "a live line under the launcher:\n"
                                                            << launched.out;
  EXPECT_EQ(count_lines(launched.out, "step 2/4  loss"), 1) << launched.out;
  EXPECT_EQ(count_lines(launched.out, "step 4/4  loss"), 1) << launched.out;
}

}  // namespace
}  // namespace dtrain::cli_test
