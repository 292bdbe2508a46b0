#include "bench/bench.h"

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>

#include "core/amp/autocast.h"
#include "core/backend/runtime.h"
#include "core/ops/ops.h"
#include "distributed/mpi/process_group_mpi.h"
#ifdef DTRAIN_WITH_CUDA
#include "distributed/nccl/process_group_nccl.h"
#endif
#include "launch/workload.h"

namespace dtrain::bench {

namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}
}  // namespace

BenchModel make_bench_model(const TrainConfig& c, int64_t batch, Device device) {
  // The training workload itself, on seeded random samples of its input shape.
  TrainConfig w = c;
  w.dataset = "synthetic";
  if (c.model == "vit-b16") {
    w.model = "vit", w.model_size = "base";
  } else if (c.model == "gpt2") {
    w.model = "gpt", w.model_size = "gpt2";
  } else if (c.model != "vit" && c.model != "gpt") {
    throw Error("dtrain bench: --model must be vit, vit-b16, gpt or gpt2, got '" + c.model + "'");
  }
  w.batch_size = std::max(w.batch_size, batch);
  manual_seed(c.seed);
  std::shared_ptr<launch::Workload> workload = launch::make_workload(w, device);
  std::vector<int64_t> indices(static_cast<size_t>(batch));
  for (size_t i = 0; i < indices.size(); ++i) indices[i] = static_cast<int64_t>(i);
  data::Batch b = workload->train_set->get_batch(indices, c.seed);
  b.input = b.input.to(device);
  b.target = b.target.to(device);
  BenchModel m;
  m.module = workload->shared_model();
  m.items = workload->items(b);
  m.flops_per_step = workload->train_flops_per_item() * static_cast<double>(m.items);
  m.unit = workload->unit();
  const bool mixed = c.precision != "f32";
  const DType low = c.precision == "f16" ? DType::f16 : DType::bf16;
  m.loss = [workload, b, low, mixed] {
    amp::AutocastGuard autocast(low, mixed);
    return workload->loss(b);
  };
  return m;
}

double measured_peak_flops(Device device, DType dtype) {
  int64_t n = device.is_cpu() ? 1024 : 8192;
  Tensor a = Tensor::randn({n, n}, DType::f32, device).to(dtype);
  Tensor b = Tensor::randn({n, n}, DType::f32, device).to(dtype);
  double best = 1e30;
  for (int r = 0; r < 4; ++r) {
    synchronize(device);
    auto t0 = Clock::now();
    Tensor out = matmul(a, b);
    synchronize(device);
    if (r > 0) best = std::min(best, ms_since(t0) / 1e3);
  }
  return 2.0 * static_cast<double>(n) * n * n / best;
}

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

void take_bench_options(std::vector<std::string>& args,
                        const boost::program_options::options_description& opts,
                        boost::program_options::variables_map& vm) {
  namespace po = boost::program_options;
  try {
    po::parsed_options parsed =
        po::command_line_parser(args).options(opts).allow_unregistered().run();
    po::store(parsed, vm);
    po::notify(vm);
    args = po::collect_unrecognized(parsed.options, po::include_positional);
  } catch (const po::error& e) {
    throw Error(std::string(e.what()) +
                " (dtrain bench --help lists the benchmarks, each takes --help)");
  }
}

}  // namespace dtrain::bench
