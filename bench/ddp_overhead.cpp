#include "bench/ddp_overhead.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ostream>
#include <thread>

#include "core/backend/runtime.h"

namespace dtrain::bench {

using dist::all_reduce_value;
using dist::Clock;
using dist::DistributedDataParallel;
using dist::ProcessGroup;
using dist::ReduceOp;

namespace {
double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}
}  // namespace

// ---- StepTimer

void StepTimer::begin_if_idle() {
  if (in_step_) return;
  in_step_ = true;
  current_ = StepTiming{};
  works_.clear();
}

void StepTimer::gradient_ready(size_t, int64_t ready) {
  begin_if_idle();
  const Clock::time_point now = Clock::now();
  if (ready == 1) current_.first_hook = now;
  current_.last_hook = now;
}

void StepTimer::bucket_launched(size_t bucket, const dist::WorkPtr& work, bool in_backward,
                                int64_t ready) {
  begin_if_idle();
  if (current_.buckets.size() <= bucket) current_.buckets.resize(bucket + 1);
  if (works_.size() <= bucket) works_.resize(bucket + 1);
  BucketTiming& t = current_.buckets[bucket];
  t.launched = Clock::now();
  t.params_ready_at_launch = ready;
  t.launched_in_backward = in_backward;
  works_[bucket] = work;
}

void StepTimer::finish_begin() {
  begin_if_idle();
  current_.finish_begin = Clock::now();
}

void StepTimer::finish_end() {
  current_.finish_end = Clock::now();
  last_ = current_;
  last_works_ = std::move(works_);
  works_.clear();
  in_step_ = false;
}

const StepTiming& StepTimer::last() {
  for (size_t b = 0; b < last_works_.size(); ++b) {
    const dist::WorkPtr& w = last_works_[b];
    if (!w) continue;
    if (!w->is_completed()) {
      count_host_sync();
      while (!w->is_completed()) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    last_.buckets[b].comm_start = w->start_time();
    last_.buckets[b].comm_end = w->end_time();
  }
  last_works_.clear();
  return last_;
}

double StepTiming::comm_seconds() const {
  double total = 0;
  for (const BucketTiming& b : buckets) total += seconds_between(b.comm_start, b.comm_end);
  return total;
}

double StepTiming::hidden_comm_seconds() const {
  double hidden = 0;
  for (const BucketTiming& b : buckets) {
    const Clock::time_point end = std::min(b.comm_end, finish_begin);
    if (end > b.comm_start) hidden += seconds_between(b.comm_start, end);
  }
  return hidden;
}

// ---- the benchmark

DdpBenchResult bench_ddp(std::shared_ptr<nn::Module> model, std::shared_ptr<ProcessGroup> pg,
                         const std::function<Tensor()>& loss, const std::function<void()>& update,
                         const DdpBenchOptions& options, std::ostream* out) {
  DTRAIN_CHECK(options.steps > 0 && options.warmup_steps >= 0, "bench ddp: steps = ", options.steps,
               " and warmup_steps = ", options.warmup_steps, " must be positive and non-negative");
  DdpBenchResult r;
  r.world_size = pg->size();
  r.parameters = model->num_parameters(true);

  // The host waits for the device at the end of each timed step (nothing to wait for on the CPU).
  const Device device = pg->device();
  auto device_done = [&] { synchronize(device); };

  // Both phases run the same step; `sync` is what DDP adds.
  auto run = [&](const std::function<void()>& sync, const std::function<void()>& after_step) {
    for (int i = 0; i < options.warmup_steps; ++i) {
      loss().backward();
      sync();
      if (update) update();
      model->zero_grad();
    }
    device_done();
    pg->barrier()->wait();
    double total = 0;
    for (int i = 0; i < options.steps; ++i) {
      const Clock::time_point start = Clock::now();
      loss().backward();
      sync();
      if (update) update();
      device_done();
      total += seconds_between(start, Clock::now());
      after_step();
      model->zero_grad();
    }
    return all_reduce_value(*pg, total / options.steps, ReduceOp::max);
  };

  r.independent_step_ms = run([] {}, [] {}) * 1e3;

  DistributedDataParallel ddp(model, pg, options.ddp);
  auto timer = std::make_shared<StepTimer>();
  ddp.add_observer(timer);
  r.buckets = static_cast<int>(ddp.buckets().size());
  double comm = 0, hidden = 0, exposed = 0;
  std::vector<double> bucket_seconds(r.buckets, 0.0);
  r.ddp_step_ms = run([&] { ddp.finish_gradient_synchronization(); },
                      [&] {
                        const StepTiming& t = timer->last();
                        comm += t.comm_seconds();
                        hidden += t.hidden_comm_seconds();
                        exposed += seconds_between(t.finish_begin, t.finish_end);
                        for (size_t b = 0; b < t.buckets.size() && b < bucket_seconds.size(); ++b) {
                          bucket_seconds[b] +=
                              seconds_between(t.buckets[b].comm_start, t.buckets[b].comm_end);
                        }
                      }) *
                  1e3;
  r.comm_ms = all_reduce_value(*pg, comm / options.steps, ReduceOp::avg) * 1e3;
  r.hidden_ms = all_reduce_value(*pg, hidden / options.steps, ReduceOp::avg) * 1e3;
  r.exposed_ms = all_reduce_value(*pg, exposed / options.steps, ReduceOp::avg) * 1e3;
  const std::vector<DistributedDataParallel::BucketInfo> infos = ddp.buckets();
  for (int b = 0; b < r.buckets; ++b) {
    const int64_t bytes = infos[b].numel * static_cast<int64_t>(dtype_size(infos[b].dtype));
    const double seconds = all_reduce_value(*pg, bucket_seconds[b] / options.steps, ReduceOp::max);
    r.bucket_comm.push_back(CollectiveSample{r.world_size, static_cast<double>(bytes), seconds});
  }
  r.overhead_percent = 100.0 * (r.ddp_step_ms - r.independent_step_ms) / r.independent_step_ms;
  r.hidden_percent = r.comm_ms > 0 ? 100.0 * r.hidden_ms / r.comm_ms : 0.0;

  if (out != nullptr && pg->rank() == 0) {
    char line[512];
    std::snprintf(
        line, sizeof line,
        "# bench ddp: %d ranks (%s on %s), %lld trainable parameters in %d buckets "
        "(bucket_cap_mb %.1f), %d timed steps\n"
        "  independent step  %9.2f ms   (N replicas, no communication)\n"
        "  ddp step          %9.2f ms   overhead %+.1f %%\n"
        "  all-reduce        %9.2f ms   per step, of which %.2f ms (%.0f %%) hidden behind "
        "backward; %.2f ms waited for in finish\n",
        r.world_size, pg->backend_name(), pg->device().str().c_str(),
        static_cast<long long>(r.parameters), r.buckets, options.ddp.bucket_cap_mb, options.steps,
        r.independent_step_ms, r.ddp_step_ms, r.overhead_percent, r.comm_ms, r.hidden_ms,
        r.hidden_percent, r.exposed_ms);
    *out << line;
    out->flush();
  }
  return r;
}

}  // namespace dtrain::bench
