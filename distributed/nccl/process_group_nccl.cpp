#include "distributed/nccl/process_group_nccl.h"

#include <vector>

#include "core/backend/backend.h"
#include "core/backend/cuda/cuda_check.h"
#include "core/backend/cuda/cuda_device.h"

namespace dtrain::dist {

namespace {

void check_nccl(ncclResult_t status, const char* call, ncclComm_t comm = nullptr) {
  if (status == ncclSuccess) return;
  std::string name(call);
  if (size_t paren = name.find('('); paren != std::string::npos) name.resize(paren);
  const char* last = ncclGetLastError(comm);
  throw Error(detail::concat(name, " failed: ", ncclGetErrorString(status),
                             last && *last ? std::string(" (") + last + ")" : std::string(),
                             "; set NCCL_DEBUG=WARN for NCCL's own report"));
}
#define DTRAIN_NCCL_CHECK(call) check_nccl((call), #call, comm_)

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::f16: return ncclFloat16;
    case DType::bf16: return ncclBfloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::avg: return ncclAvg;
    case ReduceOp::max: return ncclMax;
  }
  return ncclSum;
}

void check_cuda_contiguous(const Tensor& t, int device, const char* op, const char* role) {
  DTRAIN_CHECK(t.defined(), "ProcessGroupNCCL::", op, ": the ", role, " tensor is undefined");
  DTRAIN_CHECK(t.device() == Device::cuda(device), "ProcessGroupNCCL::", op, ": the ", role,
               " tensor is on ", t.device().str(), " but this group's ranks use cuda:", device,
               "; move it there (or use the MPI group for CPU tensors)");
  DTRAIN_CHECK(t.is_contiguous(), "ProcessGroupNCCL::", op, ": the ", role, " tensor of shape ",
               shape_str(t.shape()), " is not contiguous; pass .contiguous() and copy the result back");
}

void check_reduce_op(ReduceOp op, DType t, const char* name) {
  DTRAIN_CHECK(op != ReduceOp::avg || is_floating(t), "ProcessGroupNCCL::", name,
               "(avg) needs a floating tensor, got ", dtype_name(t), "; use sum and divide");
}

}  // namespace

// ---- Work

class ProcessGroupNCCL::NcclWork final : public Work {
 public:
  NcclWork(int device, std::string what) : device_(device), what_(std::move(what)) {
    DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  }
  ~NcclWork() override {
    if (done_) (void)cudaEventDestroy(done_);
  }

  bool is_completed() override {
    if (completed_.load(std::memory_order_acquire)) return true;
    const cudaError_t status = cudaEventQuery(done_);
    if (status == cudaErrorNotReady) return false;
    cuda::check_cuda(status, "cudaEventQuery");
    mark_completed();
    return true;
  }

  // Blocks the host until the collective is done (the interface's contract, and what lets DDP read
  // end_time() right after). Work queued afterwards on any stream then sees the result.
  void wait() override {
    cuda::DeviceGuard guard(device_);
    DTRAIN_CUDA_CHECK(cudaEventSynchronize(done_));
    mark_completed();
  }

  Clock::time_point start_time() const override { return start_; }
  Clock::time_point end_time() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return end_;
  }

  const std::string& what() const { return what_; }
  cudaEvent_t done_event() const { return done_; }
  void set_start(Clock::time_point t) { start_ = t; }
  void keep(const Tensor& t) { tensors_.push_back(t); }

  void mark_completed() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (completed_.load(std::memory_order_relaxed)) return;
    end_ = Clock::now();
    tensors_.clear();  // the allocator already knows the NCCL stream used them (record_stream)
    completed_.store(true, std::memory_order_release);
  }

 private:
  int device_;
  std::string what_;
  cudaEvent_t done_ = nullptr;
  std::vector<Tensor> tensors_;
  mutable std::mutex mutex_;
  std::atomic<bool> completed_{false};
  Clock::time_point start_{}, end_{};
};

// ---- the group

