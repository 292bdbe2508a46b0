// `dtrain bench allreduce | ddp | step | scaling | project`: the scaling and speed figures, each measured
// against a baseline taken in the same invocation (raw MPI/NCCL calls; independent processes; peak GEMM;
// one rank), and the projection to clusters of the scaling model (bench/scaling.cpp).
#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/amp/autocast.h"
#include "core/amp/loss_scaler.h"
#include "core/backend/runtime.h"
#include "core/ops/ops.h"
#include "core/optim/optim.h"
#include "bench/collectives.h"
#include "bench/ddp_overhead.h"
#include "distributed/mpi/process_group_mpi.h"
#ifdef DTRAIN_WITH_CUDA
#include "distributed/nccl/process_group_nccl.h"
#endif
#include "core/io/durable_file.h"
#include "bench/bench.h"
#include "launch/commands.h"
#include "launch/config.h"
#include "launch/optimizer_factory.h"
#include "models/gpt.h"
#include "models/vit.h"

namespace po = boost::program_options;

namespace dtrain::bench {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

const char* kBenchUsage =
    "usage: dtrain bench <allreduce|ddp|step|scaling|project> [options]\n"
    "  allreduce  collective time, algbw and busbw per size (4 KiB..256 MiB), beside the raw MPI "
    "or\n"
    "             NCCL call (--device cuda: NCCL; --collective reduce_scatter, all_gather, "
    "broadcast, all)\n"
    "  ddp        step time of N ranks with DDP vs N independent processes: overhead and hidden "
    "comm\n"
    "  step       one rank's training step split into forward/backward/optimizer, throughput and "
    "MFU\n"
    "  scaling    runs ddp at each world size (weak and strong scaling) through the launcher: "
    "table,\n"
    "             JSON and plot, with the scaling model's prediction and its error beside each "
    "point\n"
    "  project    the scaling model: step time, exposed communication and efficiency on 8..1024 "
    "GPUs\n"
    "             of a named cluster, from one rank's step measured here, and the best bucket "
    "size\n"
    "Each takes --help.";

int bench_step(const TrainConfig& c, int steps) {
  Device device = Device::parse(c.device);
  select_device(device);  // as the trainer runs: this GPU, chosen once
  set_allow_tf32(c.tf32);
  if (c.threads > 0) set_num_threads(c.threads);
  BenchModel m = make_bench_model(c, c.batch_size, device);
  auto optimizer = make_optimizer(c, decay_groups(*m.module));
  const std::vector<Tensor> params = optimizer->parameters();
  // The trainer's step, in three parts: forward; backward of the (f16: scaled) loss; unscale, clip if
  // asked, optimizer step (skipped by the scaler on overflow), zero_grad.
  amp::DynamicLossScaler scaler(amp::LossScalerOptions{.enabled = c.precision == "f16"});
  auto backward = [&](const Tensor& loss) { scaler.scale(loss).backward(); };
  auto update = [&] {
    scaler.unscale(params);
    if (c.clip_grad_norm > 0) (void)optim::clip_grad_norm_tensor(params, c.clip_grad_norm);
    scaler.step(params, [&] { optimizer->step(); });
    optimizer->zero_grad();
  };
  auto sync = [&] { synchronize(device); };
  double fwd = 0, bwd = 0, opt = 0;
  for (int s = 0; s < steps + 1; ++s) {            // step 0 warms up
    if (s == 1) reset_peak_device_memory(device);  // the peak of a step after the first
    sync();
    auto t0 = Clock::now();
    Tensor loss = m.loss();
    sync();
    double f = ms_since(t0);
    t0 = Clock::now();
    backward(loss);
    sync();
    double b = ms_since(t0);
    t0 = Clock::now();
    update();
    sync();
    double o = ms_since(t0);
    if (s > 0) fwd += f, bwd += b, opt += o;
  }
  fwd /= steps, bwd /= steps, opt /= steps;
  const double peak_mib = static_cast<double>(peak_device_memory_bytes(device)) / (1 << 20);
  // Host synchronisations per step (each stalls the host until the device catches up), counted over
  // steps of their own: the timed loop above synchronises around every part to time it.
  const uint64_t syncs_before = host_sync_count();
  for (int s = 0; s < steps; ++s) {
    backward(m.loss());
    update();
  }
  const double syncs_per_step = static_cast<double>(host_sync_count() - syncs_before) / steps;
  sync();
  double step_ms = fwd + bwd + opt;
  DType peak_dtype =
      c.precision == "f32" ? DType::f32 : (c.precision == "f16" ? DType::f16 : DType::bf16);
  if (device.is_cpu()) peak_dtype = DType::f32;  // the CPU computes in f32 whatever it stores
  double peak = measured_peak_flops(device, peak_dtype);
  double achieved = m.flops_per_step / (step_ms / 1e3);
  std::printf("bench step: %s (%lld parameters), batch %lld, %s, %s, %d threads\n", c.model.c_str(),
              static_cast<long long>(m.module->num_parameters()),
              static_cast<long long>(c.batch_size), c.precision.c_str(), device.str().c_str(),
              get_num_threads());
  std::printf(
      "  step %.1f ms = forward %.1f + backward %.1f + optimizer %.1f + communication 0.0\n",
      step_ms, fwd, bwd, opt);
  std::printf("  throughput: %.1f %s/s\n", static_cast<double>(m.items) / (step_ms / 1e3),
              m.unit.c_str());
  std::printf("  model %.2f TFLOP/s; peak %s GEMM %.2f TFLOP/s; MFU %.1f%%\n", achieved / 1e12,
              dtype_name(peak_dtype), peak / 1e12, 100.0 * achieved / peak);
  std::printf("  syncs per step: %.2f (host waits for the device, over %d untimed steps)\n",
              syncs_per_step, steps);
  std::printf(
      "  peak memory: %.1f MiB in tensors on %s (activation checkpointing %s, optimizer %s)\n",
      peak_mib, device.str().c_str(), c.checkpoint_activations ? "on" : "off",
      optimizer->fused() ? "fused" : "per tensor");
  if (c.model == "gpt2") {
    // The anchor of the GPT-2 preset: llm.c trains this shape (124M, seq 1024, bf16) at about 50-56%
    // MFU on an A100, derived from its published step time (github.com/karpathy/llm.c discussions).
    std::printf("  llm.c, GPT-2 124M on one A100 (published): about 50-56%% MFU\n");
  }
  return 0;
}

}  // namespace

