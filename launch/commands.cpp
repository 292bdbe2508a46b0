#include "launch/commands.h"

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "distributed/mpi/process_group_mpi.h"
#ifdef DTRAIN_WITH_CUDA
#include "distributed/nccl/process_group_nccl.h"
#endif
#include "launch/checkpoints.h"
#include "launch/config.h"
#include "launch/predict.h"
#include "launch/progress.h"
#include "launch/stop_signal.h"
#include "launch/trainer.h"

namespace dtrain::launch {

namespace {

// Parses the options; under a launcher a bad option is not thrown at once but agreed on with the
// other ranks first (see agree_on_options), so the job reports it once.
bool parse_options(const std::vector<std::string>& args, TrainConfig& config,
                   const char* subcommand, std::string& error) {
  try {
    return parse_train_config(args, config, subcommand);
  } catch (const Error& e) {
    if (!dist::launched_by_mpi_launcher()) throw;
    error = e.what();
    config = TrainConfig{};  // a well-formed stand-in, to start the process group with
    return true;
  }
}

// Every rank parsed its options without error, and the options that must match do: a rank started with
// another --eval-interval would issue other collectives and train something else. One all-gather of
// each rank's settings; the first difference is named with every rank's value.
void agree_on_options(dist::ProcessGroup& pg, const TrainConfig& config, const std::string& error) {
  dist::run_on_every_rank(pg, [&] { DTRAIN_CHECK(error.empty(), error); });
  if (pg.size() == 1) return;
  const std::vector<Setting> mine = settings(config);
  std::string text;
  for (const Setting& s : mine) {
    if (s.scope != Setting::local) text += s.value + '\0';
  }
  const std::vector<std::string> all = dist::all_gather_strings(pg, text);
  std::vector<std::vector<std::string>> values;  // [rank][setting]
  for (const std::string& t : all) {
    values.emplace_back();
    for (size_t start = 0, end; (end = t.find('\0', start)) != std::string::npos; start = end + 1) {
      values.back().push_back(t.substr(start, end - start));
    }
  }
  size_t index = 0;
  for (const Setting& s : mine) {
    if (s.scope == Setting::local) continue;
    const size_t i = index++;
    auto value_of = [&](size_t r) {
      return i < values[r].size() ? values[r][i] : std::string("?");
    };
    bool differs = false;
    for (size_t r = 1; r < values.size(); ++r) differs = differs || value_of(r) != value_of(0);
    if (!differs) continue;
    // "rank 0 has 0; ranks 1, 3 have 5": the ranks grouped by value, in order of first appearance.
    std::vector<std::pair<std::string, std::vector<size_t>>> groups;
    for (size_t r = 0; r < values.size(); ++r) {
      auto g = std::find_if(groups.begin(), groups.end(),
                            [&](const auto& x) { return x.first == value_of(r); });
      if (g == groups.end())
        groups.push_back({value_of(r), {r}});
      else
        g->second.push_back(r);
    }
    std::string detail;
    for (const auto& [value, ranks] : groups) {
      detail += detail.empty() ? "" : "; ";
      detail += ranks.size() == 1 ? "rank " : "ranks ";
      for (size_t k = 0; k < ranks.size(); ++k)
        detail += (k ? ", " : "") + std::to_string(ranks[k]);
      detail += (ranks.size() == 1 ? " has '" : " have '") + value + "'";
    }
    throw dist::AllRanksError("ranks disagree on --" + s.name + ": " + detail +
                              "; start every rank with the same options");
  }
}

// MPI always (it starts the job, serves CPU tensors and agrees on the options); NCCL on top of it when
// training on GPUs, once the ranks agree that they all do.
std::shared_ptr<dist::ProcessGroup> make_process_group(const TrainConfig& config,
                                                       const std::string& error) {
  dist::ProcessGroupOptions options{.timeout = std::chrono::milliseconds(
                                        static_cast<int64_t>(config.collective_timeout_s * 1000)),
                                    .debug_collectives = config.debug_collectives};
  auto mpi = dist::ProcessGroupMPI::create(options);
  agree_on_options(*mpi, config, error);
  if (Device::parse(config.device).is_cpu()) return mpi;
#ifdef DTRAIN_WITH_CUDA
  return dist::ProcessGroupNCCL::create(mpi, pick_device(config).index, options);
#else
  throw Error("--device " + config.device + " needs a CUDA build of dtrain; use --device cpu");
#endif
}

}  // namespace

int report_failure(const std::string& command, const std::string& message,
                   bool same_on_every_rank) {
  const bool job = dist::launched_by_mpi_launcher();
  const int rank = dist::world_rank();
  if (same_on_every_rank) {
    // Every rank holds the same message: rank 0 prints it, and all end normally with a failure status.
    if (rank == 0)
      std::cerr << "dtrain " << command << ": error: " << Error::printable(message) << std::endl;
    dist::finalize_mpi();
    return 1;
  }
  std::cerr << "dtrain " << command
            << ": error: " << (job ? "rank " + std::to_string(rank) + ": " : "")
            << Error::printable(message) << std::endl;
  // Only a multi-rank job has others to end; abort_job takes the whole MPI job down with exit code 1.
  if (job) dist::abort_job("");
  return 1;
}

namespace {

// Started as torchrun starts its workers (RANK and WORLD_SIZE set, no MPI launcher), each process
// would train alone into the same directories.
void refuse_foreign_launcher() {
  if (dist::launched_by_mpi_launcher()) return;
  const char* world = std::getenv("WORLD_SIZE");
  DTRAIN_CHECK(
      world == nullptr || std::atoi(world) <= 1, "WORLD_SIZE=", world,
      " is set but no MPI launcher started this process (torchrun-style), so each process would "
      "train alone; start dtrain with `mpirun -np ",
      world, " dtrain train ...` (or `srun --mpi=pmix`)");
}

// The summary line of a run, on rank 0.
void print_summary(const TrainResult& r) {
  char line[320];
  if (!r.finished_at.empty()) {
    std::cout << "dtrain: the run is already finished (" << r.finished_at << " is at step "
              << r.steps << " of " << r.steps << ")"
              << (r.eval.empty() ? "" : "; its last eval: " + format_metrics(r.eval))
              << "; give more --steps or --epochs to train on" << std::endl;
    return;
  }
  if (r.stopped_by != 0) {
    std::cout << "stopped by " << signal_name(r.stopped_by) << " at step " << r.steps
              << (r.checkpoint.empty()
                      ? std::string(" (no --checkpoint-dir: nothing saved)")
                      : ": checkpoint " + r.checkpoint +
                            "; the same command with --resume auto continues the run")
              << std::endl;
    return;
  }
  std::snprintf(line, sizeof line,
                "done: %lld steps, final loss %.4f, throughput %.1f %s/s, peak memory %.0f MiB",
                static_cast<long long>(r.steps), r.final_loss, r.items_per_s, r.unit.c_str(),
                r.peak_rss_mb);
  std::cout << line;
  if (r.peak_device_mb > 0) {
    std::snprintf(line, sizeof line, " (%stensors %.0f MiB)", r.on_gpu ? "GPU " : "",
                  r.peak_device_mb);
    std::cout << line;
  }
  if (!r.eval.empty()) std::cout << "; eval: " << format_metrics(r.eval);
  std::cout << std::endl;
}

}  // namespace

int run_train(const std::vector<std::string>& args) {
  TrainConfig config;
  std::string error;
  if (!parse_options(args, config, "train", error)) return 0;
  refuse_foreign_launcher();
  TrainResult r;
  {
    auto pg = make_process_group(config, error);
    r = train(config, pg);
    if (pg->rank() == 0) print_summary(r);
  }
  dist::finalize_mpi();
  return r.stopped_by != 0 ? 128 + r.stopped_by : 0;
}

int run_eval(const std::vector<std::string>& args) {
  TrainConfig config;
  std::string error;
  if (!parse_options(args, config, "eval", error)) return 0;
  refuse_foreign_launcher();
  if (error.empty() && config.resume.empty()) {
    error =
        "dtrain eval needs --resume DIR (a checkpoint, or a run's --checkpoint-dir for its latest)";
    if (!dist::launched_by_mpi_launcher()) throw Error(error);
  }
  if (error.empty()) {
    // The model and data settings the checkpoint was trained with, under the command line's.
    try {
      config = load_run_config(config.resume, args, "eval");
    } catch (const Error& e) {
      if (!dist::launched_by_mpi_launcher()) throw;
      error = e.what();
    }
  }
  {
    auto pg = make_process_group(config, error);
    nlohmann::json metrics = evaluate_checkpoint(config, *pg);
    if (pg->rank() == 0)
      std::cout << "eval " << config.resume << (config.split == "test" ? " (test split)" : "")
                << ": " << format_metrics(metrics) << std::endl;
  }
  dist::finalize_mpi();
  return 0;
}

int run_predict(const std::vector<std::string>& args) {
  TrainConfig config;
  PredictRequest request;
  if (!parse_predict_options(args, config, request)) return 0;
  for (const std::string& line : predict(config, request)) std::cout << line << '\n';
  std::cout << std::flush;
  return 0;
}

}  // namespace dtrain::launch