std::shared_ptr<ProcessGroupNCCL> ProcessGroupNCCL::create(
    const std::shared_ptr<ProcessGroupMPI>& bootstrap, int device, ProcessGroupOptions options) {
  DTRAIN_CHECK(bootstrap, "ProcessGroupNCCL::create needs the MPI group that bootstraps it");
  const int count = cuda_device_count();
  DTRAIN_CHECK(count > 0, "ProcessGroupNCCL: no CUDA device is visible on rank ", bootstrap->rank(),
               "; run with --device cpu to use the MPI group");
  if (device < 0) device = local_rank_from_environment() % count;
  DTRAIN_CHECK(device < count, "ProcessGroupNCCL: cuda:", device, " requested but only ", count,
               " device(s) are visible on rank ", bootstrap->rank());
  const int rank = bootstrap->rank(), size = bootstrap->size();

  // Rank 0 makes the id; every rank receives it over MPI (a blocking call on this thread, which is
  // allowed beside the MPI group's communication thread under MPI_THREAD_MULTIPLE).
  ncclUniqueId id{};
  if (rank == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  const int rc = MPI_Bcast(&id, static_cast<int>(sizeof id), MPI_BYTE, 0, bootstrap->comm());
  DTRAIN_CHECK(rc == MPI_SUCCESS, "ProcessGroupNCCL: MPI_Bcast of the NCCL unique id failed on rank ",
               rank);
  cuda::DeviceGuard guard(device);
  (void)cuda::device_context(device);  // the compute stream exists before any collective
  ncclComm_t comm = nullptr;
  check_nccl(ncclCommInitRank(&comm, size, id, rank), "ncclCommInitRank");
  return std::shared_ptr<ProcessGroupNCCL>(new ProcessGroupNCCL(options, rank, size, device, comm));
}

ProcessGroupNCCL::ProcessGroupNCCL(ProcessGroupOptions options, int rank, int size, int device,
                                   ncclComm_t comm)
    : ProcessGroup(options), rank_(rank), size_(size), device_(device), comm_(comm) {
  cuda::DeviceGuard guard(device_);
  // Highest priority: a collective's kernels get SMs ahead of the backward kernels they overlap.
  int least = 0, greatest = 0;
  DTRAIN_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  DTRAIN_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, greatest));
  watchdog_ = std::thread([this] { watchdog_loop(); });
}

ProcessGroupNCCL::~ProcessGroupNCCL() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();  // returns once every collective has finished
  (void)cudaSetDevice(device_);
  if (stream_) (void)cudaStreamSynchronize(stream_);
  if (comm_) (void)ncclCommDestroy(comm_);
  if (stream_) (void)cudaStreamDestroy(stream_);
}

void ProcessGroupNCCL::watchdog_loop() {
  (void)cudaSetDevice(device_);
  for (;;) {
    std::shared_ptr<NcclWork> oldest;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || !in_flight_.empty(); });
      if (in_flight_.empty()) return;  // stopping, and nothing left
      oldest = in_flight_.front();
    }
    // Collectives on one stream finish in order: watching the oldest is enough.
    bool done = false;
    try {
      done = oldest->is_completed();
    } catch (const std::exception& e) {
      (void)ncclCommAbort(comm_);
      abort_job(detail::concat("ProcessGroupNCCL: ", oldest->what(), " failed: ", e.what()));
    }
    if (done) {
      std::lock_guard<std::mutex> lock(mutex_);
      in_flight_.pop_front();
      continue;
    }
    ncclResult_t async = ncclSuccess;
    if (ncclCommGetAsyncError(comm_, &async) == ncclSuccess && async != ncclSuccess &&
        async != ncclInProgress) {
      const std::string reason = ncclGetErrorString(async);
      (void)ncclCommAbort(comm_);
      abort_job(detail::concat("ProcessGroupNCCL: ", oldest->what(), " failed: ", reason,
                               "; set NCCL_DEBUG=WARN for NCCL's own report"));
    }
    if (Clock::now() - oldest->start_time() > options_.timeout) {
      const double seconds = std::chrono::duration<double>(options_.timeout).count();
      (void)ncclCommAbort(comm_);
      abort_job(detail::concat(oldest->what(), " on NCCL did not complete within ", seconds,
                               " s (the collective timeout): another rank failed, hangs, or took a "
                               "different code path; aborting the job"));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

template <class Issue>
WorkPtr ProcessGroupNCCL::launch(const std::string& what, std::initializer_list<Tensor> tensors,
                                 Issue issue) {
  cuda::DeviceGuard guard(device_);
  auto work = std::make_shared<NcclWork>(device_, what);
  // The collective reads what the compute stream has queued so far.
  cudaEvent_t ready = nullptr;
  DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
  DTRAIN_CUDA_CHECK(cudaEventRecord(ready, cuda::cuda_compute_stream(device_)));
  DTRAIN_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready, 0));
  DTRAIN_CUDA_CHECK(cudaEventDestroy(ready));  // released once it has fired
  for (const Tensor& t : tensors) {
    cuda::cuda_record_stream(t, stream_);
    work->keep(t);
  }
  work->set_start(Clock::now());
  issue();
  DTRAIN_CUDA_CHECK(cudaEventRecord(work->done_event(), stream_));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    in_flight_.push_back(work);
  }
  cv_.notify_one();
  return work;
}

