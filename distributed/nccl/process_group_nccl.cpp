#include "distributed/nccl/process_group_nccl.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include "core/backend/runtime.h"
#include "core/backend/cuda/cuda_check.h"
#include "core/backend/cuda/cuda_device.h"

namespace dtrain::dist {

namespace {

std::string nccl_error_text(ncclResult_t status, ncclComm_t comm) {
  const char* last = ncclGetLastError(comm);
  return detail::concat(ncclGetErrorString(status),
                        last && *last ? std::string(" (") + last + ")" : std::string());
}

void check_nccl(ncclResult_t status, const char* call, ncclComm_t comm = nullptr) {
  if (status == ncclSuccess) return;
  throw Error(detail::concat(call, " failed: ", nccl_error_text(status, comm),
                             "; set NCCL_DEBUG=WARN for NCCL's own report"));
}

double seconds_of(std::chrono::milliseconds d) { return std::chrono::duration<double>(d).count(); }

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f32:
      return ncclFloat32;
    case DType::f64:
      return ncclFloat64;
    case DType::f16:
      return ncclFloat16;
    case DType::bf16:
      return ncclBfloat16;
    case DType::i32:
      return ncclInt32;
    case DType::i64:
      return ncclInt64;
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return ncclSum;
    case ReduceOp::avg:
      return ncclAvg;
    case ReduceOp::max:
      return ncclMax;
  }
  return ncclSum;
}

void check_cuda_contiguous(const Tensor& t, int device, const char* op, const char* role) {
  DTRAIN_CHECK(t.defined(), "ProcessGroupNCCL::", op, ": the ", role, " tensor is undefined");
  DTRAIN_CHECK(t.device() == Device::cuda(device), "ProcessGroupNCCL::", op, ": the ", role,
               " tensor is on ", t.device().str(), " but this group's ranks use cuda:", device,
               "; move it there (or use the MPI group for CPU tensors)");
  DTRAIN_CHECK(t.is_contiguous(), "ProcessGroupNCCL::", op, ": the ", role, " tensor of shape ",
               shape_str(t.shape()),
               " is not contiguous; pass .contiguous() and copy the result back");
}

void check_reduce_op(ReduceOp op, DType t, const char* name) {
  DTRAIN_CHECK(op != ReduceOp::avg || is_floating(t), "ProcessGroupNCCL::", name,
               "(avg) needs a floating tensor, got ", dtype_name(t), "; use sum and divide");
}

void check_chunks(const Tensor& whole, const Tensor& chunk, int size, const char* op) {
  DTRAIN_CHECK(whole.dtype() == chunk.dtype(), "ProcessGroupNCCL::", op, ": the tensors are ",
               dtype_name(whole.dtype()), " and ", dtype_name(chunk.dtype()), "; use one dtype");
  DTRAIN_CHECK(whole.numel() == chunk.numel() * size, "ProcessGroupNCCL::", op, ": ",
               shape_str(whole.shape()), " must hold ", size, " chunks of ", chunk.numel(),
               " elements");
}

// One signature word as the message shows it.
std::string describe_word(int field, int64_t v) {
  if (field == 0) return collective_kind_name(v);
  if (v < 0) return "none";
  if (field == 1) return reduce_op_name(static_cast<ReduceOp>(v));
  if (field == 2) return dtype_name(static_cast<DType>(v));
  return std::to_string(v);
}

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "?";
  return name;
}

std::string cuda_error_text(cudaError_t status) {
  return detail::concat(cudaGetErrorName(status), " (", cudaGetErrorString(status), ")");
}

}  // namespace

// ---- Work