int run_bench(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << kBenchUsage << std::endl;
    return args.empty() ? 2 : 0;
  }
  const std::string& what = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (what == "allreduce") {
    AllReduceBenchOptions o;
    std::string dtype = "f32", device = "cpu", collective = "all_reduce", json_path;
    po::options_description opts("dtrain bench allreduce options");
    opts.add_options()("help,h", "print this help")(
        "min-bytes", po::value(&o.min_bytes)->default_value(o.min_bytes), "smallest message")(
        "max-bytes", po::value(&o.max_bytes)->default_value(o.max_bytes), "largest message")(
        "iters", po::value(&o.iters)->default_value(o.iters), "timed iterations per size")(
        "dtype", po::value(&dtype)->default_value(dtype), "f32 | bf16 | f16 | f64")(
        "device", po::value(&device)->default_value(device),
        "cpu (MPI) | cuda (NCCL, each rank its local rank's GPU) | cuda:N")(
        "json", po::value(&json_path), "also write the tables to this JSON file (rank 0)")(
        "collective", po::value(&collective)->default_value(collective),
        "all_reduce | reduce_scatter | all_gather | broadcast | all (the four)");
    po::variables_map vm;
    try {
      po::store(po::command_line_parser(rest).options(opts).run(), vm);
      po::notify(vm);
    } catch (const po::error& e) {
      throw Error(std::string(e.what()) + " (dtrain bench allreduce --help lists the options)");
    }
    if (vm.count("help")) {
      std::cout << opts << std::endl;
      return 0;
    }
    o.dtype = dtype_from_name(dtype);
    const std::vector<BenchCollective> collectives = parse_bench_collectives(collective);
    {
      auto pg = make_bench_group(device);
      nlohmann::json tables = {
          {"ranks", pg->size()}, {"backend", pg->backend_name()}, {"dtype", dtype}};
      for (BenchCollective c : collectives) {
        const std::vector<AllReduceRow> rows =
            bench_collective(*pg, c, o, pg->rank() == 0 ? &std::cout : nullptr);
        nlohmann::json& table = tables[bench_collective_name(c)] = nlohmann::json::array();
        for (const AllReduceRow& r : rows) {
          table.push_back({{"bytes", r.bytes},
                           {"count", r.count},
                           {"time_us", r.time_us},
                           {"algbw_gbs", r.algbw_gbs},
                           {"busbw_gbs", r.busbw_gbs},
                           {"wrong", r.wrong}});
        }
      }
      if (!json_path.empty() && pg->rank() == 0)
        write_file_atomically(json_path, tables.dump(2) + "\n");
    }
    dist::finalize_mpi();
    return 0;
  }
  if (what == "ddp" || what == "step") {
    TrainConfig c;
    c.batch_size = 32;
    c.steps = 10;
    std::string json_path;
    po::options_description bench_opts(
        "dtrain bench ddp options (besides the training options below)");
    bench_opts.add_options()("json", po::value(&json_path),
                             "also write the result to this JSON file (rank 0)");
    if (what == "ddp") {
      po::variables_map vm;
      take_bench_options(rest, bench_opts, vm);
      if (std::find(rest.begin(), rest.end(), "--help") != rest.end())
        std::cout << bench_opts << "\n";
    }
    if (!parse_train_config(rest, c, what == "ddp" ? "bench ddp" : "bench step")) return 0;
    const int steps = static_cast<int>(std::max<int64_t>(1, c.steps));
    if (what == "step") return bench_step(c, steps);
    {
      auto pg = make_bench_group(c.device);
      set_allow_tf32(c.tf32);
      if (c.threads > 0) set_num_threads(c.threads);
      BenchModel m = make_bench_model(c, c.batch_size / pg->size(), pg->device());
      auto optimizer = make_optimizer(c, decay_groups(*m.module));
      DdpBenchOptions o;
      o.steps = steps;
      o.ddp.bucket_cap_mb = c.bucket_cap_mb;
      const DdpBenchResult r = bench_ddp(
          m.module, pg, m.loss, [&] { optimizer->step(); }, o,
          pg->rank() == 0 ? &std::cout : nullptr);
      if (!json_path.empty() && pg->rank() == 0) {
        nlohmann::json j = {{"world_size", r.world_size},
                            {"parameters", r.parameters},
                            {"buckets", r.buckets},
                            {"items_per_rank", m.items},
                            {"unit", m.unit},
                            {"independent_step_ms", r.independent_step_ms},
                            {"ddp_step_ms", r.ddp_step_ms},
                            {"overhead_percent", r.overhead_percent},
                            {"comm_ms", r.comm_ms},
                            {"hidden_ms", r.hidden_ms},
                            {"hidden_percent", r.hidden_percent},
                            {"exposed_ms", r.exposed_ms},
                            {"bucket_comm", nlohmann::json::array()}};
        for (const CollectiveSample& b : r.bucket_comm) {
          j["bucket_comm"].push_back({{"bytes", b.bytes}, {"seconds", b.seconds}});
        }
        write_file_atomically(json_path, j.dump(2) + "\n");
      }
    }
    dist::finalize_mpi();
    return 0;
  }
  if (what == "scaling") return run_bench_scaling(rest);
  if (what == "project") return run_bench_project(rest);
  throw Error("dtrain bench: unknown benchmark '" + what +
              "'; use allreduce, ddp, step, scaling or project");
}

}  // namespace dtrain::bench
