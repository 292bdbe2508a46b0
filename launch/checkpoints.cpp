#include "launch/checkpoints.h"

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/data/seeding.h"
#include "core/error.h"
#include "core/io/checkpoint.h"
#include "core/tensor/random.h"

namespace dtrain::launch {

namespace fs = std::filesystem;

namespace {

// Step checkpoints under `run_dir` that are whole (their state.json is there), oldest first.
std::vector<std::pair<int64_t, fs::path>> step_checkpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(run_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with("step-") || !entry.is_directory(ec)) continue;
    int64_t step = -1;
    const char* first = name.data() + 5;
    const char* last = name.data() + name.size();
    auto [end, err] = std::from_chars(first, last, step);
    if (err != std::errc() || end != last || step < 0) continue;
    if (fs::is_regular_file(entry.path() / kCheckpointStateFile, ec))
      out.emplace_back(step, entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool is_checkpoint(const std::string& path) {
  std::error_code ec;
  if (fs::is_regular_file(fs::path(path) / kCheckpointStateFile, ec)) return true;
  return !fs::exists(path, ec) &&
         Checkpoint::exists(path);  // a copy left aside by a cut-short commit
}

// Marks a directory as a run's: dtrain adds checkpoints to it and removes the ones it wrote.
constexpr const char* kRunMarker = ".dtrain-run";

// A metrics file that already holds records: a fresh run would overwrite them.
bool holds_records(const std::string& path) {
  std::error_code ec;
  return !path.empty() && fs::is_regular_file(path, ec) && fs::file_size(path, ec) > 0;
}

}  // namespace

std::string step_checkpoint_name(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld", static_cast<long long>(step));
  return name;
}

std::string latest_checkpoint(const std::string& run_dir) {
  const auto all = step_checkpoints(run_dir);
  return all.empty() ? std::string() : all.back().second.string();
}

std::string resolve_checkpoint(const std::string& path) {
  if (is_checkpoint(path)) return path;
  std::string latest = latest_checkpoint(path);
  DTRAIN_CHECK(
      !latest.empty(), "no checkpoint at ", path,
      ": it is neither a checkpoint (state.json) nor a run directory with step-N checkpoints; "
      "give a run's --checkpoint-dir or one of its checkpoints");
  return latest;
}

std::map<std::string, std::string> recorded_settings(const std::string& checkpoint_dir) {
  Checkpoint ck(checkpoint_dir);
  return parse_train_state(ck.json(), ck.dir()).config;
}

TrainConfig load_run_config(const std::string& checkpoint_dir, const std::vector<std::string>& args,
                            const char* subcommand) {
  const std::string dir = resolve_checkpoint(checkpoint_dir);
  TrainConfig config;
  parse_train_config(args, config, subcommand, recorded_settings(dir), "checkpoint " + dir);
  config.resume = dir;
  return config;
}

std::string load_initial_weights(const std::string& path, Workload& workload) {
  const std::string dir = resolve_checkpoint(path);
  Checkpoint ck(dir);
  const NamedTensors saved = ck.tensors(kCheckpointModelFile).tensors();
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : saved) by_name[name] = &t;
  NamedTensors merged = workload.checkpoint_state();
  int64_t taken = 0, fresh = 0;
  std::string kept;
  constexpr int64_t kNamed = 6;  // fresh tensors named in the line; the rest are counted
  for (auto& [name, t] : merged) {
    auto it = by_name.find(name);
    if (it != by_name.end() && it->second->shape() == t.shape()) {
      t = *it->second;
      ++taken;
      by_name.erase(it);
    } else if (++fresh <= kNamed) {
      kept += (kept.empty() ? "" : ", ") + name + " " + shape_str(t.shape()) +
              (it == by_name.end() ? "" : " (checkpoint " + shape_str(it->second->shape()) + ")");
    }
  }
  if (fresh > kNamed) kept += " and " + std::to_string(fresh - kNamed) + " more";
  DTRAIN_CHECK(
      taken > 0, "--init-from ", dir, ": none of its ", saved.size(),
      " model tensors fits this model by name and shape: give a checkpoint of the same --model");
  workload.load_checkpoint_state(merged);
  return "initialised from " + dir + ": " + std::to_string(taken) + " of " +
         std::to_string(merged.size()) + " tensors" +
         (kept.empty() ? "" : "; newly initialised: " + kept) +
         (by_name.empty() ? ""
                          : "; " + std::to_string(by_name.size()) + " checkpoint tensors unused");
}

bool higher_is_better(const std::string& metric) {
  return metric == "accuracy" || metric == "bleu";
}

RunCheckpoints::RunCheckpoints(const TrainConfig& c, int rank, int64_t total_steps) : config_(c) {
  const std::string& run = c.checkpoint_dir;
  if (c.resume == "auto") {
    resume_dir_ = is_checkpoint(run) ? run : latest_checkpoint(run);
  } else if (!c.resume.empty()) {
    resume_dir_ = resolve_checkpoint(c.resume);
  }
  if (!run.empty()) {
    std::error_code ec;
    DTRAIN_CHECK(!fs::exists(run, ec) || fs::is_directory(run, ec), "--checkpoint-dir ", run,
                 " exists and is not a directory; choose a directory for the run's checkpoints");
    // A directory that is neither empty nor a run's or checkpoint dtrain wrote is the user's: refused
    // whole, so nothing in it can be mixed up with checkpoints.
    const bool ours = !fs::exists(run, ec) || fs::is_empty(run, ec) ||
                      fs::exists(fs::path(run) / kRunMarker, ec) || is_checkpoint(run);
    if (!ours) {
      std::string listing;
      int shown = 0;
      for (const auto& entry : fs::directory_iterator(run, ec)) {
        listing += shown++ == 3 ? ", ..."
                                : (listing.empty() ? "" : ", ") + entry.path().filename().string();
        if (shown > 3) break;
      }
      throw Error("--checkpoint-dir " + run +
                  " is a directory that dtrain did not write (it holds " + listing +
                  "); choose a new or empty directory for the run's checkpoints");
    }
    const std::string latest = latest_checkpoint(run);
    const bool has_best = Checkpoint::exists((fs::path(run) / "best").string());
    const bool has_any = !latest.empty() || has_best || is_checkpoint(run);
    if (resume_dir_.empty()) {
      DTRAIN_CHECK(
          !has_any, "--checkpoint-dir ", run, " holds a run's checkpoints",
          latest.empty() ? std::string() : " (latest " + fs::path(latest).filename().string() + ")",
          ": add --resume auto to continue it, or choose another --checkpoint-dir");
    } else {
      // Continuing into RUN is only for the run RUN holds: the checkpoint resumed must be RUN's own.
      const fs::path resumed_run = fs::weakly_canonical(fs::path(resume_dir_), ec).parent_path();
      const bool own = is_checkpoint(run) || fs::weakly_canonical(run, ec) == resumed_run ||
                       fs::weakly_canonical(run, ec) == fs::weakly_canonical(resume_dir_, ec);
      DTRAIN_CHECK(!has_any || own, "--checkpoint-dir ", run,
                   " holds another run's checkpoints than ", resume_dir_,
                   ": resume into an empty directory, or use --resume auto");
    }
    if (!is_checkpoint(run) && has_best) {
      best_eval_ =
          parse_train_state(Checkpoint((fs::path(run) / "best").string()).json(), run + "/best")
              .eval;
    }
  }
  if (rank == 0 && resume_dir_.empty() && c.resume != "auto") {
    DTRAIN_CHECK(!holds_records(c.metrics_file), "--metrics-file ", c.metrics_file,
                 " already holds a run's records: add --resume auto (with --checkpoint-dir) to "
                 "continue that "
                 "run, or choose another --metrics-file");
  }
  if (!resume_dir_.empty()) {
    Checkpoint ck(resume_dir_);
    resumed_ = parse_train_state(ck.json(), ck.dir());
    check_resume_compatible(c, total_steps, resumed_, ck.dir());
  }
}

namespace {
// Loads a checkpoint's tensors, naming the checkpoint when they do not fit the model or optimizer.
template <class Load>
void load_from(const Checkpoint& ck, const char* what, Load load) {
  try {
    load();
  } catch (const Error& e) {
    throw Error("checkpoint " + ck.dir() + ": its " + what + " does not fit this run: " + e.what());
  }
}
}  // namespace

void RunCheckpoints::restore(TrainingParts p, dist::ProcessGroup& pg) const {
  const Checkpoint ck(resume_dir_);
  dist::run_on_every_rank(pg, [&] {
    load_from(ck, "model", [&] {
      p.workload.load_checkpoint_state(ck.tensors(kCheckpointModelFile).tensors());
    });
  });
  // The optimizer loads on every rank together: a sharded one (ZeRO-1) keeps its part.
  optim::OptimizerState state{ck.tensors(kCheckpointOptimizerFile).tensors(), resumed_.optimizer};
  dist::run_on_every_rank(pg, [&] {
    load_from(ck, "optimizer state", [&] { p.optimizer.load_state_dict(state); });
    load_from(ck, "scheduler state", [&] { p.scheduler.load_state_dict(resumed_.scheduler); });
  });
  p.scaler.load_state({resumed_.loss_scale, resumed_.loss_scale_clean_steps});
  // Each rank continues its own dropout stream; at another world size there is no such stream, and
  // each rank starts a new one from the seed, the step and its rank.
  const int rank = pg.rank();
  if (resumed_.rng.size() == static_cast<size_t>(pg.size())) {
    default_generator().set_state(resumed_.rng[static_cast<size_t>(rank)]);
  } else {
    manual_seed(
        data::combine_seed(data::combine_seed(config_.seed, static_cast<uint64_t>(resumed_.step)),
                           static_cast<uint64_t>(rank) + 1));
  }
}

void RunCheckpoints::write(const std::string& dir, TrainingParts p, dist::ProcessGroup& pg,
                           TrainState state) const {
  // Every rank's RNG state travels to rank 0 (each rank's dropout stream differs), and the optimizer's
  // state is formed on every rank (a sharded one gathers it); rank 0 writes, the others wait.
  const auto rng = default_generator().state();
  const std::vector<int64_t> words =
      dist::all_gather_values(pg, std::vector<int64_t>(rng.begin(), rng.end()));
  const optim::OptimizerState optimizer = p.optimizer.state_dict();
  if (pg.rank() == 0) {
    CheckpointWriter writer(dir);
    std::map<std::string, std::string> metadata = p.workload.checkpoint_metadata();
    metadata["format"] = "pt";
    writer.write_tensors(kCheckpointModelFile, p.workload.checkpoint_state(), metadata);
    writer.write_tensors(kCheckpointOptimizerFile, optimizer.tensors);
    state.optimizer = optimizer.scalars;
    state.scheduler = p.scheduler.state_dict();
    const auto scaler = p.scaler.state();
    state.loss_scale = scaler.scale;
    state.loss_scale_clean_steps = scaler.growth_tracker;
    state.settings = resume_settings(config_);
    state.config = all_settings(config_);
    state.command_line = config_.command_line;
    state.version = version_text();
    state.world_size = pg.size();
    state.rng.clear();
    for (size_t r = 0; r < words.size() / 6; ++r) {
      std::array<uint64_t, 6> one{};
      for (size_t i = 0; i < 6; ++i) one[i] = static_cast<uint64_t>(words[r * 6 + i]);
      state.rng.push_back(one);
    }
    writer.write_json(kCheckpointStateFile, train_state_to_json(state));
    writer.commit();
  }
  pg.barrier()->wait();
}

void RunCheckpoints::mark_run() const {
  const fs::path run(config_.checkpoint_dir);
  std::error_code ec;
  if (fs::exists(run / kRunMarker, ec)) return;
  fs::create_directories(run, ec);
  std::ofstream marker(run / kRunMarker);
  marker << "a dtrain run: step-N/ checkpoints and best/; dtrain removes only what it wrote\n";
  DTRAIN_CHECK(marker.good(), "cannot write in --checkpoint-dir ", run.string(),
               ": check that it is writable");
}

void RunCheckpoints::save(TrainingParts p, dist::ProcessGroup& pg, TrainState state) {
  if (config_.checkpoint_dir.empty()) return;
  const fs::path run(config_.checkpoint_dir);
  if (pg.rank() == 0) mark_run();
  const std::string dir = (run / step_checkpoint_name(state.step)).string();  // before state moves
  write(dir, p, pg, std::move(state));
  if (pg.rank() == 0) {
    if (config_.keep_checkpoints > 0) {
      auto all = step_checkpoints(run.string());
      const size_t keep = static_cast<size_t>(config_.keep_checkpoints);
      for (size_t i = 0; i + keep < all.size(); ++i) remove_checkpoint(all[i].second.string());
    }
    remove_abandoned_writes(run.string());  // of writers killed mid-save in an earlier session
    // Step directories without their state.json: what a removal cut short left.
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(run, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.starts_with("step-") && name.find('.') == std::string::npos &&
          !fs::exists(entry.path() / kCheckpointStateFile, ec)) {
        remove_checkpoint(entry.path().string());
      }
    }
  }
}

void RunCheckpoints::save_if_best(TrainingParts p, dist::ProcessGroup& pg, TrainState state) {
  if (config_.checkpoint_dir.empty()) return;
  const std::string metric = p.workload.headline_metric();
  if (!state.eval.contains(metric) || !state.eval.at(metric).is_number()) return;
  const double value = state.eval.at(metric).get<double>();
  if (!std::isfinite(value)) return;
  if (best_eval_.is_object() && best_eval_.contains(metric) && best_eval_.at(metric).is_number()) {
    const double best = best_eval_.at(metric).get<double>();
    if (higher_is_better(metric) ? value <= best : value >= best) return;
  }
  best_eval_ = state.eval;
  if (pg.rank() == 0) mark_run();
  write((fs::path(config_.checkpoint_dir) / "best").string(), p, pg, std::move(state));
}

}  // namespace dtrain::launch
