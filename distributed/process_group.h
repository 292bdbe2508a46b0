// ProcessGroup: the ranks of one job and the collectives between them. Every collective is
// asynchronous: it returns a Work whose wait() orders what follows after it (see Work::wait).
// Collectives must be issued in the same order on every rank (as in MPI and NCCL). Each has a
// timeout (10 minutes unless configured); when it passes, the job is aborted with a message naming
// the collective, its size and the rank, so a rank that died or took another code path brings the
// job down instead of hanging it.
//
// Tensors passed to collectives are contiguous, live on the group's device kind (ProcessGroupMPI: CPU,
// ProcessGroupNCCL: CUDA) and are modified in place; the Work keeps them alive until it completes.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor/tensor.h"

namespace dtrain::dist {

// How all_reduce and reduce_scatter combine the ranks' values. avg is sum / size (floating dtypes only).
enum class ReduceOp : uint8_t { sum, avg, max };
const char* reduce_op_name(ReduceOp op);  // "sum", "avg", "max"

// What a collective's timeout is measured from: the moment it was handed to the communication library.
using Clock = std::chrono::steady_clock;

class Work {
 public:
  virtual ~Work() = default;
  // True once this rank's part finished (non-blocking).
  virtual bool is_completed() = 0;
  // Orders what this rank does next after the collective; throws dtrain::Error if it failed (a
  // timeout aborts the job). CPU groups (MPI) block the host until it is done. GPU groups (NCCL) need
  // not: the device's compute stream waits for it, so work queued there afterwards (kernels, copies,
  // item()) sees the result while the host runs ahead; their barrier() still blocks the host.
  virtual void wait() = 0;
  // When the collective started in the library and when it finished; epoch (zero) until known. DDP
  // reads them to measure how much communication overlapped backward.
  virtual Clock::time_point start_time() const { return {}; }
  virtual Clock::time_point end_time() const { return {}; }
};
using WorkPtr = std::shared_ptr<Work>;

struct ProcessGroupOptions {
  // A collective not finished after this long aborts the job. DTRAIN_COLLECTIVE_TIMEOUT_S (seconds) in
  // the environment overrides the default.
  std::chrono::milliseconds timeout = std::chrono::minutes(10);
  // Every collective is checked across ranks before it moves data. Always: that the ranks issued the
  // same collective with the same op, dtype, element count and root (one small all-reduce), so that a
  // rank on another code path gets an error naming both collectives instead of a buffer overrun.
  // With debug_collectives (DTRAIN_DEBUG_COLLECTIVES=1, or `dtrain train --debug-collectives`), also
  // the full shapes, compared rank by rank (an all-gather of every rank's description).
  bool debug_collectives = false;
  static ProcessGroupOptions from_environment();
};

// An error raised alike on every rank (ranks that disagree on a collective or on their options): rank 0
// reports it for the job, and the others stay quiet.
class AllRanksError : public Error {
 public:
  using Error::Error;
};

class ProcessGroup {
 public:
  explicit ProcessGroup(ProcessGroupOptions options) : options_(options) {}
  virtual ~ProcessGroup() = default;
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* backend_name() const = 0;  // "mpi", "nccl"
  // Where this group's tensors live (CPU for MPI; this rank's GPU for NCCL).
  virtual Device device() const = 0;

  // tensor on every rank <- tensor on `root`.
  virtual WorkPtr broadcast(const Tensor& tensor, int root = 0) = 0;
  // tensor on every rank <- op over all ranks' tensors (elementwise).
  virtual WorkPtr all_reduce(const Tensor& tensor, ReduceOp op = ReduceOp::sum) = 0;
  // input holds size() equal chunks (input.numel() == size() * output.numel()); output on rank r <- op
  // over all ranks of chunk r.
  virtual WorkPtr reduce_scatter(const Tensor& output, const Tensor& input,
                                 ReduceOp op = ReduceOp::sum) = 0;
  // output (size() * input.numel() elements) <- every rank's input, rank r's at chunk r.
  virtual WorkPtr all_gather(const Tensor& output, const Tensor& input) = 0;
  virtual WorkPtr barrier() = 0;

