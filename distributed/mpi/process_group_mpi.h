// ProcessGroupMPI: collectives on CPU tensors over Open MPI, and the job's bootstrap (rank, size, and
// the channel NCCL's unique id travels on).
//
// One communication thread per group runs the collectives, in the order they were issued, with MPI's
// blocking calls (MPI_Allreduce, ...: the library's tuned algorithms, and MPI keeps them progressing);
// the caller gets a Work at once and continues - DDP's backward pass, for instance. A second thread is
// the watchdog: a collective still running after the timeout prints a message naming it, its size and
// the rank, then MPI_Abort brings the whole job down.
//
// f16 and bf16 travel as 16-bit words and are reduced by user-defined MPI operations that compute in
// f32 and round once per combining step.
#pragma once
#include <mpi.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "distributed/process_group.h"

namespace dtrain::dist {

// The MPI datatype that carries `t`'s elements (f16 and bf16 travel as 16-bit words, which only
// dtrain's own reduction ops add).
MPI_Datatype mpi_type(DType t);

class ProcessGroupMPI final : public ProcessGroup {
 public:
  // A group over MPI_COMM_WORLD (duplicated, so dtrain's messages never mix with the caller's).
  // Initialises MPI when nobody has yet, asking for MPI_THREAD_MULTIPLE; without a launcher this makes
  // a one-rank job (MPI singleton). An MPI initialised below MPI_THREAD_SERIALIZED is an error.
  static std::shared_ptr<ProcessGroupMPI> create(
      ProcessGroupOptions options = ProcessGroupOptions::from_environment());
  ~ProcessGroupMPI() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend_name() const override { return "mpi"; }
  Device device() const override { return Device::cpu(); }
  MPI_Comm comm() const { return comm_; }

  WorkPtr broadcast(const Tensor& tensor, int root = 0) override;
  WorkPtr all_reduce(const Tensor& tensor, ReduceOp op = ReduceOp::sum) override;
  WorkPtr reduce_scatter(const Tensor& output, const Tensor& input,
                         ReduceOp op = ReduceOp::sum) override;
  WorkPtr all_gather(const Tensor& output, const Tensor& input) override;
  WorkPtr barrier() override;
  void raw_all_reduce(const Tensor& tensor) override;

  class MpiWork;

 private:
  ProcessGroupMPI(ProcessGroupOptions options, MPI_Comm comm, bool thread_multiple);
  WorkPtr enqueue(std::shared_ptr<MpiWork> work);
  void run_loop();
  void run_one(MpiWork& work);
  void watch_loop();
  // Before a collective moves data: do all ranks issue the same one? "" when they do, else the error.
  std::string check_agreement(const MpiWork& work);

  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm raw_comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  bool thread_multiple_ = false;

  std::mutex mutex_;
  std::condition_variable queue_cv_;
  std::deque<std::shared_ptr<MpiWork>> queue_;
  std::atomic<size_t> queued_{0};  // queue_.size(), readable without the lock
  bool stopping_ = false;
  std::thread thread_;
  int64_t issued_ = 0;  // collectives run so far (the communication thread's)
  std::string broken_;  // set by a disagreement: every later collective fails with it, without MPI

  std::mutex watch_mutex_;
  std::condition_variable watch_cv_;
  MpiWork* running_ = nullptr;  // the collective inside MPI right now
  bool watch_stopping_ = false;
  std::thread watchdog_;
};

// Finalises MPI if it is initialised and not yet finalised. Call it once at the end of a successful
// run, after every ProcessGroupMPI is gone: a rank that exits without it counts as failed and mpiexec
// takes the job down (which is what an error path wants - see abort_job).
void finalize_mpi();
// This process's rank in MPI_COMM_WORLD; 0 when MPI is not running.
int world_rank();
// Prints `message` (when not empty) prefixed with the rank and ends every rank of the job with `code`
// (MPI_Abort); without MPI initialised, just exits.
[[noreturn]] void abort_job(const std::string& message, int code = 1);

}  // namespace dtrain::dist
