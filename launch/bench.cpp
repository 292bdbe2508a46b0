// `dtrain bench allreduce | ddp | step`: the scaling and speed figures, each measured against a
// baseline taken in the same invocation (raw MPI/NCCL calls; independent processes; peak GEMM).
#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <iostream>

#include "core/amp/autocast.h"
#include "core/amp/loss_scaler.h"
#include "core/backend/backend.h"
#include "core/ops/ops.h"
#include "core/optim/optim.h"
#include "distributed/bench_allreduce.h"
#include "distributed/bench_ddp.h"
#include "distributed/mpi/process_group_mpi.h"
#ifdef DTRAIN_WITH_CUDA
#include "distributed/nccl/process_group_nccl.h"
#endif
#include "launch/commands.h"
#include "launch/config.h"
#include "launch/optimizer_factory.h"
#include "models/gpt.h"
#include "models/vit.h"

namespace po = boost::program_options;

namespace dtrain::launch {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

const char* kBenchUsage =
    "usage: dtrain bench <allreduce|ddp|step> [options]\n"
    "  allreduce  collective time, algbw and busbw per size (4 KiB..256 MiB), beside the raw MPI or\n"
    "             NCCL call (--device cuda: NCCL; --collective reduce_scatter, all_gather or all)\n"
    "  ddp        step time of N ranks with DDP vs N independent processes: overhead and hidden comm\n"
    "  step       one rank's training step split into forward/backward/optimizer, throughput and MFU\n"
    "Each takes --help.";

// A model and a fixed synthetic batch for the step and ddp benchmarks.
struct BenchModel {
  std::shared_ptr<nn::Module> module;
  std::function<Tensor()> loss;
  double flops_per_step = 0;  // forward + backward model FLOPs
  int64_t items = 0;          // images or tokens per step
  std::string unit;
};

BenchModel make_bench_model(const TrainConfig& c, int64_t batch, Device device) {
  manual_seed(c.seed);
  BenchModel m;
  const bool mixed = c.precision != "f32";
  const DType low = c.precision == "f16" ? DType::f16 : DType::bf16;
  if (c.model == "vit" || c.model == "vit-b16") {
    models::VitConfig vc = models::VitConfig::preset(c.model == "vit-b16" ? "base" : c.model_size);
    if (c.dim) vc.dim = c.dim;
    if (c.depth) vc.depth = c.depth;
    if (c.heads) vc.heads = c.heads;
    if (c.mlp_dim) vc.mlp_dim = c.mlp_dim;
    if (c.patch) vc.patch_size = c.patch;
    auto vit = std::make_shared<models::VisionTransformer>(vc);
    vit->to(device);
    Tensor images = Tensor::randn({batch, vc.in_channels, vc.image_size, vc.image_size}, DType::f32, device);
    Tensor labels = Tensor::zeros({batch}, DType::i64, device);
    m.loss = [=] {
      amp::AutocastGuard autocast(low, mixed);
      return cross_entropy(vit->forward(images).to(DType::f32), labels);
    };
    m.module = vit;
    m.flops_per_step = 3.0 * models::vit_forward_flops(vc) * static_cast<double>(batch);
    m.items = batch;
    m.unit = "images";
  } else if (c.model == "gpt") {
    models::GptConfig gc = models::GptConfig::preset(c.model_size == "fm" ? "small" : c.model_size, 256,
                                                     c.seq_len);
    auto gpt = std::make_shared<models::Gpt>(gc);
    gpt->to(device);
    Tensor tokens = Tensor::zeros({batch, c.seq_len}, DType::i64, device);
    m.loss = [=] {
      amp::AutocastGuard autocast(low, mixed);
      return cross_entropy(gpt->forward(tokens).to(DType::f32).flatten(0, 1), tokens.flatten());
    };
    m.module = gpt;
    m.flops_per_step = 3.0 * models::gpt_forward_flops_per_token(gc, c.seq_len) *
                       static_cast<double>(batch * c.seq_len);
    m.items = batch * c.seq_len;
    m.unit = "tokens";
  } else {
    throw Error("dtrain bench: --model must be vit, vit-b16 or gpt, got '" + c.model + "'");
  }
  return m;
}

// The best f32 (CPU) or bf16 (GPU) GEMM rate this device reaches, the denominator of MFU.
double measured_peak_flops(Device device, DType dtype) {
  int64_t n = device.is_cpu() ? 1024 : 8192;
  Tensor a = Tensor::randn({n, n}, DType::f32, device).to(dtype);
  Tensor b = Tensor::randn({n, n}, DType::f32, device).to(dtype);
  double best = 1e30;
  for (int r = 0; r < 4; ++r) {
    backend_for(device).synchronize(device.index);
    auto t0 = Clock::now();
    Tensor out = matmul(a, b);
    backend_for(device).synchronize(device.index);
    if (r > 0) best = std::min(best, ms_since(t0) / 1e3);
  }
  return 2.0 * static_cast<double>(n) * n * n / best;
}

// The group a multi-rank benchmark runs on: MPI for --device cpu; NCCL, bootstrapped by MPI, for
// cuda (each rank its local rank's GPU) or cuda:K (exactly that GPU).
std::shared_ptr<dist::ProcessGroup> make_bench_group(const std::string& device_text) {
  const Device device = Device::parse(device_text);
  auto mpi = dist::ProcessGroupMPI::create();
  if (device.is_cpu()) return mpi;
#ifdef DTRAIN_WITH_CUDA
  return dist::ProcessGroupNCCL::create(mpi, device_text == "cuda" ? -1 : device.index);
#else
  throw Error("--device " + device_text + " needs a CUDA build of dtrain; use --device cpu");
#endif
}

int bench_step(const TrainConfig& c, int steps) {
  Device device = Device::parse(c.device);
  select_device(device);   // as the trainer runs: this GPU, chosen once
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
  auto sync = [&] { backend_for(device).synchronize(device.index); };
  double fwd = 0, bwd = 0, opt = 0;
  for (int s = 0; s < steps + 1; ++s) {  // step 0 warms up
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
  DType peak_dtype = c.precision == "f32" ? DType::f32 : (c.precision == "f16" ? DType::f16 : DType::bf16);
  if (device.is_cpu()) peak_dtype = DType::f32;  // the CPU computes in f32 whatever it stores
  double peak = measured_peak_flops(device, peak_dtype);
  double achieved = m.flops_per_step / (step_ms / 1e3);
  std::printf("bench step: %s (%lld parameters), batch %lld, %s, %s, %d threads\n", c.model.c_str(),
              static_cast<long long>(m.module->num_parameters()), static_cast<long long>(c.batch_size),
              c.precision.c_str(), device.str().c_str(), get_num_threads());
  std::printf("  step %.1f ms = forward %.1f + backward %.1f + optimizer %.1f + communication 0.0\n",
              step_ms, fwd, bwd, opt);
  std::printf("  throughput: %.1f %s/s\n", static_cast<double>(m.items) / (step_ms / 1e3), m.unit.c_str());
  std::printf("  model %.2f TFLOP/s; peak %s GEMM %.2f TFLOP/s; MFU %.1f%%\n", achieved / 1e12,
              dtype_name(peak_dtype), peak / 1e12, 100.0 * achieved / peak);
  std::printf("  syncs per step: %.2f (host waits for the device, over %d untimed steps)\n",
              syncs_per_step, steps);
  return 0;
}

}  // namespace

int run_bench(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << kBenchUsage << std::endl;
    return args.empty() ? 2 : 0;
  }
  const std::string what = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (what == "allreduce") {
    dist::AllReduceBenchOptions o;
    std::string dtype = "f32", device = "cpu", collective = "all_reduce";
    po::options_description opts("dtrain bench allreduce options");
    opts.add_options()("help,h", "print this help")
        ("min-bytes", po::value(&o.min_bytes)->default_value(o.min_bytes), "smallest message")
        ("max-bytes", po::value(&o.max_bytes)->default_value(o.max_bytes), "largest message")
        ("iters", po::value(&o.iters)->default_value(o.iters), "timed iterations per size")
        ("dtype", po::value(&dtype)->default_value(dtype), "f32 | bf16 | f16 | f64")
        ("device", po::value(&device)->default_value(device),
         "cpu (MPI) | cuda (NCCL, each rank its local rank's GPU) | cuda:N")
        ("collective", po::value(&collective)->default_value(collective),
         "all_reduce | reduce_scatter | all_gather | all");
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
    const std::vector<dist::BenchCollective> collectives = dist::parse_bench_collectives(collective);
    {
      auto pg = make_bench_group(device);
      for (dist::BenchCollective c : collectives) {
        dist::bench_collective(*pg, c, o, pg->rank() == 0 ? &std::cout : nullptr);
      }
    }
    dist::finalize_mpi();
    return 0;
  }
  if (what == "ddp" || what == "step") {
    TrainConfig c;
    c.batch_size = 32;
    c.steps = 10;
    if (!parse_train_config(rest, c, what == "ddp" ? "bench ddp" : "bench step")) return 0;
    const int steps = static_cast<int>(std::max<int64_t>(1, c.steps));
    if (what == "step") return bench_step(c, steps);
    {
      auto pg = make_bench_group(c.device);
      set_allow_tf32(c.tf32);
      if (c.threads > 0) set_num_threads(c.threads);
      BenchModel m = make_bench_model(c, c.batch_size / pg->size(), pg->device());
      auto optimizer = make_optimizer(c, decay_groups(*m.module));
      dist::DdpBenchOptions o;
      o.steps = steps;
      o.ddp.bucket_cap_mb = c.bucket_cap_mb;
      dist::bench_ddp(m.module, pg, m.loss, [&] { optimizer->step(); }, o,
                      pg->rank() == 0 ? &std::cout : nullptr);
    }
    dist::finalize_mpi();
    return 0;
  }
  throw Error("dtrain bench: unknown benchmark '" + what + "'; use allreduce, ddp or step");
}

}  // namespace dtrain::launch