class ProcessGroupNCCL::NcclWork final : public Work {
 public:
  // `check`: this collective's agreement slot in pinned memory (nullptr when the ranks agreed on the
  // host); `host_wait`: wait() blocks the host (barrier).
  NcclWork(int device, std::string what, int64_t number, std::vector<int64_t> signature,
           const int64_t* check, bool host_wait)
      : device_(device),
        what_(std::move(what)),
        number_(number),
        signature_(std::move(signature)),
        check_(check),
        host_wait_(host_wait),
        issued_(Clock::now()) {
    // Blocking sync: the watchdog sleeps in cudaEventSynchronize instead of spinning a core. Timing
    // stays on: the collective's duration is the time between the two events.
    DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&started_, cudaEventBlockingSync));
    DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventBlockingSync));
  }
  ~NcclWork() override {
    if (started_) (void)cudaEventDestroy(started_);
    if (done_) (void)cudaEventDestroy(done_);
  }

  bool is_completed() override {
    if (completed_.load(std::memory_order_acquire)) return true;
    const cudaError_t status = cudaEventQuery(done_);
    if (status == cudaErrorNotReady) {
      (void)cudaGetLastError();  // "not yet" is no error for the next check_launch to find
      return false;
    }
    cuda::check_cuda(status, "cudaEventQuery");
    mark_completed();
    return true;
  }

  // A stream wait: the compute stream's later work sees the result; the host goes on. A barrier
  // blocks the host instead.
  void wait() override {
    if (host_wait_) {
      if (completed_.load(std::memory_order_acquire)) return;
      count_host_sync();
      DTRAIN_CUDA_CHECK(cudaEventSynchronize(done_));
      mark_completed();
      return;
    }
    DTRAIN_CUDA_CHECK(cudaStreamWaitEvent(cuda::cuda_compute_stream(device_), done_, 0));
  }

  Clock::time_point start_time() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return completed_.load(std::memory_order_relaxed) ? start_ : issued_;
  }
  Clock::time_point end_time() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return end_;
  }

  const std::string& what() const { return what_; }
  Clock::time_point issued() const { return issued_; }
  cudaEvent_t started_event() const { return started_; }
  cudaEvent_t done_event() const { return done_; }
  void keep(const Tensor& t) { tensors_.push_back(t); }

  // Called once the done event has fired: the end is now; the start is the end less the duration the
  // stream measured (never before the host issued the collective).
  void mark_completed() {
    const Clock::time_point now = Clock::now();
    std::lock_guard<std::mutex> lock(mutex_);
    if (completed_.load(std::memory_order_relaxed)) return;
    end_ = now;
    start_ = issued_;
    float ms = 0;
    if (cudaEventElapsedTime(&ms, started_, done_) == cudaSuccess) {
      const auto duration = std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double, std::milli>(ms));
      start_ = std::max(issued_, now - duration);
    }
    tensors_.clear();  // the allocator already knows the NCCL stream used them (record_stream)
    completed_.store(true, std::memory_order_release);
  }

  // After the started event fired: "" when every rank issued this collective, else the message. The
  // slot holds each signature word's maximum over the ranks and its negated minimum.
  std::string disagreement() const {
    if (check_ == nullptr) return "";
    static const char* fields[] = {"kind", "reduce op", "dtype", "root", "element count"};
    std::string differences;
    for (int i = 0; i < kSignatureWords; ++i) {
      const int64_t most = check_[i], least = -check_[kSignatureWords + i];
      if (most == least) continue;
      differences += detail::concat(differences.empty() ? "" : ", ", fields[i], " ",
                                    describe_word(i, least), " vs ", describe_word(i, most));
    }
    if (differences.empty()) return "";
    return detail::concat("ranks disagree on NCCL collective #", number_, ": this rank issued ",
                          describe_collective_signature(signature_.data(), false),
                          ", but across the ranks ", differences,
                          "; the ranks took different code paths (were they started "
                          "with different options?)");
  }

 private:
  int device_;
  std::string what_;
  int64_t number_;
  std::vector<int64_t> signature_;
  const int64_t* check_;
  bool host_wait_;
  Clock::time_point issued_;
  cudaEvent_t started_ = nullptr, done_ = nullptr;
  std::vector<Tensor> tensors_;
  mutable std::mutex mutex_;
  std::atomic<bool> completed_{false};
  Clock::time_point start_{}, end_{};
};

// ---- the group

