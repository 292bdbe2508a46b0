// The DDP overhead benchmark behind `dtrain bench ddp`. The same N processes run the same training
// step twice: first as N independent replicas (forward, backward, update; no communication), then
// wrapped in DistributedDataParallel with the same per-rank batch. The difference is what data
// parallelism costs:
//
//   overhead = (t_ddp - t_independent) / t_independent
//
// and of the time the bucket all-reduces ran, the part that fell before backward returned was hidden
// behind computation:
//
//   hidden = sum over buckets of |[comm_start, comm_end] before finish_gradient_synchronization| / comm
//
// Step times are the slowest rank's mean over the timed steps (a data-parallel job moves at the pace of
// its slowest rank). On a GPU each timed step ends with a device synchronisation, so a step's time is
// the device's, not the time the host took to queue it. There finish_gradient_synchronization() does
// not block the host (NCCL's wait() is a stream wait): its "waited for in finish" is near 0 and the
// communication left exposed shows in the step time instead.
#pragma once
#include <functional>
#include <iosfwd>
#include <memory>

#include "core/nn/module.h"
#include "distributed/ddp.h"
#include "bench/scaling_model.h"

namespace dtrain::bench {

// The timings of one synchronised DDP step, as a StepTimer saw them.
struct BucketTiming {
  dist::Clock::time_point launched;    // when its all-reduce was handed to the process group
  dist::Clock::time_point comm_start;  // when the library started it
  dist::Clock::time_point comm_end;    // when it completed
  int64_t params_ready_at_launch = 0;  // trainable parameters whose gradient was final by then
  bool launched_in_backward = false;  // from a hook, rather than by finish_gradient_synchronization
};
struct StepTiming {
  std::vector<BucketTiming> buckets;
  dist::Clock::time_point first_hook,
      last_hook;  // first and last gradient that arrived in backward
  dist::Clock::time_point finish_begin, finish_end;  // finish_gradient_synchronization's call
  // Seconds the collectives were running, and how many of those fell before finish began (hidden
  // behind backward); collectives run one at a time, so these are sums of disjoint intervals.
  double comm_seconds() const;
  double hidden_comm_seconds() const;
};

// Records each step of the DDP it observes (DistributedDataParallel::add_observer).
class StepTimer : public dist::DistributedDataParallel::Observer {
 public:
  // The last finished step. Its collectives' start and end are known once they have completed: on a
  // GPU that may mean waiting for the device (a host sync), so a step nobody asks about costs nothing.
  const StepTiming& last();

  void gradient_ready(size_t param, int64_t ready) override;
  void bucket_launched(size_t bucket, const dist::WorkPtr& work, bool in_backward,
                       int64_t ready) override;
  void finish_begin() override;
  void finish_end() override;

 private:
  void begin_if_idle();
  bool in_step_ = false;
  StepTiming current_, last_;
  std::vector<dist::WorkPtr> works_, last_works_;
};

struct DdpBenchOptions {
  int warmup_steps = 3;
  int steps = 10;
  dist::DDPOptions ddp;
};

struct DdpBenchResult {
  int world_size = 1;
  int64_t parameters = 0;
  int buckets = 0;
  double independent_step_ms = 0;  // N replicas, no communication
  double ddp_step_ms = 0;          // the same with DDP
  double overhead_percent = 0;
  double comm_ms = 0;    // per step: time the bucket all-reduces ran
  double hidden_ms = 0;  // per step: the part of it before backward returned
  double hidden_percent = 0;
  double exposed_ms = 0;  // per step: time spent waiting in finish_gradient_synchronization
  // Each bucket's all-reduce: its bytes and its mean time from start to end in the library (the
  // slowest rank's), the samples the scaling model fits its link from.
  std::vector<CollectiveSample> bucket_comm;
};

// `loss` runs this rank's forward on its fixed batch and returns the loss; `update` (may be empty)
// runs after the gradients are final (an optimizer step and zero_grad). Gradients are cleared after
// every step either way. Collective: every rank calls it. Rank 0 prints a short report to `out` when
// it is not null.
DdpBenchResult bench_ddp(std::shared_ptr<nn::Module> model, std::shared_ptr<dist::ProcessGroup> pg,
                         const std::function<Tensor()>& loss, const std::function<void()>& update,
                         const DdpBenchOptions& options, std::ostream* out);

}  // namespace dtrain::bench
