// ProcessGroupNCCL: collectives on CUDA tensors over NCCL, one communicator per group, bootstrapped
// through MPI (rank 0 makes the ncclUniqueId, the MPI group broadcasts it).
//
// Streams: collectives run on the group's own high-priority stream, so they overlap the backward
// pass queued on the compute stream (core/backend/cuda/cuda_device.h). Each collective first waits
// (cudaStreamWaitEvent) for an event recorded on the compute stream when it was issued, so it reads
// the values the compute stream produced; its tensors are marked as used on the NCCL stream, so the
// caching allocator does not reuse their memory until the collective is done.
//
// Work::wait() does not block the host: it makes the compute stream wait for the collective's done
// event (cudaStreamWaitEvent), as PyTorch's c10d does. Everything queued on the compute stream after
// wait() sees the result, while the host runs ahead - DDP queues the optimizer step while the last
// bucket is still being reduced. A host read of the result (item(), to_vector()) waits as it would
// for any kernel. The exception is barrier(), whose wait() blocks the host (that is what a barrier
// is for); it counts as a host synchronisation (dtrain::host_sync_count).
//
// Timing: a Work's end_time() is the moment the watchdog saw the done event fire (epoch until then),
// and start_time() becomes end_time() minus the collective's duration measured by CUDA events on the
// stream; before completion it is the moment the host issued the collective.
//
// Agreement: before a collective moves data, the ranks check that they issued the same one (kind,
// op, dtype, element count, root), as ProcessGroupMPI does. Normally on the device: a 10-word
// all-reduce (max of the signature and of its negation) on the NCCL stream just ahead of the data,
// copied back to pinned memory; the watchdog compares the words once they arrive and, on a mismatch,
// aborts the job with a message naming the collective - before the mismatched collective can hang it,
// and without a host round trip on the caller's thread. With debug_collectives the full shapes are
// compared rank by rank through the MPI group before the collective is issued (a host round trip per
// collective), and a mismatch is an AllRanksError thrown on every rank.
//
// Watchdog: one thread blocks in cudaEventSynchronize on the oldest collective's events (created
// with cudaEventBlockingSync: the thread sleeps in the driver instead of spinning a core) and marks
// collectives complete in order. A blocked thread cannot notice a hang, so a second thread, the
// monitor, wakes every 100 ms while collectives are in flight: an asynchronous NCCL error, or a
// collective older than the timeout, aborts the communicator and brings the job down with a message
// naming the collective and the rank (dist::abort_job), so a failed rank never leaves the others
// hanging.
//
// The communicator is non-blocking (ncclConfig_t::blocking = 0): its initialisation is bounded by
// the group's timeout, and any NCCL call that answers ncclInProgress is polled to completion, within
// the timeout, before the next one.
#pragma once
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "distributed/mpi/process_group_mpi.h"
#include "distributed/process_group.h"

namespace dtrain::dist {

class ProcessGroupNCCL final : public ProcessGroup {
 public:
  // A group over the ranks of `bootstrap` (collective: every rank must call it), which it keeps.
  // `device` >= 0 is used as given and no other GPU is touched; < 0 picks cuda:(local rank), the
  // launcher's local rank (local_rank_from_environment()), after checking that the node has a GPU for
  // each of its ranks. Placement errors (no GPU, too few GPUs, two ranks of a node on one GPU, a
  // process that already drives another GPU) are AllRanksErrors, reported alike on every rank.
  // Selects `device` for the process (cuda_select_device): current on the calling thread, and on the
  // group's own threads before they make any CUDA call.
  static std::shared_ptr<ProcessGroupNCCL> create(
      const std::shared_ptr<ProcessGroupMPI>& bootstrap, int device = -1,
      ProcessGroupOptions options = ProcessGroupOptions::from_environment());
  ~ProcessGroupNCCL() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend_name() const override { return "nccl"; }
  Device device() const override { return Device::cuda(device_); }
  cudaStream_t stream() const { return stream_; }