WorkPtr ProcessGroupNCCL::broadcast(const Tensor& tensor, int root) {
  check_cuda_contiguous(tensor, device_, "broadcast", "");
  DTRAIN_CHECK(root >= 0 && root < size_, "ProcessGroupNCCL::broadcast: root ", root,
               " is not a rank of this group of ", size_);
  return launch(describe_collective("broadcast", tensor.numel(), tensor.dtype()), {tensor}, [&] {
    DTRAIN_NCCL_CHECK(ncclBroadcast(tensor.raw_data(), tensor.raw_data(),
                                    static_cast<size_t>(tensor.numel()), nccl_type(tensor.dtype()),
                                    root, comm_, stream_));
  });
}

WorkPtr ProcessGroupNCCL::all_reduce(const Tensor& tensor, ReduceOp op) {
  check_cuda_contiguous(tensor, device_, "all_reduce", "");
  check_reduce_op(op, tensor.dtype(), "all_reduce");
  const std::string what = describe_collective(
      std::string("all_reduce(") + reduce_op_name(op) + ")", tensor.numel(), tensor.dtype());
  return launch(what, {tensor}, [&] {
    DTRAIN_NCCL_CHECK(ncclAllReduce(tensor.raw_data(), tensor.raw_data(),
                                    static_cast<size_t>(tensor.numel()), nccl_type(tensor.dtype()),
                                    nccl_op(op), comm_, stream_));
  });
}

WorkPtr ProcessGroupNCCL::reduce_scatter(const Tensor& output, const Tensor& input, ReduceOp op) {
  check_cuda_contiguous(output, device_, "reduce_scatter", "output");
  check_cuda_contiguous(input, device_, "reduce_scatter", "input");
  check_reduce_op(op, input.dtype(), "reduce_scatter");
  DTRAIN_CHECK(output.dtype() == input.dtype(), "ProcessGroupNCCL::reduce_scatter: output is ",
               dtype_name(output.dtype()), " but input is ", dtype_name(input.dtype()));
  DTRAIN_CHECK(input.numel() == output.numel() * size_, "ProcessGroupNCCL::reduce_scatter: input ",
               shape_str(input.shape()), " must hold ", size_, " chunks of the output's ",
               output.numel(), " elements");
  const std::string what = describe_collective(
      std::string("reduce_scatter(") + reduce_op_name(op) + ")", input.numel(), input.dtype());
  return launch(what, {output, input}, [&] {
    DTRAIN_NCCL_CHECK(ncclReduceScatter(input.raw_data(), output.raw_data(),
                                        static_cast<size_t>(output.numel()),
                                        nccl_type(input.dtype()), nccl_op(op), comm_, stream_));
  });
}

WorkPtr ProcessGroupNCCL::all_gather(const Tensor& output, const Tensor& input) {
  check_cuda_contiguous(output, device_, "all_gather", "output");
  check_cuda_contiguous(input, device_, "all_gather", "input");
  DTRAIN_CHECK(output.dtype() == input.dtype(), "ProcessGroupNCCL::all_gather: output is ",
               dtype_name(output.dtype()), " but input is ", dtype_name(input.dtype()));
  DTRAIN_CHECK(output.numel() == input.numel() * size_, "ProcessGroupNCCL::all_gather: output ",
               shape_str(output.shape()), " must hold ", size_, " chunks of the input's ",
               input.numel(), " elements");
  return launch(describe_collective("all_gather", output.numel(), output.dtype()), {output, input},
                [&] {
                  DTRAIN_NCCL_CHECK(ncclAllGather(input.raw_data(), output.raw_data(),
                                                  static_cast<size_t>(input.numel()),
                                                  nccl_type(input.dtype()), comm_, stream_));
                });
}

WorkPtr ProcessGroupNCCL::barrier() {
  // NCCL has no barrier: a one-element all-reduce.
  Tensor token = Tensor::zeros({1}, DType::f32, Device::cuda(device_));
  return launch("barrier", {token}, [&] {
    DTRAIN_NCCL_CHECK(ncclAllReduce(token.raw_data(), token.raw_data(), 1, ncclFloat32, ncclSum,
                                    comm_, stream_));
  });
}

void ProcessGroupNCCL::raw_all_reduce(const Tensor& tensor) {
  check_cuda_contiguous(tensor, device_, "raw_all_reduce", "");
  cuda::DeviceGuard guard(device_);
  // On the group's stream too: NCCL collectives of one communicator must run in the same order on
  // every rank, which two streams would not guarantee.
  cudaEvent_t ready = nullptr;
  DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
  DTRAIN_CUDA_CHECK(cudaEventRecord(ready, cuda::cuda_compute_stream(device_)));
  DTRAIN_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready, 0));
  DTRAIN_CUDA_CHECK(cudaEventDestroy(ready));
  DTRAIN_NCCL_CHECK(ncclAllReduce(tensor.raw_data(), tensor.raw_data(),
                                  static_cast<size_t>(tensor.numel()), nccl_type(tensor.dtype()),
                                  ncclSum, comm_, stream_));
  DTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

}  // namespace dtrain::dist
