#include "distributed/mpi/process_group_mpi.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace dtrain::dist {

namespace {

// ---- f16 / bf16 reductions. MPI has no 16-bit float types, so these travel as MPI_UINT16_T and are
// combined by user-defined operations: each combining step converts to f32, adds (or takes the max) and
// rounds back once, which is what a bf16/f16 reduction on a GPU does too.
template <class H, float (*ToF)(H), H (*FromF)(float), bool Max>
void combine_half(void* in, void* inout, int* len, MPI_Datatype*) {
  const H* a = static_cast<const H*>(in);
  H* b = static_cast<H*>(inout);
  for (int i = 0; i < *len; ++i) {
    float x = ToF(a[i]), y = ToF(b[i]);
    // max propagates NaN, as MPI_MAX on floats does on common hardware and torch.maximum does.
    float r = Max ? ((x != x || x > y) ? x : y) : x + y;
    b[i] = FromF(r);
  }
}

struct HalfOps {
  MPI_Op sum_f16 = MPI_OP_NULL, max_f16 = MPI_OP_NULL, sum_bf16 = MPI_OP_NULL,
         max_bf16 = MPI_OP_NULL;
};

const HalfOps& half_ops() {
  static const HalfOps ops = [] {
    HalfOps o;
    MPI_Op_create(&combine_half<Half, half_to_float, float_to_half, false>, 1, &o.sum_f16);
    MPI_Op_create(&combine_half<Half, half_to_float, float_to_half, true>, 1, &o.max_f16);
    MPI_Op_create(&combine_half<BFloat16, bf16_to_float, float_to_bf16, false>, 1, &o.sum_bf16);
    MPI_Op_create(&combine_half<BFloat16, bf16_to_float, float_to_bf16, true>, 1, &o.max_bf16);
    return o;
  }();
  return ops;
}

// avg is reduced as a sum, then scaled; MPI has no average.
MPI_Op mpi_op(ReduceOp op, DType t) {
  const bool max = op == ReduceOp::max;
  if (t == DType::f16) return max ? half_ops().max_f16 : half_ops().sum_f16;
  if (t == DType::bf16) return max ? half_ops().max_bf16 : half_ops().sum_bf16;
  return max ? MPI_MAX : MPI_SUM;
}

// x *= s over a contiguous CPU tensor of a floating dtype (the second half of avg).
void scale_in_place(const Tensor& x, double s) {
  const int64_t n = x.numel();
  switch (x.dtype()) {
    case DType::f32: {
      float* p = x.data<float>();
      const float f = static_cast<float>(s);
      for (int64_t i = 0; i < n; ++i) p[i] *= f;
      break;
    }
    case DType::f64: {
      double* p = x.data<double>();
      for (int64_t i = 0; i < n; ++i) p[i] *= s;
      break;
    }
    case DType::f16: {
      Half* p = x.data<Half>();
      for (int64_t i = 0; i < n; ++i)
        p[i] = float_to_half(half_to_float(p[i]) * static_cast<float>(s));
      break;
    }
    case DType::bf16: {
      BFloat16* p = x.data<BFloat16>();
      for (int64_t i = 0; i < n; ++i)
        p[i] = float_to_bf16(bf16_to_float(p[i]) * static_cast<float>(s));
      break;
    }
    default:
      break;
  }
}

std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, static_cast<size_t>(len));
}

int checked_count(int64_t numel, const std::string& what) {
  DTRAIN_CHECK(numel <= INT_MAX, "ProcessGroupMPI: ", what,
               " has more than 2^31-1 elements; MPI counts are int: split the tensor");
  return static_cast<int>(numel);
}

void check_cpu_contiguous(const Tensor& t, const char* op, const char* role) {
  DTRAIN_CHECK(t.defined(), "ProcessGroupMPI::", op, ": the ", role, " tensor is undefined");
  DTRAIN_CHECK(t.device().is_cpu(), "ProcessGroupMPI::", op, ": the ", role, " tensor is on ",
               t.device().str(),
               "; MPI collectives take CPU tensors (use the NCCL group for CUDA)");
  DTRAIN_CHECK(t.is_contiguous(), "ProcessGroupMPI::", op, ": the ", role, " tensor of shape ",
               shape_str(t.shape()),
               " is not contiguous; pass .contiguous() and copy the result back");
}

