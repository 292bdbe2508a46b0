// `dtrain bench scaling`: runs `dtrain bench ddp` at each requested world size through the launcher
// (weak scaling: a fixed batch per rank; strong: a fixed global batch split over the ranks) and prints
// one table per mode, writes scaling.json and draws scaling.png. Beside each measured point it prints
// what the scaling model (bench/scaling_model.h) predicts for it and the error, with:
//   - the step profile (forward, backward, optimizer, when each gradient is ready) of one rank measured
//     in this process before the sweep;
//   - a ring link (alpha, bandwidth) fitted to `dtrain bench allreduce` at the smallest world size > 1;
//   - the compute time at each point taken from that point's independent processes (the same ranks
//     training without communication): how ranks share this machine's cores is not the model's subject,
//     communication and its overlap with backward are.
//
// `dtrain bench project`: the same model on a named cluster at 8..1024 GPUs, from one rank's profile
// measured here and rescaled to the GPU's compute time (model FLOPs / (peak x MFU)).
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <nlohmann/json.hpp>

#include "core/backend/runtime.h"
#include "core/io/durable_file.h"
#include "bench/scaling_model.h"
#include "bench/step_profile.h"
#include "bench/bench.h"
#include "launch/optimizer_factory.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace dtrain::bench {

namespace {

std::vector<int> parse_positive_list(const std::string& text, const char* option) {
  std::vector<int> values;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, comma - pos);
    size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v < 1) {
      throw Error(std::string("--") + option + " '" + text +
                  "' must be a comma-separated list of positive integers, e.g. 1,2,4");
    }
    values.push_back(v);
    pos = comma + 1;
  }
  std::sort(values.begin(), values.end());
  values.erase(std::unique(values.begin(), values.end()), values.end());
  return values;
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

// Open MPI's launcher; as root it must be told that is intended, and the sweep may ask for more ranks
// than cores.
std::string default_launcher() {
  return std::string("mpirun --oversubscribe") + (::geteuid() == 0 ? " --allow-run-as-root" : "") +
         " -np {n}";
}

std::string launcher_for(const std::string& launcher, int ranks) {
  std::string command = launcher;
  const size_t at = command.find("{n}");
  if (at == std::string::npos) {
    throw Error("--launcher '" + launcher +
                "' has no {n} for the number of ranks, e.g. 'mpirun -np {n}'");
  }
  return command.replace(at, 3, std::to_string(ranks));
}

// Runs `command` with its output in `log`; an error naming the log when it fails.
void run_logged(const std::string& command, const fs::path& log, const std::string& what) {
  const std::string full = command + " >" + shell_quote(log.string()) + " 2>&1 </dev/null";
  const int status = std::system(full.c_str());
  if (status != 0) {
    const std::string how =
        status != -1 && WIFEXITED(status)     ? "exit status " + std::to_string(WEXITSTATUS(status))
        : status != -1 && WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                              : "could not start";
    throw Error("bench scaling: " + what + " failed (" + how + "); its output is in " +
                log.string());
  }
}

// `args` without --batch-size and its value (the sweep sets the batch of each point).
std::vector<std::string> without_batch_size(const std::vector<std::string>& args) {
  std::vector<std::string> kept;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--batch-size") {
      ++i;
    } else if (!args[i].starts_with("--batch-size=")) {
      kept.push_back(args[i]);
    }
  }
  return kept;
}

std::string joined_quoted(const std::vector<std::string>& args) {
  std::string text;
  for (const std::string& a : args) text += " " + shell_quote(a);
  return text;
}

nlohmann::json read_json(const fs::path& path) {
  try {
    return nlohmann::json::parse(read_file(path.string()));
  } catch (const nlohmann::json::exception& e) {
    throw Error("bench scaling: " + path.string() + " is not the JSON it should be (" + e.what() +
                ")");
  }
}

