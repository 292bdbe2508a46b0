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

  // Whoever measures DDP (bench/ddp_overhead.h's StepTimer, the overlap test) watches a step through
  // an observer; DDP keeps no timings of its own. Observers are called on the thread that runs backward
  // and finish_gradient_synchronization, in the order they were added, and must not throw.
  class Observer {
   public:
    virtual ~Observer() = default;
    // Parameter `param`'s gradient is final (from its hook, in backward); `ready` of the trainable
    // parameters' gradients are final so far in this step.
    virtual void gradient_ready(size_t param, int64_t ready) { (void)param, (void)ready; }
    // Bucket `bucket`'s all-reduce was handed to the process group: from a hook while backward ran
    // (`in_backward`), or by finish_gradient_synchronization. `work` tells when it started and ended.
    virtual void bucket_launched(size_t bucket, const WorkPtr& work, bool in_backward,
                                 int64_t ready) {
      (void)bucket, (void)work, (void)in_backward, (void)ready;
    }
    // finish_gradient_synchronization was entered, and is about to return.
    virtual void finish_begin() {}
    virtual void finish_end() {}
  };
  void add_observer(std::shared_ptr<Observer> observer);
  // Trainable parameters (the indices gradient_ready reports, in registration order).
  int64_t num_trainable() const;

  struct State;  // shared with the hooks

 private:
  std::shared_ptr<nn::Module> module_;
  std::shared_ptr<ProcessGroup> pg_;
  DDPOptions options_;
  std::shared_ptr<State> state_;
};

}  // namespace dtrain::dist