  WorkPtr broadcast(const Tensor& tensor, int root = 0) override;
  WorkPtr all_reduce(const Tensor& tensor, ReduceOp op = ReduceOp::sum) override;
  WorkPtr reduce_scatter(const Tensor& output, const Tensor& input,
                         ReduceOp op = ReduceOp::sum) override;
  WorkPtr all_gather(const Tensor& output, const Tensor& input) override;
  WorkPtr barrier() override;
  void raw_all_reduce(const Tensor& tensor) override;
  ProcessGroup& host() override { return *bootstrap_; }

  // ---- for benchmarks (`dtrain bench allreduce --device cuda`)

  // The bare NCCL call on the group's stream, after the compute stream's queued work: no agreement
  // check, no Work, no watchdog, no wait. all_reduce works in place on `output`; reduce_scatter and
  // all_gather read `input`.
  void raw_collective(CollectiveKind kind, const Tensor& output, const Tensor& input = Tensor(),
                      ReduceOp op = ReduceOp::sum);
  // Seconds per call of `issue`, as the group's stream saw them: CUDA events recorded on the stream
  // before and after `calls` back-to-back calls; the host waits once, at the end.
  double time_on_stream(int calls, const std::function<void()>& issue);

  class NcclWork;

 private:
  ProcessGroupNCCL(ProcessGroupOptions options, std::shared_ptr<ProcessGroupMPI> bootstrap,
                   int device, ncclComm_t comm);
  // Runs `issue` (the NCCL call named `call`, returning its status) on the group's stream after the
  // compute stream's current work and the agreement check, and returns the Work tracking it.
  // `tensors` are kept alive and marked as used on the stream; `shared` is the tensor whose element
  // count the ranks must agree on.
  template <class Issue>
  WorkPtr launch(CollectiveKind kind, ReduceOp op, int root, const Tensor& shared,
                 std::initializer_list<Tensor> tensors, const char* call, Issue issue);
  // Makes the group's stream wait for the work queued on the compute stream so far.
  void follow_compute_stream();
  // `status` of an NCCL call on this communicator: ncclInProgress is polled until the call is done
  // (past the timeout the job is aborted); an error throws, naming `call` and `what` it was for.
  void finish_call(ncclResult_t status, const char* call, const std::string& what);
  // The debug_collectives check through the MPI group; throws AllRanksError on a mismatch.
  void check_agreement_on_host(const std::vector<int64_t>& signature, int64_t number);
  void watchdog_loop();
  void monitor_loop();
  [[noreturn]] void abort_with(const std::string& message);

  std::shared_ptr<ProcessGroupMPI> bootstrap_;
  int rank_ = 0;
  int size_ = 1;
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;  // recorded on the compute stream, waited for by the group's stream

  // The device-side agreement check: one slot of 2 x kSignatureWords i64 per collective in flight, in
  // pinned host memory (written by the host, read back by the watchdog) and on the device.
  static constexpr int kSignatureWords = kCollectiveSignatureWords;
  static constexpr size_t kAgreementSlots = 1024;
  int64_t* agreement_host_ = nullptr;
  Tensor agreement_device_;

  // Held around every NCCL call on the communicator after creation: ncclCommGetAsyncError of a
  // non-blocking communicator also completes the call in progress, so the monitor's check must not
  // run beside the issuing thread's calls.
  std::mutex nccl_mutex_;
  std::mutex mutex_;
  std::condition_variable watchdog_cv_;  // work arrived, or stopping
  std::condition_variable slot_cv_;      // a collective completed (an agreement slot is free)
  std::condition_variable monitor_cv_;   // work arrived, or the monitor stops
  std::deque<std::shared_ptr<NcclWork>> in_flight_;
  int64_t issued_ = 0;  // collectives issued so far (their number in messages)
  std::string broken_;  // set by a disagreement found on the host: every later collective fails
  bool stopping_ = false;
  bool monitor_stopping_ = false;
  std::thread watchdog_;
  std::thread monitor_;
};

}  // namespace dtrain::dist