std::shared_ptr<ProcessGroupNCCL> ProcessGroupNCCL::create(
    const std::shared_ptr<ProcessGroupMPI>& bootstrap, int device, ProcessGroupOptions options) {
  DTRAIN_CHECK(bootstrap, "ProcessGroupNCCL::create needs the MPI group that bootstraps it");
  const int rank = bootstrap->rank(), size = bootstrap->size();
  const int count = cuda_device_count();

  // Every rank learns where the others run before NCCL starts, so a bad placement is one error for
  // the job rather than a hang, or NCCL's "Duplicate GPU detected" on some of the ranks.
  const std::string host = host_name();
  const std::vector<std::string> hosts = all_gather_strings(*bootstrap, host);
  const auto local_size = std::count(hosts.begin(), hosts.end(), host);
  run_on_every_rank(*bootstrap, [&] {
    DTRAIN_CHECK(count > 0, "ProcessGroupNCCL: no CUDA device is visible on this rank (node ", host,
                 "); run with --device cpu to use the MPI group");
    if (device < 0) {
      DTRAIN_CHECK(local_size <= count, local_size, " ranks on this node (", host, ") but only ",
                   count, " GPUs are visible; start at most ", count,
                   " ranks per node or use --device cpu");
      device = local_rank();
      DTRAIN_CHECK(device < count, "ProcessGroupNCCL: the launcher's local rank ", device,
                   " has no GPU on node ", host, " (", count, " visible, ", local_size,
                   " ranks there); start the job with mpirun or srun, which number a node's ranks "
                   "from 0, or pass each rank its device");
    } else {
      DTRAIN_CHECK(device < count, "ProcessGroupNCCL: cuda:", device, " was asked for but only ",
                   count, " GPU(s) are visible on node ", host, " (cuda:0 to cuda:", count - 1,
                   ")");
    }
  });
  const std::vector<int64_t> devices = all_gather_values(*bootstrap, {device});
  std::map<std::pair<std::string, int64_t>, int> first_user;
  for (int r = 0; r < size; ++r) {
    const auto [it, fresh] = first_user.emplace(std::make_pair(hosts[r], devices[r]), r);
    if (fresh) continue;
    throw AllRanksError(detail::concat(
        "ranks ", it->second, " and ", r, " on node ", hosts[r], " both use cuda:", devices[r],
        "; NCCL needs a GPU of its own for each rank: give each rank of a node its own device "
        "(--device cuda picks the local rank's), or start fewer ranks per node"));
  }

  // The process's GPU from now on (an error if it already drives another), current on this thread.
  run_on_every_rank(*bootstrap, [&] { cuda::cuda_select_device(device); });
  (void)cuda::device_context(device);  // the compute stream exists before any collective

  // Rank 0 makes the id; the MPI group broadcasts it (through its queue and watchdog, so a rank that
  // never arrives ends the job instead of hanging it).
  static_assert(sizeof(ncclUniqueId) % sizeof(int64_t) == 0,
                "ncclUniqueId is a whole number of words");
  Tensor id_words =
      Tensor::zeros({static_cast<int64_t>(sizeof(ncclUniqueId) / sizeof(int64_t))}, DType::i64);
  run_on_every_rank(*bootstrap, [&] {
    if (rank != 0) return;
    ncclUniqueId id{};
    check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    std::memcpy(id_words.raw_data(), &id, sizeof id);
  });
  bootstrap->broadcast(id_words, 0)->wait();
  ncclUniqueId id{};
  std::memcpy(&id, id_words.raw_data(), sizeof id);

  // Non-blocking initialisation, polled here within the timeout: a blocking ncclCommInitRank waits
  // forever for a rank that died or cannot connect.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  ncclResult_t state = ncclCommInitRankConfig(&comm, size, id, rank, &config);
  const Clock::time_point deadline = Clock::now() + options.timeout;
  while (state == ncclInProgress) {
    if (Clock::now() > deadline) {
      (void)ncclCommAbort(comm);
      throw Error(detail::concat("ProcessGroupNCCL: rank ", rank,
                                 " did not finish NCCL initialisation within ",
                                 seconds_of(options.timeout),
                                 " s: another rank failed or cannot reach this one (check "
                                 "NCCL_SOCKET_IFNAME / network)"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const ncclResult_t query = ncclCommGetAsyncError(comm, &state);
    if (query != ncclSuccess) state = query;
  }
  if (state != ncclSuccess) {
    const std::string text = nccl_error_text(state, comm);
    if (comm != nullptr) (void)ncclCommAbort(comm);
    throw Error(detail::concat("ProcessGroupNCCL: NCCL initialisation failed on rank ", rank, ": ",
                               text, "; set NCCL_DEBUG=WARN for NCCL's own report"));
  }
  return std::shared_ptr<ProcessGroupNCCL>(new ProcessGroupNCCL(options, bootstrap, device, comm));
}

ProcessGroupNCCL::ProcessGroupNCCL(ProcessGroupOptions options,
                                   std::shared_ptr<ProcessGroupMPI> bootstrap, int device,
                                   ncclComm_t comm)
    : ProcessGroup(options),
      bootstrap_(std::move(bootstrap)),
      rank_(bootstrap_->rank()),
      size_(bootstrap_->size()),
      device_(device),
      comm_(comm) {
  cuda::DeviceGuard guard(device_);
  // Highest priority: a collective's kernels get SMs ahead of the backward kernels they overlap.
  int least = 0, greatest = 0;
  DTRAIN_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  DTRAIN_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, greatest));
  DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
  const size_t words = kAgreementSlots * 2 * kSignatureWords;
  agreement_device_ =
      Tensor::zeros({static_cast<int64_t>(words)}, DType::i64, Device::cuda(device_));
  void* host = nullptr;
  DTRAIN_CUDA_CHECK(cudaHostAlloc(&host, words * sizeof(int64_t), cudaHostAllocDefault));
  agreement_host_ = static_cast<int64_t*>(host);
  watchdog_ = std::thread([this] { watchdog_loop(); });
  monitor_ = std::thread([this] { monitor_loop(); });
}

ProcessGroupNCCL::~ProcessGroupNCCL() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  watchdog_cv_.notify_all();
  // Returns once every collective has finished; the monitor still bounds that by the timeout.
  if (watchdog_.joinable()) watchdog_.join();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    monitor_stopping_ = true;
  }
  monitor_cv_.notify_all();
  if (monitor_.joinable()) monitor_.join();

  // This group's device only (the caller's thread may be any thread).
  int current = -1;
  if (cudaGetDevice(&current) != cudaSuccess || current != device_) (void)cudaSetDevice(device_);
  if (stream_) {
    count_host_sync();  // raw collectives may still be queued
    (void)cudaStreamSynchronize(stream_);
  }
  if (comm_) {
    // Finalize flushes the communicator and waits for the peers (polled: the communicator is
    // non-blocking, and a peer that never gets there must not hang this one past the timeout).
    ncclResult_t state = ncclCommFinalize(comm_);
    const Clock::time_point deadline = Clock::now() + options_.timeout;
    while (state == ncclInProgress && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) break;
    }
    if (state == ncclSuccess) {
      (void)ncclCommDestroy(comm_);
    } else {
      (void)ncclCommAbort(comm_);
    }
  }
  if (ready_) (void)cudaEventDestroy(ready_);
  if (agreement_host_) (void)cudaFreeHost(agreement_host_);
  // stream_ is left to the process, like the backend's own streams: tensors the collectives used
  // were marked as used on it, and the caching allocator records an event on it when they are freed,
  // which may be after this group is gone.
}

