// ProcessGroupNCCL: collectives on CUDA tensors over NCCL, one communicator per group, bootstrapped
// through MPI (rank 0 makes the ncclUniqueId, MPI_Bcast hands it to every rank).
//
// Streams: collectives run on the group's own high-priority stream, so they overlap the backward
// pass queued on the compute stream (core/backend/cuda/cuda_device.h). Each collective first waits
// (cudaStreamWaitEvent) for an event recorded on the compute stream when it was issued, so it reads
// the values the compute stream produced; its tensors are marked as used on the NCCL stream, so the
// caching allocator does not reuse their memory until the collective is done. Work::wait() blocks the
// host until the collective's completion event fires (the interface's contract), so the host can run
// the backward pass ahead while collectives proceed, and everything queued after wait() sees the
// result. is_completed() asks the event without blocking.
//
// A watchdog thread polls outstanding collectives: one not finished within the timeout, or an
// asynchronous NCCL error, aborts the communicator and brings the job down with a message naming the
// collective and the rank (dist::abort_job), so a failed rank never leaves the others hanging.
#pragma once
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "distributed/mpi/process_group_mpi.h"
#include "distributed/process_group.h"

namespace dtrain::dist {

class ProcessGroupNCCL final : public ProcessGroup {
 public:
  // A group over the ranks of `bootstrap` (collective: every rank must call it). `device` < 0 picks
  // cuda:(local rank % visible devices), the launcher's local rank (local_rank_from_environment()).
  // NCCL needs a distinct GPU per rank of a node.
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

  class NcclWork;

 private:
  ProcessGroupNCCL(ProcessGroupOptions options, int rank, int size, int device, ncclComm_t comm);
  // Runs `issue` (the NCCL call) on the group's stream after the compute stream's current work, and
  // returns the Work tracking it. `tensors` are kept alive and marked as used on the stream.
  template <class Issue>
  WorkPtr launch(const std::string& what, std::initializer_list<Tensor> tensors, Issue issue);
  void watchdog_loop();

  int rank_ = 0;
  int size_ = 1;
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<NcclWork>> in_flight_;
  bool stopping_ = false;
  std::thread watchdog_;
};

}  // namespace dtrain::dist