// True when `part` is chunk `rank` of `whole` in memory: an in-place reduce_scatter (output = that
// chunk of the input) or all_gather (input = that chunk of the output), as NCCL defines in place. MPI
// forbids aliased buffers, so these go through MPI_IN_PLACE; any other overlap is an error.
bool own_chunk(const Tensor& whole, const Tensor& part, int rank, const char* op) {
  if (whole.numel() == 0 || part.numel() == 0) return false;
  const auto w = reinterpret_cast<uintptr_t>(whole.raw_data());
  const auto p = reinterpret_cast<uintptr_t>(part.raw_data());
  const auto chunk = static_cast<uintptr_t>(part.numel()) * dtype_size(part.dtype());
  const auto all = static_cast<uintptr_t>(whole.numel()) * dtype_size(whole.dtype());
  if (p + chunk <= w || w + all <= p) return false;
  DTRAIN_CHECK(p == w + static_cast<uintptr_t>(rank) * chunk, "ProcessGroupMPI::", op,
               ": the buffers overlap, but the chunk is not chunk ", rank,
               " (this rank's) of the whole buffer; in place means exactly that chunk");
  return true;
}

void check_reduce_op(ReduceOp op, DType t, const char* name) {
  DTRAIN_CHECK(op != ReduceOp::avg || is_floating(t), "ProcessGroupMPI::", name,
               "(avg) needs a floating tensor, got ", dtype_name(t), "; use sum and divide");
}

}  // namespace

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32:
      return MPI_FLOAT;
    case DType::f64:
      return MPI_DOUBLE;
    case DType::i32:
      return MPI_INT32_T;
    case DType::i64:
      return MPI_INT64_T;
    case DType::f16:
    case DType::bf16:
      return MPI_UINT16_T;
  }
  return MPI_DATATYPE_NULL;
}

// ---- Work

class ProcessGroupMPI::MpiWork final : public Work {
 public:
  using Kind = CollectiveKind;

  Kind kind = Kind::barrier;
  ReduceOp op = ReduceOp::sum;
  int root = 0;
  Tensor out;  // the tensor written (broadcast, all_reduce: in place)
  Tensor in;   // reduce_scatter, all_gather: the input
  // reduce_scatter, all_gather: `out` is chunk `rank` of `in` (reduce_scatter) or `in` is chunk `rank`
  // of `out` (all_gather); run with MPI_IN_PLACE, which every rank must then use.
  bool in_place = false;
  std::string what;  // for the timeout message

  bool is_completed() override { return done_.load(std::memory_order_acquire); }
  void wait() override {
    // Short collectives finish within microseconds: poll a little before paying for a sleep and a
    // wake-up on the condition variable.
    const Clock::time_point until = Clock::now() + std::chrono::microseconds(50);
    while (!done_.load(std::memory_order_acquire) && Clock::now() < until)
      std::this_thread::yield();
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return done_.load(std::memory_order_acquire); });
    if (error_.empty()) return;
    if (all_ranks_) throw AllRanksError(error_);
    throw Error(error_);
  }
  Clock::time_point start_time() const override { return start_; }
  Clock::time_point end_time() const override { return end_; }

  void mark_started() { start_ = Clock::now(); }
  // `all_ranks`: every rank's Work fails with the same error (a disagreement all of them detected).
  void finish(std::string error, bool all_ranks = false) {
    end_ = Clock::now();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = std::move(error);
      all_ranks_ = all_ranks;
      done_.store(true, std::memory_order_release);
    }
    cv_.notify_all();
    // The caller may drop its handles before waiting; release the buffers now.
    out = Tensor();
    in = Tensor();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::atomic<bool> done_{false};
  std::string error_;
  bool all_ranks_ = false;
  Clock::time_point start_{}, end_{};
};

// ---- the group

