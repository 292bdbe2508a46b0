#include "launch/commands.h"

#include <cstdio>
#include <iostream>

#include "distributed/mpi/process_group_mpi.h"
#ifdef DTRAIN_WITH_CUDA
#include "distributed/nccl/process_group_nccl.h"
#endif
#include "launch/config.h"
#include "launch/trainer.h"

namespace dtrain::launch {

void abort_other_ranks() {
  // Only a multi-rank job has others to end; abort_job takes the whole MPI job down with exit code 1.
  if (dist::launched_by_mpi_launcher()) dist::abort_job("");
}

namespace {
// MPI always (it starts the job and serves CPU tensors); NCCL on top of it when training on GPUs.
std::shared_ptr<dist::ProcessGroup> make_process_group(const TrainConfig& config) {
  dist::ProcessGroupOptions options{
      .timeout = std::chrono::milliseconds(static_cast<int64_t>(config.collective_timeout_s * 1000))};
  auto mpi = dist::ProcessGroupMPI::create(options);
  if (Device::parse(config.device).is_cpu()) return mpi;
#ifdef DTRAIN_WITH_CUDA
  return dist::ProcessGroupNCCL::create(mpi, -1, options);
#else
  throw Error("--device " + config.device + " needs a CUDA build of dtrain; use --device cpu");
#endif
}
}  // namespace

int run_train(const std::vector<std::string>& args) {
  TrainConfig config;
  if (!parse_train_config(args, config, "train")) return 0;
  {
    auto pg = make_process_group(config);
    TrainResult r = train(config, pg);
    if (pg->rank() == 0) {
      std::string unit = config.model == "vit" ? "images" : "tokens";
      char line[256];
      std::snprintf(line, sizeof line, "done: %lld steps, final loss %.4f, throughput: %.1f %s/s",
                    static_cast<long long>(r.steps), r.final_loss, r.items_per_s, unit.c_str());
      std::cout << line;
      for (auto it = r.eval.begin(); it != r.eval.end(); ++it) {
        std::cout << ", " << it.key() << " " << it.value().dump();
      }
      std::cout << std::endl;
    }
  }
  dist::finalize_mpi();
  return 0;
}

int run_eval(const std::vector<std::string>& args) {
  TrainConfig config;
  if (!parse_train_config(args, config, "eval")) return 0;
  DTRAIN_CHECK(!config.resume.empty(), "dtrain eval needs --resume CHECKPOINT_DIR (the checkpoint to evaluate)");
  {
    auto pg = make_process_group(config);
    nlohmann::json metrics = evaluate_checkpoint(config, *pg);
    if (pg->rank() == 0) std::cout << "eval " << config.resume << ": " << metrics.dump() << std::endl;
  }
  dist::finalize_mpi();
  return 0;
}

}  // namespace dtrain::launch