void ProcessGroupNCCL::abort_with(const std::string& message) {
  // No ncclCommAbort first: it can block behind a kernel that waits for a dead peer, and MPI_Abort
  // ends every rank's process, their CUDA contexts and NCCL kernels with them.
  abort_job(message);
}

void ProcessGroupNCCL::watchdog_loop() {
  // Before any other CUDA call on this thread: the process's GPU, never device 0 by default.
  try {
    cuda::cuda_use_selected_device();
  } catch (const std::exception& e) {
    abort_with(
        detail::concat("ProcessGroupNCCL: the watchdog cannot use cuda:", device_, ": ", e.what()));
  }
  for (;;) {
    std::shared_ptr<NcclWork> oldest;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      watchdog_cv_.wait(lock, [&] { return stopping_ || !in_flight_.empty(); });
      if (in_flight_.empty()) return;  // stopping, and nothing left
      oldest = in_flight_.front();
    }
    // Collectives on one stream finish in order: the oldest is the one to wait for. The started event
    // fires once the agreement check's answer is in pinned memory, before the data moves.
    cudaError_t status = cudaEventSynchronize(oldest->started_event());
    if (status == cudaSuccess) {
      if (const std::string disagreement = oldest->disagreement(); !disagreement.empty()) {
        abort_with(disagreement);
      }
      status = cudaEventSynchronize(oldest->done_event());
    }
    if (status != cudaSuccess) {
      abort_with(detail::concat("ProcessGroupNCCL: ", oldest->what(),
                                " failed: ", cuda_error_text(status)));
    }
    oldest->mark_completed();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      in_flight_.pop_front();
    }
    slot_cv_.notify_all();
  }
}