std::shared_ptr<ProcessGroupMPI> ProcessGroupMPI::create(ProcessGroupOptions options) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  DTRAIN_CHECK(!finalized, "ProcessGroupMPI::create: MPI was already finalised in this process");
  int provided = MPI_THREAD_SINGLE;
  if (!initialized) {
    int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
    DTRAIN_CHECK(rc == MPI_SUCCESS, "MPI_Init_thread failed: ", mpi_error_string(rc));
  } else {
    MPI_Query_thread(&provided);
  }
  DTRAIN_CHECK(provided >= MPI_THREAD_SERIALIZED,
               "ProcessGroupMPI: MPI was initialised with thread ", "level ", provided,
               ", but dtrain issues MPI calls from its communication thread: ",
               "initialise with MPI_Init_thread(..., MPI_THREAD_MULTIPLE, ...)");
  half_ops();  // MPI_Op_create runs on this thread, before the communication thread exists
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  // Ranks that share memory share a node, whichever launcher started them (mpirun, srun with PMIx, a
  // hostfile): their order there is the local rank, their count the local size.
  MPI_Comm node = MPI_COMM_NULL;
  if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
    int local_rank = 0, local_size = 1;
    MPI_Comm_rank(node, &local_rank);
    MPI_Comm_size(node, &local_size);
    set_node_placement(local_rank, local_size);
    MPI_Comm_free(&node);
  }
  return std::shared_ptr<ProcessGroupMPI>(
      new ProcessGroupMPI(options, comm, provided >= MPI_THREAD_MULTIPLE));
}

ProcessGroupMPI::ProcessGroupMPI(ProcessGroupOptions options, MPI_Comm comm, bool thread_multiple)
    : ProcessGroup(options), comm_(comm), thread_multiple_(thread_multiple) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  // raw_all_reduce runs on the caller's thread while the communication thread may be inside MPI on
  // comm_: it gets its own communicator so the two streams of collectives cannot be confused.
  if (thread_multiple_) MPI_Comm_dup(comm_, &raw_comm_);
  thread_ = std::thread([this] { run_loop(); });
  watchdog_ = std::thread([this] { watch_loop(); });
}

ProcessGroupMPI::~ProcessGroupMPI() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (thread_.joinable()) thread_.join();  // finishes what was queued first
  {
    std::lock_guard<std::mutex> lock(watch_mutex_);
    watch_stopping_ = true;
  }
  watch_cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  if (!finalized && raw_comm_ != MPI_COMM_NULL) MPI_Comm_free(&raw_comm_);
}

WorkPtr ProcessGroupMPI::enqueue(std::shared_ptr<MpiWork> work) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(work);
    queued_.fetch_add(1, std::memory_order_release);
  }
  queue_cv_.notify_one();
  return work;
}

void ProcessGroupMPI::run_loop() {
  for (;;) {
    std::shared_ptr<MpiWork> work;
    // Collectives often come in bursts (one per bucket): look for the next one briefly before sleeping.
    const Clock::time_point until = Clock::now() + std::chrono::microseconds(50);
    while (queued_.load(std::memory_order_acquire) == 0 && Clock::now() < until) {
      std::this_thread::yield();
    }
    {
      std::unique_lock<std::mutex> lock(mutex_);
      queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left
      work = std::move(queue_.front());
      queue_.pop_front();
      queued_.fetch_sub(1, std::memory_order_release);
    }
    run_one(*work);
  }
}