nlohmann::json profile_json(const StepProfile& p, int buckets) {
  return {{"forward_ms", p.forward_s * 1e3},
          {"backward_ms", p.backward_s * 1e3},
          {"optimizer_ms", p.optimizer_s * 1e3},
          {"gradients", p.grads.size()},
          {"buckets", buckets}};
}

StepProfile measure_profile(const TrainConfig& c, int64_t batch, BenchModel* model_out) {
  const Device device = Device::parse(c.device);
  select_device(device);
  set_allow_tf32(c.tf32);
  if (c.threads > 0) set_num_threads(c.threads);
  BenchModel m = make_bench_model(c, batch, device);
  auto optimizer = make_optimizer(c, decay_groups(*m.module));
  const int steps = static_cast<int>(std::max<int64_t>(1, c.steps));
  StepProfile profile = measure_step_profile(
      *m.module, device, m.loss, [&] { optimizer->step(); }, 1, steps);
  if (model_out != nullptr) *model_out = std::move(m);
  return profile;
}

// "ALPHA_US,GBS" -> a link; a one-line error otherwise.
Link parse_link(const std::string& text) {
  const size_t comma = text.find(',');
  double alpha_us = -1, gbs = -1;
  try {
    size_t used_a = 0, used_b = 0;
    if (comma != std::string::npos) {
      alpha_us = std::stod(text.substr(0, comma), &used_a);
      gbs = std::stod(text.substr(comma + 1), &used_b);
      if (used_a != comma || used_b != text.size() - comma - 1) alpha_us = gbs = -1;
    }
  } catch (const std::exception&) {
    alpha_us = gbs = -1;
  }
  if (!(alpha_us >= 0 && gbs > 0 && std::isfinite(alpha_us) && std::isfinite(gbs))) {
    throw Error("--link '" + text +
                "' must be ALPHA_US,GBS: a latency in microseconds (>= 0) and a "
                "bandwidth in GB/s (> 0), e.g. 5,50");
  }
  return Link{alpha_us * 1e-6, gbs * 1e9};
}

double profile_total_s(const StepProfile& p) { return p.forward_s + p.backward_s + p.optimizer_s; }

// The profile with every phase multiplied by `factor`.
StepProfile scaled_profile(const StepProfile& p, double factor) {
  return rescale_profile(p, p.forward_s * factor, p.backward_s * factor, p.optimizer_s * factor);
}

// One measured point of the sweep and the model's prediction for it.
struct Point {
  std::string mode;
  int ranks = 1;
  int64_t batch_per_rank = 0;
  nlohmann::json ddp;
  double throughput = 0, predicted_ms = 0;
};

void print_table(const std::vector<Point>& points, const std::string& unit, bool modelled) {
  const Point& base = points.front();
  std::printf(
      "  ranks  batch/rank   step ms  compute ms  exposed ms  hidden %%  %9s/s  speed-up  "
      "efficiency  "
      "vs indep.%s\n",
      unit.c_str(), modelled ? "  model ms  error %" : "");
  for (const Point& p : points) {
    const double step = p.ddp["ddp_step_ms"], compute = p.ddp["independent_step_ms"];
    const double speedup = p.throughput / base.throughput;
    const double efficiency = speedup * base.ranks / p.ranks;
    std::printf("  %5d  %10lld  %8.1f  %10.1f  %10.1f  %8.0f  %11.1f  %8.2f  %10.2f  %9.2f",
                p.ranks, static_cast<long long>(p.batch_per_rank), step, compute, step - compute,
                static_cast<double>(p.ddp["hidden_percent"]), p.throughput, speedup, efficiency,
                compute / step);
    if (modelled)
      std::printf("  %8.1f  %+7.1f", p.predicted_ms, 100.0 * (p.predicted_ms / step - 1.0));
    std::printf("\n");
  }
}