void ProcessGroupNCCL::monitor_loop() {
  // Awake only while collectives are in flight, a few times per timeout and at least every 100 ms:
  // soon enough to report an asynchronous NCCL error, rarely enough to cost nothing.
  const auto period = std::clamp<std::chrono::milliseconds>(
      options_.timeout / 8, std::chrono::milliseconds(10), std::chrono::milliseconds(100));
  // Before any CUDA call NCCL might make on this thread: the process's GPU, never device 0.
  try {
    cuda::cuda_use_selected_device();
  } catch (const std::exception& e) {
    abort_with(
        detail::concat("ProcessGroupNCCL: the monitor cannot use cuda:", device_, ": ", e.what()));
  }
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    monitor_cv_.wait(lock, [&] { return monitor_stopping_ || !in_flight_.empty(); });
    if (monitor_stopping_) return;
    monitor_cv_.wait_for(lock, period);
    if (monitor_stopping_) return;
    if (in_flight_.empty()) continue;
    const std::shared_ptr<NcclWork> oldest = in_flight_.front();
    lock.unlock();
    // Skipped while the issuing thread is inside NCCL (it checks the state itself then).
    ncclResult_t async = ncclSuccess;
    std::unique_lock<std::mutex> nccl(nccl_mutex_, std::try_to_lock);
    if (nccl.owns_lock() && ncclCommGetAsyncError(comm_, &async) == ncclSuccess &&
        async != ncclSuccess && async != ncclInProgress) {
      abort_with(detail::concat("ProcessGroupNCCL: ", oldest->what(),
                                " failed: ", nccl_error_text(async, comm_),
                                "; set NCCL_DEBUG=WARN for NCCL's own report"));
    }
    if (nccl.owns_lock()) nccl.unlock();
    if (Clock::now() - oldest->issued() > options_.timeout) {
      abort_with(detail::concat(
          oldest->what(), " on NCCL did not complete within ", seconds_of(options_.timeout),
          " s (the collective timeout): another rank failed, hangs, or took a "
          "different code path; aborting the job"));
    }
    lock.lock();
  }
}

void ProcessGroupNCCL::follow_compute_stream() {
  DTRAIN_CUDA_CHECK(cudaEventRecord(ready_, cuda::cuda_compute_stream(device_)));
  DTRAIN_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
}