void ProcessGroupMPI::run_one(MpiWork& w) {
  if (!broken_.empty()) {
    w.finish(broken_, true);  // the ranks' sequences of collectives no longer line up
    return;
  }
  int rc = MPI_SUCCESS;
  const DType dtype = w.out.defined() ? w.out.dtype() : DType::f32;
  w.mark_started();
  {
    std::lock_guard<std::mutex> lock(watch_mutex_);
    running_ = &w;
  }
  std::string disagreement = check_agreement(w);
  if (!disagreement.empty()) {
    {
      std::lock_guard<std::mutex> lock(watch_mutex_);
      running_ = nullptr;
    }
    broken_ = disagreement;
    w.finish(disagreement, true);
    return;
  }
  switch (w.kind) {
    case MpiWork::Kind::broadcast:
      rc = MPI_Bcast(w.out.raw_data(), static_cast<int>(w.out.numel()), mpi_type(dtype), w.root,
                     comm_);
      break;
    case MpiWork::Kind::all_reduce: {
      // In pieces of at most 16 MiB: Open MPI mallocs a temporary buffer as large as the message,
      // and on this (non-main) thread glibc serves large requests with a fresh mmap every call,
      // whose page faults cost more than the extra calls (measured: 64 MiB f32 on 2 ranks 1.6x
      // slower in one piece). The reduction is elementwise, so the pieces give the same result.
      const auto elem = static_cast<int64_t>(dtype_size(dtype));
      const int64_t piece = (int64_t{16} << 20) / elem;
      char* data = static_cast<char*>(w.out.raw_data());
      for (int64_t first = 0; first < w.out.numel() && rc == MPI_SUCCESS; first += piece) {
        const int64_t count = std::min(piece, w.out.numel() - first);
        rc = MPI_Allreduce(MPI_IN_PLACE, data + first * elem, static_cast<int>(count),
                           mpi_type(dtype), mpi_op(w.op, dtype), comm_);
      }
      break;
    }
    case MpiWork::Kind::reduce_scatter:
      if (w.in_place) {
        // The input is the whole buffer and MPI leaves the result at its start (the other chunks'
        // values are unspecified afterwards); it moves to this rank's chunk.
        rc =
            MPI_Reduce_scatter_block(MPI_IN_PLACE, w.in.raw_data(), static_cast<int>(w.out.numel()),
                                     mpi_type(dtype), mpi_op(w.op, dtype), comm_);
        if (rc == MPI_SUCCESS && w.out.raw_data() != w.in.raw_data()) {
          std::memmove(w.out.raw_data(), w.in.raw_data(),
                       static_cast<size_t>(w.out.numel()) * dtype_size(dtype));
        }
      } else {
        rc = MPI_Reduce_scatter_block(w.in.raw_data(), w.out.raw_data(),
                                      static_cast<int>(w.out.numel()), mpi_type(dtype),
                                      mpi_op(w.op, dtype), comm_);
      }
      break;
    case MpiWork::Kind::all_gather:
      rc = MPI_Allgather(w.in_place ? MPI_IN_PLACE : w.in.raw_data(),
                         w.in_place ? 0 : static_cast<int>(w.in.numel()),
                         w.in_place ? MPI_DATATYPE_NULL : mpi_type(dtype), w.out.raw_data(),
                         static_cast<int>(w.in.numel()), mpi_type(dtype), comm_);
      break;
    case MpiWork::Kind::barrier:
      rc = MPI_Barrier(comm_);
      break;
  }
  {
    std::lock_guard<std::mutex> lock(watch_mutex_);
    running_ = nullptr;
  }
  if (rc != MPI_SUCCESS) {
    w.finish("ProcessGroupMPI: " + w.what + " failed on rank " + std::to_string(rank_) + ": " +
             mpi_error_string(rc));
    return;
  }
  if (w.op == ReduceOp::avg &&
      (w.kind == MpiWork::Kind::all_reduce || w.kind == MpiWork::Kind::reduce_scatter)) {
    scale_in_place(w.out, 1.0 / size_);
  }
  w.finish({});
}

namespace {

// The collective signature of `w` (process_group.h): its input where there is one, else the tensor
// it works on in place. An aliased reduce_scatter or all_gather marks its root word -2 (otherwise -1
// there): MPI_IN_PLACE must be used on every rank or none.
std::vector<int64_t> signature(const ProcessGroupMPI::MpiWork& w, bool full) {
  std::vector<int64_t> s =
      collective_signature(w.kind, w.op, w.root, w.in.defined() ? w.in : w.out, full);
  if (w.in_place) s[3] = -2;
  return s;
}

std::string describe_signature(const int64_t* words, bool full) {
  return describe_collective_signature(words, full) + (words[3] == -2 ? " in place" : "");
}

}  // namespace