nlohmann::json points_json(const std::vector<Point>& points, bool modelled) {
  nlohmann::json out = nlohmann::json::array();
  const Point& base = points.front();
  for (const Point& p : points) {
    const double step = p.ddp["ddp_step_ms"], compute = p.ddp["independent_step_ms"];
    const double speedup = p.throughput / base.throughput;
    nlohmann::json j = {{"mode", p.mode},
                        {"ranks", p.ranks},
                        {"batch_per_rank", p.batch_per_rank},
                        {"step_ms", step},
                        {"compute_ms", compute},
                        {"exposed_ms", step - compute},
                        {"hidden_percent", p.ddp["hidden_percent"]},
                        {"throughput", p.throughput},
                        {"speedup", speedup},
                        {"efficiency", speedup * base.ranks / p.ranks},
                        {"vs_independent", compute / step}};
    if (modelled) {
      j["predicted_step_ms"] = p.predicted_ms;
      j["error_percent"] = 100.0 * (p.predicted_ms / step - 1.0);
    }
    out.push_back(j);
  }
  return out;
}

const char* kScalingUsage =
    "usage: dtrain bench scaling [--ranks 1,2,4] [--scaling weak|strong|both] [--out DIR] "
    "[--launcher CMD]\n"
    "                            [training options of bench ddp: --model, --batch-size, --steps, "
    "...]\n"
    "Runs `dtrain bench ddp` at each world size through the launcher. Weak scaling keeps "
    "--batch-size per\n"
    "rank; strong scaling splits --batch-size over the ranks (it must divide evenly). Writes "
    "DIR/scaling.json,\n"
    "DIR/scaling.png (python3-matplotlib) and each run's output in DIR/*.log.";

}  // namespace

