// What the `dtrain bench` subcommands share: the models they time, on a fixed synthetic batch, and the
// process group a multi-rank benchmark runs on. bench/commands.cpp holds allreduce, ddp and step;
// bench/scaling.cpp the sweep over world sizes (scaling) and the projection to clusters (project).
#pragma once
#include <boost/program_options.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/nn/module.h"
#include "distributed/process_group.h"
#include "launch/config.h"
#include "launch/optimizer_factory.h"

namespace dtrain::bench {

// The benchmarks take the training configuration's options and build optimizers as training does.
using launch::decay_groups;
using launch::make_optimizer;
using launch::parse_train_config;
using launch::TrainConfig;

// A model and a fixed synthetic batch for the step, ddp, scaling and project benchmarks.
struct BenchModel {
  std::shared_ptr<nn::Module> module;
  std::function<Tensor()> loss;
  double flops_per_step = 0;  // forward + backward model FLOPs
  int64_t items = 0;          // images or tokens per step
  std::string unit;
};

// The training workload of --model on `--dataset synthetic` (launch/workload.h), its loss on a fixed
// batch of `batch` samples: vit (sizes from --model-size and the shape options), vit-b16 (ViT-B/16 at
// 224x224, 1000 classes), gpt (byte vocabulary, --model-size), gpt2 (GPT-2 small's shape: width 768,
// 12 blocks, 12 heads, vocabulary 50257, context --seq-len).
BenchModel make_bench_model(const launch::TrainConfig& c, int64_t batch, Device device);

// The best f32 (CPU) or bf16 (GPU) GEMM rate this device reaches, the denominator of MFU.
double measured_peak_flops(Device device, DType dtype);

// The group a multi-rank benchmark runs on: MPI for --device cpu; NCCL, bootstrapped by MPI, for
// cuda (each rank its local rank's GPU) or cuda:K (exactly that GPU).
std::shared_ptr<dist::ProcessGroup> make_bench_group(const std::string& device_text);

// The options a benchmark takes besides the training configuration's: parsed out of `args`, which
// keeps the rest (for parse_train_config).
void take_bench_options(std::vector<std::string>& args,
                        const boost::program_options::options_description& opts,
                        boost::program_options::variables_map& vm);

// `dtrain bench <allreduce|ddp|step|scaling|project> [options]` (bench/commands.cpp).
int run_bench(const std::vector<std::string>& args);
int run_bench_scaling(const std::vector<std::string>& args);
int run_bench_project(const std::vector<std::string>& args);

}  // namespace dtrain::bench