void ProcessGroupNCCL::finish_call(ncclResult_t status, const char* call, const std::string& what) {
  if (status == ncclSuccess) return;
  const std::string context = std::string(call) + " (" + what + ")";
  if (status != ncclInProgress) check_nccl(status, context.c_str(), comm_);
  // A non-blocking communicator may still be enqueuing (connecting to its peers on the first use of
  // an algorithm, for instance); nothing else may be called on it until that is done. This waits for
  // NCCL's host-side setup, not for the device, so it is not counted as a host synchronisation.
  const Clock::time_point deadline = Clock::now() + options_.timeout;
  for (;;) {
    ncclResult_t state = ncclSuccess;
    check_nccl(ncclCommGetAsyncError(comm_, &state), "ncclCommGetAsyncError", comm_);
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) check_nccl(state, context.c_str(), comm_);
    if (Clock::now() > deadline) {
      abort_with(detail::concat(what, " on NCCL did not complete within ",
                                seconds_of(options_.timeout),
                                " s (the collective timeout; NCCL was "
                                "still setting up ",
                                call,
                                "): another rank failed, hangs, or took "
                                "a different code path; aborting the job"));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

void ProcessGroupNCCL::check_agreement_on_host(const std::vector<int64_t>& mine, int64_t number) {
  const std::vector<int64_t> all = all_gather_values(*bootstrap_, mine);
  const size_t n = mine.size();
  for (int r = 1; r < size_; ++r) {
    const int64_t* theirs = all.data() + static_cast<size_t>(r) * n;
    if (std::equal(all.data(), all.data() + n, theirs)) continue;
    std::string message = detail::concat(
        "ranks disagree on NCCL collective #", number, ": rank 0 issued ",
        describe_collective_signature(all.data(), true), ", rank ", r, " issued ",
        describe_collective_signature(theirs, true),
        "; the ranks took different code paths (were they started with different options?)");
    {
      std::lock_guard<std::mutex> lock(mutex_);
      broken_ = message;
    }
    throw AllRanksError(message);
  }
}

template <class Issue>
WorkPtr ProcessGroupNCCL::launch(CollectiveKind kind, ReduceOp op, int root, const Tensor& shared,
                                 std::initializer_list<Tensor> tensors, const char* call,
                                 Issue issue) {
  const bool on_host = options_.debug_collectives;
  std::vector<int64_t> mine = collective_signature(kind, op, root, shared, on_host);
  int64_t number = 0;
  int64_t* slot = nullptr;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!broken_.empty()) throw AllRanksError(broken_);
    // The slot of collective k was last used by collective k - kAgreementSlots, which must have
    // completed (the in-flight collectives are the latest ones, in order).
    if (in_flight_.size() >= kAgreementSlots) {
      count_host_sync();
      slot_cv_.wait(lock, [&] { return in_flight_.size() < kAgreementSlots; });
    }
    number = ++issued_;
    if (!on_host) {
      const auto index = static_cast<size_t>(number - 1) % kAgreementSlots;
      slot = agreement_host_ + index * 2 * kSignatureWords;
    }
  }
  if (on_host) check_agreement_on_host(mine, number);

  cuda::DeviceGuard guard(device_);
  const std::string what = describe_collective_signature(mine.data(), false);
  std::vector<int64_t> words(mine.begin(), mine.begin() + kSignatureWords);
  auto work = std::make_shared<NcclWork>(device_, what, number, std::move(words), slot,
                                         kind == CollectiveKind::barrier);
  std::unique_lock<std::mutex> nccl(nccl_mutex_);
  // The collective reads what the compute stream has queued so far.
  follow_compute_stream();
  for (const Tensor& t : tensors) {
    cuda::cuda_record_stream(t, stream_);
    work->keep(t);
  }
  if (slot != nullptr) {
    // (x, -x) all-reduced with max gives every word's maximum and negated minimum over the ranks:
    // they agree exactly when the two match. The answer comes back to `slot` for the watchdog.
    for (int i = 0; i < kSignatureWords; ++i) {
      slot[i] = mine[static_cast<size_t>(i)];
      slot[kSignatureWords + i] = -mine[static_cast<size_t>(i)];
    }
    const size_t offset = static_cast<size_t>(slot - agreement_host_);
    int64_t* device_slot = agreement_device_.data<int64_t>() + offset;
    const size_t bytes = 2 * kSignatureWords * sizeof(int64_t);
    DTRAIN_CUDA_CHECK(cudaMemcpyAsync(device_slot, slot, bytes, cudaMemcpyHostToDevice, stream_));
    finish_call(ncclAllReduce(device_slot, device_slot, 2 * kSignatureWords, ncclInt64, ncclMax,
                              comm_, stream_),
                "ncclAllReduce", "the agreement check of " + what);
    DTRAIN_CUDA_CHECK(cudaMemcpyAsync(slot, device_slot, bytes, cudaMemcpyDeviceToHost, stream_));
  }
  DTRAIN_CUDA_CHECK(cudaEventRecord(work->started_event(), stream_));
  finish_call(issue(), call, what);
  DTRAIN_CUDA_CHECK(cudaEventRecord(work->done_event(), stream_));
  nccl.unlock();
  bool was_idle = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    was_idle = in_flight_.empty();
    in_flight_.push_back(work);
  }
  watchdog_cv_.notify_one();
  if (was_idle) monitor_cv_.notify_one();
  return work;
}