int run_bench_scaling(const std::vector<std::string>& args_in) {
  std::vector<std::string> args = args_in;
  std::string ranks_text = "1,2,4", mode = "both", out_dir = "scaling",
              launcher = default_launcher();
  std::string link_text;
  int plot = 1;
  po::options_description opts("dtrain bench scaling options (besides bench ddp's)");
  opts.add_options()("ranks", po::value(&ranks_text)->default_value(ranks_text),
                     "world sizes to measure")("scaling", po::value(&mode)->default_value(mode),
                                               "weak | strong | both")(
      "out", po::value(&out_dir)->default_value(out_dir),
      "directory for scaling.json, scaling.png, logs")(
      "launcher", po::value(&launcher)->default_value(launcher), "command that starts {n} ranks")(
      "plot", po::value(&plot)->default_value(plot),
      "1: draw DIR/scaling.png with scripts/plot_scaling.py")(
      "link", po::value(&link_text),
      "ALPHA_US,GBS: the model's ring link as given (e.g. from nccl-tests), instead of fitting it "
      "to "
      "the all-reduce at the smallest world size above one");
  po::variables_map vm;
  take_bench_options(args, opts, vm);
  if (std::find(args.begin(), args.end(), "--help") != args.end() ||
      std::find(args.begin(), args.end(), "-h") != args.end()) {
    std::cout << kScalingUsage << "\n\n"
              << opts << "\n(and the training options of dtrain bench ddp --help)\n";
    return 0;
  }
  if (mode != "weak" && mode != "strong" && mode != "both") {
    throw Error("--scaling '" + mode + "' must be weak, strong or both");
  }
  const std::vector<int> ranks = parse_positive_list(ranks_text, "ranks");
  std::optional<Link> given_link;
  if (!link_text.empty()) given_link = parse_link(link_text);
  TrainConfig c;
  c.batch_size = 24;  // divides over 1, 2, 3, 4, 6 and 8 ranks
  c.steps = 10;
  std::vector<std::string> forwarded = without_batch_size(args);
  if (!parse_train_config(args, c, "bench scaling")) return 0;
  std::vector<std::string> modes;
  if (mode != "strong") modes.push_back("weak");
  if (mode != "weak") modes.push_back("strong");
  for (int n : ranks) {
    if (mode != "weak" && c.batch_size % n != 0) {
      throw Error("strong scaling splits --batch-size " + std::to_string(c.batch_size) + " over " +
                  std::to_string(n) + " ranks: use a batch size that every --ranks value divides");
    }
  }
  fs::create_directories(out_dir);
  const fs::path dir(out_dir);
  const std::string self = fs::read_symlink("/proc/self/exe").string();

  // One rank's profile, measured here before any rank starts, and the buckets DDP will form from it.
  BenchModel model;
  const StepProfile profile = measure_profile(c, c.batch_size, &model);
  const auto cap_bytes = static_cast<int64_t>(c.bucket_cap_mb * 1024.0 * 1024.0);
  const std::vector<BucketPlan> buckets = plan_buckets(profile, cap_bytes);
  int64_t largest_bucket = 0;
  for (const BucketPlan& b : buckets) largest_bucket = std::max(largest_bucket, b.bytes);
  std::printf("# bench scaling: %s (%lld parameters), %s; %lld timed steps per point; logs in %s\n",
              c.model.c_str(), static_cast<long long>(model.module->num_parameters(true)),
              c.device.c_str(), static_cast<long long>(c.steps), out_dir.c_str());
  std::printf(
      "# one rank's step, measured here: forward %.1f ms, backward %.1f ms, optimizer %.1f ms; "
      "%zu gradients in %zu buckets of at most %.1f MB\n",
      profile.forward_s * 1e3, profile.backward_s * 1e3, profile.optimizer_s * 1e3,
      profile.grads.size(), buckets.size(), c.bucket_cap_mb);
  std::fflush(stdout);

  // The link, fitted to the all-reduce at the smallest world size above one.
  nlohmann::json link_json = nullptr;
  std::optional<Link> link;
  size_t samples_used = 0;
  const auto calibration = std::find_if(ranks.begin(), ranks.end(), [](int n) { return n > 1; });
  if (given_link) {
    link = given_link;
    link_json = {{"given", true},
                 {"alpha_us", link->alpha_s * 1e6},
                 {"bandwidth_gbs", link->bytes_per_s / 1e9}};
    std::printf("# ring link as given: alpha %.1f us, %.2f GB/s\n", link->alpha_s * 1e6,
                link->bytes_per_s / 1e9);
  } else if (calibration != ranks.end()) {
    // At least 4 MiB, so that the bandwidth term stands out of the latencies of small messages.
    int64_t max_bytes = 4 << 20;
    while (max_bytes < 2 * largest_bucket && max_bytes < (int64_t{256} << 20)) max_bytes *= 2;
    const fs::path json = dir / ("allreduce-np" + std::to_string(*calibration) + ".json");
    run_logged(launcher_for(launcher, *calibration) + " " + shell_quote(self) +
                   " bench allreduce --min-bytes 4096 --max-bytes " + std::to_string(max_bytes) +
                   " --device " + shell_quote(c.device) + " --json " + shell_quote(json.string()),
               dir / ("allreduce-np" + std::to_string(*calibration) + ".log"),
               "the all-reduce benchmark at " + std::to_string(*calibration) + " ranks");
    // The sizes from 64 KiB up: below, the time is the latency and the host's scheduling noise, which on
    // oversubscribed cores can make a straight-line fit meaningless.
    std::vector<CollectiveSample> samples;
    const nlohmann::json tables = read_json(json);
    for (const nlohmann::json& row : tables.at("all_reduce")) {
      if (row["bytes"].get<double>() < 65536) continue;
      samples.push_back(CollectiveSample{*calibration, row["bytes"].get<double>(),
                                         row["time_us"].get<double>() * 1e-6});
    }
    samples_used = samples.size();
    try {
      link = fit_ring_link(samples);
      link_json = {{"fitted_at_ranks", *calibration},
                   {"alpha_us", link->alpha_s * 1e6},
                   {"bandwidth_gbs", link->bytes_per_s / 1e9}};
      std::printf(
          "# ring link fitted to the all-reduce at %d ranks (%zu sizes from 64 KiB): alpha %.1f "
          "us, "
          "%.2f GB/s\n",
          *calibration, samples_used, link->alpha_s * 1e6, link->bytes_per_s / 1e9);
    } catch (const Error& e) {
      std::printf(
          "# no model beside the points: the all-reduce times at %d ranks did not fit a link (%s); "
          "--link ALPHA_US,GBS gives one\n",
          *calibration, e.what());
    }
  }
  if (link) {
    std::printf(
        "# model: compute at each point from its independent processes; communication and overlap "
        "from the profile and the link\n");
  }

  nlohmann::json result = {{"model", c.model},
                           {"parameters", model.module->num_parameters(true)},
                           {"unit", model.unit},
                           {"device", c.device},
                           {"steps", c.steps},
                           {"bucket_cap_mb", c.bucket_cap_mb},
                           {"profile", profile_json(profile, static_cast<int>(buckets.size()))},
                           {"link", link_json},
                           {"points", nlohmann::json::array()}};
  for (const std::string& m : modes) {
    std::vector<Point> points;
    for (int n : ranks) {
      Point p;
      p.mode = m;
      p.ranks = n;
      p.batch_per_rank = m == "weak" ? c.batch_size : c.batch_size / n;
      const std::string name = m + "-np" + std::to_string(n);
      const fs::path json = dir / (name + ".json");
      run_logged(launcher_for(launcher, n) + " " + shell_quote(self) + " bench ddp" +
                     joined_quoted(forwarded) + " --batch-size " +
                     std::to_string(p.batch_per_rank * n) + " --json " + shell_quote(json.string()),
                 dir / (name + ".log"), m + " scaling at " + std::to_string(n) + " ranks");
      p.ddp = read_json(json);
      const double items = p.ddp["items_per_rank"].get<double>() * n;
      p.throughput = items / (p.ddp["ddp_step_ms"].get<double>() / 1e3);
      if (link) {
        const double factor =
            p.ddp["independent_step_ms"].get<double>() / 1e3 / profile_total_s(profile);
        const StepProfile scaled = scaled_profile(profile, factor);
        const Link l = *link;
        auto comm = [n, l](int64_t bytes) {
          return ring_allreduce_seconds(l, n, static_cast<double>(bytes));
        };
        p.predicted_ms = predict_step(scaled, plan_buckets(scaled, cap_bytes), comm).step_s * 1e3;
      }
      points.push_back(std::move(p));
    }
    std::printf(
        "\n# %s scaling: %s; speed-up and efficiency against %d rank%s; vs indep. = independent "
        "processes' step / DDP step\n",
        m.c_str(),
        m == "weak" ? ("batch " + std::to_string(c.batch_size) + " per rank").c_str()
                    : ("global batch " + std::to_string(c.batch_size)).c_str(),
        points.front().ranks, points.front().ranks == 1 ? "" : "s");
    print_table(points, model.unit, link.has_value());
    for (const nlohmann::json& j : points_json(points, link.has_value()))
      result["points"].push_back(j);
    std::fflush(stdout);
  }
  const fs::path json = dir / "scaling.json";
  write_file_atomically(json.string(), result.dump(2) + "\n");
  std::printf("\nwrote %s\n", json.string().c_str());
  if (plot) {
    const fs::path script =
        fs::path(self).parent_path().parent_path() / "scripts" / "plot_scaling.py";
    const fs::path png = dir / "scaling.png";
    const std::string command = "/usr/bin/python3 " + shell_quote(script.string()) + " " +
                                shell_quote(json.string()) + " --out " + shell_quote(png.string());
    if (fs::exists(script) && std::system((command + " >/dev/null 2>&1").c_str()) == 0) {
      std::printf("wrote %s\n", png.string().c_str());
    } else {
      std::printf(
          "no plot drawn (it needs python3-matplotlib: scripts/bootstrap --reference); to draw it: "
          "/usr/bin/python3 scripts/plot_scaling.py %s --out %s\n",
          json.string().c_str(), png.string().c_str());
    }
  }
  return 0;
}

