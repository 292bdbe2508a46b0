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
#include "models/gpt.h"
#include "models/vit.h"

namespace dtrain::bench {

namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}
}  // namespace

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
    Tensor images =
        Tensor::randn({batch, vc.in_channels, vc.image_size, vc.image_size}, DType::f32, device);
    Tensor labels = Tensor::zeros({batch}, DType::i64, device);
    m.loss = [=] {
      amp::AutocastGuard autocast(low, mixed);
      return cross_entropy(vit->forward(images).to(DType::f32), labels);
    };
    m.module = vit;
    m.flops_per_step = 3.0 * models::vit_forward_flops(vc) * static_cast<double>(batch);
    m.items = batch;
    m.unit = "images";
  } else if (c.model == "gpt" || c.model == "gpt2") {
    models::GptConfig gc;
    if (c.model == "gpt2") {
      gc.vocab_size = 50257, gc.max_len = c.seq_len;
      gc.dim = 768, gc.depth = 12, gc.heads = 12, gc.mlp_dim = 3072;
    } else {
      gc = models::GptConfig::preset(c.model_size == "fm" ? "small" : c.model_size, 256, c.seq_len);
    }
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
    throw Error("dtrain bench: --model must be vit, vit-b16, gpt or gpt2, got '" + c.model + "'");
  }
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