std::string ProcessGroupMPI::check_agreement(const MpiWork& w) {
  const int64_t number = ++issued_;
  const bool full = options_.debug_collectives;
  const std::vector<int64_t> mine = signature(w, full);
  const int n = static_cast<int>(mine.size());
  if (!full) {
    // One all-reduce of (x, -x) with max yields each word's maximum and minimum over the ranks: they
    // agree exactly when the two are equal for every word.
    std::vector<int64_t> both(mine);
    for (int64_t v : mine) both.push_back(-v);
    int rc = MPI_Allreduce(MPI_IN_PLACE, both.data(), 2 * n, MPI_INT64_T, MPI_MAX, comm_);
    if (rc != MPI_SUCCESS)
      return "ProcessGroupMPI: checking " + w.what + " failed: " + mpi_error_string(rc);
    bool same = true;
    for (int i = 0; i < n; ++i)
      same = same &&
             both[static_cast<size_t>(i)] == -both[static_cast<size_t>(n) + static_cast<size_t>(i)];
    if (same) return "";
  }
  // Every rank's description, to name both sides of the first difference (all ranks get here together).
  std::vector<int64_t> all(static_cast<size_t>(n) * static_cast<size_t>(size_));
  int rc = MPI_Allgather(mine.data(), n, MPI_INT64_T, all.data(), n, MPI_INT64_T, comm_);
  if (rc != MPI_SUCCESS)
    return "ProcessGroupMPI: checking " + w.what + " failed: " + mpi_error_string(rc);
  for (int r = 1; r < size_; ++r) {
    const int64_t* theirs = all.data() + static_cast<size_t>(r) * static_cast<size_t>(n);
    if (!std::equal(all.data(), all.data() + n, theirs)) {
      return detail::concat(
          "ranks disagree on collective #", number, ": rank 0 issued ",
          describe_signature(all.data(), full), ", rank ", r, " issued ",
          describe_signature(theirs, full),
          "; the ranks took different code paths (were they started with different "
          "options?)");
    }
  }
  return "";
}

void ProcessGroupMPI::watch_loop() {
  // Checks a few times per timeout period (at most every 0.5 s) whether the running collective has
  // exceeded it; the abort message names the collective as its Work described it.
  const auto period = std::clamp<std::chrono::milliseconds>(
      options_.timeout / 8, std::chrono::milliseconds(10), std::chrono::milliseconds(500));
  std::unique_lock<std::mutex> lock(watch_mutex_);
  while (!watch_stopping_) {
    watch_cv_.wait_for(lock, period);
    if (running_ != nullptr && Clock::now() - running_->start_time() > options_.timeout) {
      const double seconds = std::chrono::duration<double>(options_.timeout).count();
      abort_job(detail::concat(running_->what, " did not complete within ", seconds,
                               " s (the collective timeout): another rank failed, hangs, or took a "
                               "different code path; aborting the job"));
    }
  }
}

WorkPtr ProcessGroupMPI::broadcast(const Tensor& tensor, int root) {
  check_cpu_contiguous(tensor, "broadcast", "");
  DTRAIN_CHECK(root >= 0 && root < size_, "ProcessGroupMPI::broadcast: root ", root,
               " is not a rank of this group of ", size_);
  auto w = std::make_shared<MpiWork>();
  w->kind = MpiWork::Kind::broadcast;
  w->root = root;
  w->out = tensor;
  w->what = describe_collective("broadcast", tensor.numel(), tensor.dtype());
  checked_count(tensor.numel(), w->what);
  return enqueue(std::move(w));
}

WorkPtr ProcessGroupMPI::all_reduce(const Tensor& tensor, ReduceOp op) {
  check_cpu_contiguous(tensor, "all_reduce", "");
  check_reduce_op(op, tensor.dtype(), "all_reduce");
  auto w = std::make_shared<MpiWork>();
  w->kind = MpiWork::Kind::all_reduce;
  w->op = op;
  w->out = tensor;
  w->what = describe_collective(std::string("all_reduce(") + reduce_op_name(op) + ")",
                                tensor.numel(), tensor.dtype());
  checked_count(tensor.numel(), w->what);
  return enqueue(std::move(w));
}