namespace {

const char* kProjectUsage =
    "usage: dtrain bench project [--cluster NAME] [--gpus 8,16,...,1024] [--mfu 0.4] "
    "[--profile-batch 2]\n"
    "                            [--model vit-b16|gpt2|vit|gpt] [--batch-size per GPU] "
    "[--bucket-cap-mb 25]\n"
    "Measures one rank's step here (--profile-batch, --steps timed steps), rescales it to the "
    "cluster's GPU\n"
    "(model FLOPs / (peak x MFU) per step, the measured split between forward, backward and "
    "optimizer kept),\n"
    "and prints the scaling model's step time, exposed communication and efficiency at each GPU "
    "count, and\n"
    "the bucket size that minimises the step there.";

}  // namespace

int run_bench_project(const std::vector<std::string>& args_in) {
  std::vector<std::string> args = args_in;
  std::string cluster_name = cluster_presets().front().name,
              gpus_text = "8,16,32,64,128,256,512,1024";
  std::string json_path;
  double mfu = 0.4;
  int64_t profile_batch = 2;
  po::options_description opts("dtrain bench project options (besides the training options)");
  opts.add_options()("cluster", po::value(&cluster_name)->default_value(cluster_name),
                     "a cluster preset")("gpus", po::value(&gpus_text)->default_value(gpus_text),
                                         "GPU counts to project")(
      "mfu", po::value(&mfu)->default_value(mfu), "model FLOPs utilisation assumed for compute")(
      "profile-batch", po::value(&profile_batch)->default_value(profile_batch),
      "batch of the step measured here")("json", po::value(&json_path),
                                         "also write the projection to this JSON file");
  po::variables_map vm;
  take_bench_options(args, opts, vm);
  if (std::find(args.begin(), args.end(), "--help") != args.end() ||
      std::find(args.begin(), args.end(), "-h") != args.end()) {
    std::cout << kProjectUsage << "\n\n" << opts << "\nclusters:";
    for (const ClusterSpec& s : cluster_presets()) std::cout << " " << s.name;
    std::cout << "\n(and the training options of dtrain bench ddp --help)\n";
    return 0;
  }
  if (!(mfu > 0 && mfu <= 1)) throw Error("--mfu " + std::to_string(mfu) + " must be in (0, 1]");
  if (profile_batch < 1) throw Error("--profile-batch must be at least 1");
  const ClusterSpec& cluster = cluster_preset(cluster_name);
  const std::vector<int> gpus = parse_positive_list(gpus_text, "gpus");
  const std::vector<double> caps = default_bucket_caps_mb();
  TrainConfig c;
  c.model = "vit-b16";
  c.batch_size = 32;
  c.seq_len = 1024;
  c.steps = 1;
  if (!parse_train_config(args, c, "bench project")) return 0;

  BenchModel model;
  const StepProfile measured = measure_profile(c, profile_batch, &model);
  const double items_per_sample =
      static_cast<double>(model.items) / static_cast<double>(profile_batch);
  const double items_per_gpu = items_per_sample * static_cast<double>(c.batch_size);
  const double compute_s = model.flops_per_step / static_cast<double>(model.items) * items_per_gpu /
                           (cluster.peak_flops * mfu);
  const double fb = measured.forward_s + measured.backward_s;
  const StepProfile target =
      rescale_profile(measured, compute_s * measured.forward_s / fb,
                      compute_s * measured.backward_s / fb, compute_s * measured.optimizer_s / fb);
  const auto cap_bytes = static_cast<int64_t>(c.bucket_cap_mb * 1024.0 * 1024.0);
  const std::vector<BucketPlan> buckets = plan_buckets(target, cap_bytes);
  int64_t largest = 0;
  for (const BucketPlan& b : buckets) largest = std::max(largest, b.bytes);

  std::printf(
      "# bench project: %s (%lld parameters), %lld %s per GPU, f32 gradients in %zu buckets of at "
      "most "
      "%.0f MB\n",
      c.model.c_str(), static_cast<long long>(model.module->num_parameters(true)),
      static_cast<long long>(c.batch_size), c.model.starts_with("gpt") ? "sequences" : "images",
      buckets.size(), c.bucket_cap_mb);
  std::printf(
      "# cluster %s: %d GPUs per node; inside a node %.0f GB/s, alpha %.1f us; between nodes %.1f "
      "GB/s "
      "per GPU, alpha %.1f us; %.0f TFLOP/s peak\n#   (%s)\n",
      cluster.name.c_str(), cluster.gpus_per_node, cluster.intra.bytes_per_s / 1e9,
      cluster.intra.alpha_s * 1e6, cluster.inter.bytes_per_s / 1e9, cluster.inter.alpha_s * 1e6,
      cluster.peak_flops / 1e12, cluster.source.c_str());
  std::printf(
      "# profile measured here (%s, batch %lld): forward %.1f ms, backward %.1f ms, optimizer %.1f "
      "ms; "
      "rescaled to %.2f ms of compute per GPU step at MFU %.2f\n",
      c.device.c_str(), static_cast<long long>(profile_batch), measured.forward_s * 1e3,
      measured.backward_s * 1e3, measured.optimizer_s * 1e3, profile_total_s(target) * 1e3, mfu);
  std::printf(
      "   gpus  nodes  largest bucket  all-reduce ms  comm ms  exposed ms   step ms  efficiency  "
      "%9s/s  "
      "| best cap MB  exposed ms  efficiency\n",
      model.unit.c_str());
  nlohmann::json rows = nlohmann::json::array();
  for (int world : gpus) {
    auto comm = [&](int64_t bytes) {
      return allreduce_seconds(cluster, world, static_cast<double>(bytes));
    };
    const StepPrediction p = predict_step(target, buckets, comm);
    const BucketChoice best = best_bucket_cap(target, caps, comm);
    const AllReduceEstimate big = estimate_allreduce(cluster, world, static_cast<double>(largest));
    const int nodes = (world + cluster.gpus_per_node - 1) / cluster.gpus_per_node;
    const double throughput = world * items_per_gpu / p.step_s;
    const std::string cap =
        std::isinf(best.cap_mb) ? "one bucket" : std::to_string(std::lround(best.cap_mb));
    std::printf(
        "  %5d  %5d  %14s  %13.2f  %7.2f  %10.2f  %8.2f  %10.3f  %11.0f  | %11s  %10.2f  %10.3f\n",
        world, nodes, big.algorithm.c_str(), big.seconds * 1e3, p.comm_s * 1e3, p.exposed_s * 1e3,
        p.step_s * 1e3, p.efficiency, throughput, cap.c_str(), best.prediction.exposed_s * 1e3,
        best.prediction.efficiency);
    rows.push_back({{"gpus", world},
                    {"nodes", nodes},
                    {"largest_bucket_algorithm", big.algorithm},
                    {"largest_bucket_allreduce_ms", big.seconds * 1e3},
                    {"comm_ms", p.comm_s * 1e3},
                    {"exposed_ms", p.exposed_s * 1e3},
                    {"step_ms", p.step_s * 1e3},
                    {"efficiency", p.efficiency},
                    {"throughput", throughput},
                    {"best_cap_mb", std::isinf(best.cap_mb) ? nlohmann::json("one bucket")
                                                            : nlohmann::json(best.cap_mb)},
                    {"best_exposed_ms", best.prediction.exposed_s * 1e3},
                    {"best_efficiency", best.prediction.efficiency}});
  }
  if (!json_path.empty()) {
    const nlohmann::json j = {{"model", c.model},
                              {"cluster", cluster.name},
                              {"batch_per_gpu", c.batch_size},
                              {"mfu", mfu},
                              {"compute_ms", profile_total_s(target) * 1e3},
                              {"profile", profile_json(measured, static_cast<int>(buckets.size()))},
                              {"rows", rows}};
    write_file_atomically(json_path, j.dump(2) + "\n");
  }
  return 0;
}

}  // namespace dtrain::bench