  // A blocking sum all-reduce made directly with the library's own call (MPI_Allreduce, ncclAllReduce +
  // stream sync), bypassing dtrain's queue and watchdog: the reference the all-reduce benchmark prints
  // beside each row.
  virtual void raw_all_reduce(const Tensor& tensor) = 0;

  // The group for small host-side values (a stop flag, a path): this one for MPI; the MPI group NCCL
  // started from for NCCL, so that agreeing on a flag does not wait for the GPU.
  virtual ProcessGroup& host() { return *this; }

  const ProcessGroupOptions& options() const { return options_; }

 protected:
  ProcessGroupOptions options_;
};

// ---- helpers built on the interface

// Blocking all-reduce of one number (metrics, flags). Uses an f64 tensor on the group's device.
double all_reduce_value(ProcessGroup& pg, double value, ReduceOp op);
// True on every rank when `flag` is true on any rank.
bool any_rank(ProcessGroup& pg, bool flag);
// Every rank's `values` (the same count on every rank), concatenated in rank order.
std::vector<int64_t> all_gather_values(ProcessGroup& pg, const std::vector<int64_t>& values);
// Runs `step` on every rank, then all ranks learn whether it threw anywhere: if so, every rank throws
// AllRanksError with the message of the lowest failing rank (prefixed "rank r: " unless r is 0), so a
// failure that is the same everywhere (a bad option, a missing dataset) is reported once, not per rank.
void run_on_every_rank(ProcessGroup& pg, const std::function<void()>& step);
// Every rank's `text`, in rank order (any lengths).
std::vector<std::string> all_gather_strings(ProcessGroup& pg, const std::string& text);
// Broadcasts `tensors` from `root`, packing those of one dtype into one flat buffer (few large messages
// instead of many small ones). The tensors are updated in place; they need not be contiguous.
void broadcast_coalesced(ProcessGroup& pg, const std::vector<Tensor>& tensors, int root = 0);

// Describes a collective for messages: "all_reduce(sum) of 1000003 f32 elements (3.8 MiB)".
std::string describe_collective(const std::string& name, int64_t numel, DType dtype);

// What the ranks must agree on for one collective before data moves (both groups check it), as i64
// words: kind, op (-1: none), dtype (-1: no tensor), root (-1: none) and the element count of `shared`
// (the input where there is one, else the tensor worked on in place); with `full`, also the number of
// dimensions and kCollectiveShapeDims sizes (-1 past the last).
enum class CollectiveKind : uint8_t { broadcast, all_reduce, reduce_scatter, all_gather, barrier };
constexpr int kCollectiveSignatureWords = 5;
constexpr int kCollectiveShapeDims = 8;
std::vector<int64_t> collective_signature(CollectiveKind kind, ReduceOp op, int root,
                                          const Tensor& shared, bool full);
// "all_reduce", ... for a CollectiveKind's value ("?" for another number).
const char* collective_kind_name(int64_t kind);
// "all_reduce(sum) of 1000 f32 elements (...)", with ", shape [10, 100]" when `full`.
std::string describe_collective_signature(const int64_t* words, bool full);

// The launcher's idea of this process's index among the ranks on its node, read from the environment
// (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID, MPI_LOCALRANKID, LOCAL_RANK); 0 without a launcher.
int local_rank_from_environment();
// This process's index among the ranks on its node, and their number: from MPI once a process group
// started it (MPI_Comm_split_type with MPI_COMM_TYPE_SHARED, so any launcher), else from the
// environment (local rank as above; size from OMPI_COMM_WORLD_LOCAL_SIZE, SLURM_NTASKS_PER_NODE,
// LOCAL_WORLD_SIZE, or 1). The local rank picks the GPU.
int local_rank();
int local_size();
void set_node_placement(int local_rank, int local_size);
// True when a launcher (mpirun/mpiexec, srun) started this process.
bool launched_by_mpi_launcher();

}  // namespace dtrain::dist