WorkPtr ProcessGroupMPI::reduce_scatter(const Tensor& output, const Tensor& input, ReduceOp op) {
  check_cpu_contiguous(output, "reduce_scatter", "output");
  check_cpu_contiguous(input, "reduce_scatter", "input");
  check_reduce_op(op, input.dtype(), "reduce_scatter");
  DTRAIN_CHECK(output.dtype() == input.dtype(), "ProcessGroupMPI::reduce_scatter: output is ",
               dtype_name(output.dtype()), " but input is ", dtype_name(input.dtype()));
  DTRAIN_CHECK(input.numel() == output.numel() * size_, "ProcessGroupMPI::reduce_scatter: input ",
               shape_str(input.shape()), " must hold ", size_, " chunks of the output's ",
               output.numel(), " elements");
  auto w = std::make_shared<MpiWork>();
  w->kind = MpiWork::Kind::reduce_scatter;
  w->op = op;
  w->out = output;
  w->in = input;
  w->in_place = own_chunk(input, output, rank_, "reduce_scatter");
  w->what = describe_collective(std::string("reduce_scatter(") + reduce_op_name(op) + ")",
                                input.numel(), input.dtype());
  checked_count(input.numel(), w->what);
  return enqueue(std::move(w));
}

WorkPtr ProcessGroupMPI::all_gather(const Tensor& output, const Tensor& input) {
  check_cpu_contiguous(output, "all_gather", "output");
  check_cpu_contiguous(input, "all_gather", "input");
  DTRAIN_CHECK(output.dtype() == input.dtype(), "ProcessGroupMPI::all_gather: output is ",
               dtype_name(output.dtype()), " but input is ", dtype_name(input.dtype()));
  DTRAIN_CHECK(output.numel() == input.numel() * size_, "ProcessGroupMPI::all_gather: output ",
               shape_str(output.shape()), " must hold ", size_, " chunks of the input's ",
               input.numel(), " elements");
  auto w = std::make_shared<MpiWork>();
  w->kind = MpiWork::Kind::all_gather;
  w->out = output;
  w->in = input;
  w->in_place = own_chunk(output, input, rank_, "all_gather");
  w->what = describe_collective("all_gather", output.numel(), output.dtype());
  checked_count(output.numel(), w->what);
  return enqueue(std::move(w));
}

WorkPtr ProcessGroupMPI::barrier() {
  auto w = std::make_shared<MpiWork>();
  w->kind = MpiWork::Kind::barrier;
  w->what = "barrier";
  return enqueue(std::move(w));
}

void ProcessGroupMPI::raw_all_reduce(const Tensor& tensor) {
  check_cpu_contiguous(tensor, "raw_all_reduce", "");
  const int count = checked_count(tensor.numel(), "raw_all_reduce");
  DTRAIN_CHECK(thread_multiple_, "ProcessGroupMPI::raw_all_reduce needs MPI_THREAD_MULTIPLE (it ",
               "calls MPI from the caller's thread while the communication thread may too)");
  int rc = MPI_Allreduce(MPI_IN_PLACE, tensor.raw_data(), count, mpi_type(tensor.dtype()),
                         mpi_op(ReduceOp::sum, tensor.dtype()), raw_comm_);
  DTRAIN_CHECK(rc == MPI_SUCCESS, "MPI_Allreduce failed: ", mpi_error_string(rc));
}

// ---- job control

void finalize_mpi() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Finalize();
}

int world_rank() {
  int initialized = 0, finalized = 0, rank = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

void abort_job(const std::string& message, int code) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  int rank = 0, size = 1;
  if (initialized && !finalized) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
  }
  if (!message.empty()) {
    std::fprintf(stderr, "dtrain: rank %d of %d: %s\n", rank, size, message.c_str());
    std::fflush(stderr);
  }
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace dtrain::dist