WorkPtr ProcessGroupNCCL::broadcast(const Tensor& tensor, int root) {
  check_cuda_contiguous(tensor, device_, "broadcast", "");
  DTRAIN_CHECK(root >= 0 && root < size_, "ProcessGroupNCCL::broadcast: root ", root,
               " is not a rank of this group of ", size_);
  return launch(CollectiveKind::broadcast, ReduceOp::sum, root, tensor, {tensor}, "ncclBroadcast",
                [&] {
                  return ncclBroadcast(tensor.raw_data(), tensor.raw_data(),
                                       static_cast<size_t>(tensor.numel()),
                                       nccl_type(tensor.dtype()), root, comm_, stream_);
                });
}

WorkPtr ProcessGroupNCCL::all_reduce(const Tensor& tensor, ReduceOp op) {
  check_cuda_contiguous(tensor, device_, "all_reduce", "");
  check_reduce_op(op, tensor.dtype(), "all_reduce");
  return launch(CollectiveKind::all_reduce, op, 0, tensor, {tensor}, "ncclAllReduce", [&] {
    return ncclAllReduce(tensor.raw_data(), tensor.raw_data(), static_cast<size_t>(tensor.numel()),
                         nccl_type(tensor.dtype()), nccl_op(op), comm_, stream_);
  });
}

WorkPtr ProcessGroupNCCL::reduce_scatter(const Tensor& output, const Tensor& input, ReduceOp op) {
  check_cuda_contiguous(output, device_, "reduce_scatter", "output");
  check_cuda_contiguous(input, device_, "reduce_scatter", "input");
  check_reduce_op(op, input.dtype(), "reduce_scatter");
  check_chunks(input, output, size_, "reduce_scatter");
  return launch(CollectiveKind::reduce_scatter, op, 0, input, {output, input}, "ncclReduceScatter",
                [&] {
                  return ncclReduceScatter(input.raw_data(), output.raw_data(),
                                           static_cast<size_t>(output.numel()),
                                           nccl_type(input.dtype()), nccl_op(op), comm_, stream_);
                });
}

WorkPtr ProcessGroupNCCL::all_gather(const Tensor& output, const Tensor& input) {
  check_cuda_contiguous(output, device_, "all_gather", "output");
  check_cuda_contiguous(input, device_, "all_gather", "input");
  check_chunks(output, input, size_, "all_gather");
  return launch(CollectiveKind::all_gather, ReduceOp::sum, 0, input, {output, input},
                "ncclAllGather", [&] {
                  return ncclAllGather(input.raw_data(), output.raw_data(),
                                       static_cast<size_t>(input.numel()), nccl_type(input.dtype()),
                                       comm_, stream_);
                });
}

WorkPtr ProcessGroupNCCL::barrier() {
  // NCCL has no barrier: a one-element all-reduce, whose wait() blocks the host.
  Tensor token = Tensor::zeros({1}, DType::f32, Device::cuda(device_));
  return launch(CollectiveKind::barrier, ReduceOp::sum, 0, Tensor(), {token}, "ncclAllReduce", [&] {
    return ncclAllReduce(token.raw_data(), token.raw_data(), 1, ncclFloat32, ncclSum, comm_,
                         stream_);
  });
}

