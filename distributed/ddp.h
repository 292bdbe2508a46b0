// DistributedDataParallel: data-parallel training of one nn::Module replicated on every rank.
//
//   DistributedDataParallel ddp(model, pg);            // checks the replicas, copies rank 0's weights
//   for (...) {
//     Tensor loss = cross_entropy(model->forward(x), y);   // x: this rank's share of the global batch
//     loss.backward();                                      // buckets are all-reduced during backward
//     ddp.finish_gradient_synchronization();                // wait; every .grad is now the global mean
//     opt.step(); opt.zero_grad();
//   }
//
// Gradients are grouped into buckets of about bucket_cap_mb, filled in reverse registration order (the
// order backward produces them). Each parameter's post-accumulate-grad hook copies its gradient into
// its bucket's flat buffer, pre-divided by the world size; when a bucket's last gradient arrives, its
// sum all-reduce starts at once on the process group's communication thread, overlapping the rest of
// backward. Buckets start strictly in index order, so every rank issues the same collectives in the
// same order even when gradients become ready in different orders. finish_gradient_synchronization()
// waits for the buckets and copies the averaged gradients back into each .grad.
//
// Gradient accumulation: backward passes inside a no_sync() scope only accumulate into .grad; the next
// backward outside it reduces the accumulated sum.
//
//   { auto guard = ddp.no_sync(); for (k < K-1) { (loss_k / K).backward(); } }
//   (loss_K / K).backward(); ddp.finish_gradient_synchronization();
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/nn/module.h"
#include "distributed/process_group.h"

namespace dtrain::dist {

// The communication hook: which dtype buckets travel in. bf16/f16 halve the bytes (the sums are formed
// in f32 and rounded to 16 bits at each combining step); gradients are converted back to their own
// dtype after the reduction.
enum class GradCompression : uint8_t { none, bf16, f16 };

struct DDPOptions {
  double bucket_cap_mb = 25.0;
  // false: a trainable parameter that got no gradient in a synchronised backward is an error naming
  // it. true: tolerated - its slot is reduced as zeros (or its gradient accumulated under no_sync), and
  // a parameter that got no gradient on any rank keeps .grad undefined, so the optimizer skips it.
  // Costs one extra small all-reduce per step.
  bool find_unused_parameters = false;
  GradCompression compression = GradCompression::none;
  int root = 0;  // the rank whose initial parameters and buffers everyone starts from
};

// Which parameters share a bucket. `bytes[i]` and `dtypes[i]` describe parameter i in registration
// order. Parameters are taken in reverse order and appended to the open bucket of their dtype, which
// closes once it holds at least `cap_bytes`; a parameter larger than the cap gets a bucket of its own.
// Buckets are numbered in the order they were opened, so bucket 0 holds the last-registered parameters
// (the first gradients backward produces). Each bucket lists its parameters in the order they were
// added (reverse registration order).
std::vector<std::vector<size_t>> assign_buckets(const std::vector<size_t>& bytes,
                                                const std::vector<DType>& dtypes, size_t cap_bytes);

class DistributedDataParallel {
 public:
  // Checks that every rank built the same model (an error on every rank naming the first difference),
  // broadcasts parameters and buffers from options.root, plans the buckets and installs the hooks.
  // Parameters that do not require grad are broadcast but never reduced.
  DistributedDataParallel(std::shared_ptr<nn::Module> module, std::shared_ptr<ProcessGroup> pg,
                          DDPOptions options = {});
  ~DistributedDataParallel();  // the hooks stay on the tensors but do nothing from then on
  DistributedDataParallel(const DistributedDataParallel&) = delete;
  DistributedDataParallel& operator=(const DistributedDataParallel&) = delete;

  nn::Module& module() const { return *module_; }
  ProcessGroup& process_group() const { return *pg_; }
  const DDPOptions& options() const { return options_; }

  // While a NoSync lives, backward passes do not reduce; gradients accumulate locally.
  class NoSync {
   public:
    explicit NoSync(DistributedDataParallel& ddp);
    ~NoSync();
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;

   private:
    DistributedDataParallel& ddp_;
    bool previous_;
  };
  [[nodiscard]] NoSync no_sync() { return NoSync(*this); }
  bool sync_enabled() const;

  // Waits for every bucket, launching those that have not started (unused parameters, see
  // DDPOptions), and writes the averaged gradients back into .grad. Call once after each backward
  // that ran outside no_sync(); inside no_sync() it does nothing.
  void finish_gradient_synchronization();

  // Re-broadcasts buffers from options.root (for modules whose buffers change in forward).
  void broadcast_buffers();

  // ---- introspection (tests, benchmarks)
  struct BucketInfo {
    std::vector<std::string> names;  // its parameters, in bucket order
    int64_t numel = 0;
    DType dtype = DType::f32;  // the dtype it travels in
  };
  std::vector<BucketInfo> buckets() const;

  // Timings of the last synchronised step, for the overlap test and `dtrain bench ddp`.
  struct BucketTiming {
    Clock::time_point launched;      // when its all-reduce was handed to the process group
    Clock::time_point comm_start;    // when the library started it
    Clock::time_point comm_end;      // when it completed
    int64_t params_ready_at_launch = 0;  // trainable parameters whose gradient was final by then
    bool launched_in_backward = false;   // from a hook, rather than by finish_gradient_synchronization
  };
  struct StepTiming {
    std::vector<BucketTiming> buckets;
    Clock::time_point first_hook, last_hook;  // first and last gradient that arrived in backward
    Clock::time_point finish_begin, finish_end;  // finish_gradient_synchronization's call
    int64_t num_params = 0;  // trainable parameters
    // Seconds the collectives were running, and how many of those fell before finish began (hidden
    // behind backward); collectives run one at a time, so these are sums of disjoint intervals.
    double comm_seconds() const;
    double hidden_comm_seconds() const;
  };
  const StepTiming& last_step_timing() const;

  struct State;  // shared with the hooks

 private:
  std::shared_ptr<nn::Module> module_;
  std::shared_ptr<ProcessGroup> pg_;
  DDPOptions options_;
  std::shared_ptr<State> state_;
};

}  // namespace dtrain::dist