void ProcessGroupNCCL::raw_collective(CollectiveKind kind, const Tensor& output,
                                      const Tensor& input, ReduceOp op) {
  check_cuda_contiguous(output, device_, "raw_collective", "output");
  const bool reads_input =
      kind == CollectiveKind::reduce_scatter || kind == CollectiveKind::all_gather;
  if (reads_input) check_cuda_contiguous(input, device_, "raw_collective", "input");
  cuda::DeviceGuard guard(device_);
  std::lock_guard<std::mutex> nccl(nccl_mutex_);
  // On the group's stream too: NCCL collectives of one communicator must run in the same order on
  // every rank, which two streams would not guarantee.
  follow_compute_stream();
  cuda::cuda_record_stream(output, stream_);
  if (reads_input) cuda::cuda_record_stream(input, stream_);
  const ncclDataType_t type = nccl_type(output.dtype());
  switch (kind) {
    case CollectiveKind::broadcast:
      finish_call(ncclBroadcast(output.raw_data(), output.raw_data(),
                                static_cast<size_t>(output.numel()), type, 0, comm_, stream_),
                  "ncclBroadcast", "a raw broadcast");
      break;
    case CollectiveKind::all_reduce:
      check_reduce_op(op, output.dtype(), "raw_collective");
      finish_call(
          ncclAllReduce(output.raw_data(), output.raw_data(), static_cast<size_t>(output.numel()),
                        type, nccl_op(op), comm_, stream_),
          "ncclAllReduce", "a raw all_reduce");
      break;
    case CollectiveKind::reduce_scatter:
      check_reduce_op(op, output.dtype(), "raw_collective");
      check_chunks(input, output, size_, "raw_collective(reduce_scatter)");
      finish_call(
          ncclReduceScatter(input.raw_data(), output.raw_data(),
                            static_cast<size_t>(output.numel()), type, nccl_op(op), comm_, stream_),
          "ncclReduceScatter", "a raw reduce_scatter");
      break;
    case CollectiveKind::all_gather:
      check_chunks(output, input, size_, "raw_collective(all_gather)");
      finish_call(ncclAllGather(input.raw_data(), output.raw_data(),
                                static_cast<size_t>(input.numel()), type, comm_, stream_),
                  "ncclAllGather", "a raw all_gather");
      break;
    case CollectiveKind::barrier:
      throw Error(
          "ProcessGroupNCCL::raw_collective: a barrier has no raw NCCL call; use barrier()");
  }
}

void ProcessGroupNCCL::raw_all_reduce(const Tensor& tensor) {
  check_cuda_contiguous(tensor, device_, "raw_all_reduce", "");
  raw_collective(CollectiveKind::all_reduce, tensor);
  count_host_sync();
  DTRAIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

double ProcessGroupNCCL::time_on_stream(int calls, const std::function<void()>& issue) {
  DTRAIN_CHECK(calls > 0, "ProcessGroupNCCL::time_on_stream: ", calls, " calls; need at least 1");
  cuda::DeviceGuard guard(device_);
  cudaEvent_t start = nullptr, stop = nullptr;
  DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&start, cudaEventBlockingSync));
  DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&stop, cudaEventBlockingSync));
  float ms = 0;
  cudaError_t status = cudaEventRecord(start, stream_);
  try {
    for (int i = 0; i < calls && status == cudaSuccess; ++i) issue();
  } catch (...) {
    (void)cudaEventDestroy(start);
    (void)cudaEventDestroy(stop);
    throw;
  }
  if (status == cudaSuccess) status = cudaEventRecord(stop, stream_);
  count_host_sync();
  if (status == cudaSuccess) status = cudaEventSynchronize(stop);
  if (status == cudaSuccess) status = cudaEventElapsedTime(&ms, start, stop);
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
  cuda::check_cuda(status, "cudaEventElapsedTime");
  return static_cast<double>(ms) / 1e3 / calls;
}

}  // namespace dtrain::dist
