// The one kernel interface every backend implements (CPU is the reference; CUDA is tested against it).
// Ops in core/ops check their inputs, allocate outputs and call these; nothing above core/ops includes
// a backend header. Unless a method says otherwise: tensors are contiguous, outputs are preallocated
// with the right shape and dtype, and floating kernels accept f32 and f64 (the CPU backend also runs
// f16/bf16 by computing in f32).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/tensor/tensor.h"

namespace dtrain {

class Generator;

enum class UnaryOp : uint8_t {
  neg, exp, log, sqrt, rsqrt, abs, relu, gelu_erf, gelu_tanh, tanh, sigmoid, square, reciprocal
};
// a op b. Comparisons (eq, ne, gt, ge, lt, le) give 1 or 0 in the output dtype.
enum class BinaryOp : uint8_t { add, sub, mul, div, pow, maximum, minimum, eq, ne, gt, ge, lt, le };
enum class ReduceOp : uint8_t { sum, max, min };
enum class RandomKind : uint8_t { uniform, normal, bernoulli };

struct GemmArgs {
  // C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b], row-major, op = transpose when trans_*.
  // op(A) is m x k, op(B) is k x n, C is m x n with row stride ldc. A batch stride of 0 broadcasts.
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0, batch = 1;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  double alpha = 1.0, beta = 0.0;
};

struct Conv2dArgs {
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, groups = 1;
};

struct Pool2dArgs {
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // ---- memory
  virtual void* allocate(size_t nbytes, int device_index) = 0;
  virtual void deallocate(void* ptr, size_t nbytes, int device_index) = 0;
  // Raw byte copies between this backend's memory and the host.
  virtual void copy_to_host(const void* src, void* dst_host, size_t nbytes, int device_index) = 0;
  virtual void copy_from_host(const void* src_host, void* dst, size_t nbytes, int device_index) = 0;

  // ---- elementwise
  // dst = src elementwise; same shape, any strides (stride 0 broadcasts src), any dtypes (converting).
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;
  virtual void fill(const Tensor& dst, double value) = 0;
  virtual void unary(UnaryOp op, const Tensor& x, const Tensor& out) = 0;
  // out = grad * d op(x)/dx (x is the forward input).
  virtual void unary_backward(UnaryOp op, const Tensor& x, const Tensor& grad, const Tensor& out) = 0;
  // a and b are strided views already broadcast to out's shape (stride 0 on broadcast dims); out is
  // contiguous and may be the same tensor as a (in-place updates).
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  // out = a op s, or s op a when scalar_first. a contiguous; out may be a.
  virtual void binary_scalar(BinaryOp op, const Tensor& a, double s, bool scalar_first,
                             const Tensor& out) = 0;
  // x viewed as [outer, n, inner] reduced over n into out [outer, inner]; for max/min, `indices`
  // (i64, same shape as out) receives the arg position when defined.
  virtual void reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t n, int64_t inner,
                      const Tensor& out, const Tensor& indices) = 0;

  // ---- dense algebra. a, b, c may be strided as GemmArgs describes; all of one dtype.
  virtual void gemm(const GemmArgs& args, const Tensor& a, const Tensor& b, const Tensor& c) = 0;

  // ---- normalisation and softmax over the last dim of [rows, cols]
  virtual void softmax(const Tensor& x, const Tensor& out, bool log) = 0;
  // dx from y = softmax(x) (or log_softmax when log) and dy.
  virtual void softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, bool log) = 0;
  // mean and rstd are f32/f64 [rows]; weight and bias [cols] may be undefined.
  virtual void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                          const Tensor& out, const Tensor& mean, const Tensor& rstd) = 0;
  virtual void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                   const Tensor& mean, const Tensor& rstd, const Tensor& dx,
                                   const Tensor& dweight, const Tensor& dbias) = 0;

  // ---- indexing
  // out[i, :] = weight[indices[i], :]  (indices i64 [n], weight [V, D], out [n, D]).
  virtual void embedding(const Tensor& weight, const Tensor& indices, const Tensor& out) = 0;
  // dweight (zeroed by the caller) += rows of grad at indices, skipping padding_idx (< 0: none).
  // Deterministic: the same inputs give bitwise the same sums.
  virtual void embedding_backward(const Tensor& grad, const Tensor& indices, int64_t padding_idx,
                                  const Tensor& dweight) = 0;

  // ---- loss: logits [N, C], targets i64 [N]. losses[N] gets each row's loss (0 for ignored rows).
  // With label smoothing s the target distribution is (1 - s) one-hot + s / C.
  virtual void cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                             double label_smoothing, const Tensor& losses) = 0;
  // dlogits[i] = grad_losses[i] * (softmax(logits[i]) - target_distribution[i]); 0 for ignored rows.
  virtual void cross_entropy_backward(const Tensor& logits, const Tensor& targets,
                                      int64_t ignore_index, double label_smoothing,
                                      const Tensor& grad_losses, const Tensor& dlogits) = 0;

  // ---- convolution and pooling, NCHW; weight [C_out, C_in / groups, KH, KW]; bias may be undefined.
  virtual void conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                      const Conv2dArgs& args, const Tensor& out) = 0;
  // Any of dx, dweight, dbias may be undefined (not needed).
  virtual void conv2d_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                               const Conv2dArgs& args, const Tensor& dx, const Tensor& dweight,
                               const Tensor& dbias) = 0;
  // indices (i64, out's shape) holds the flat h*W+w position of each max within its plane.
  virtual void max_pool2d(const Tensor& x, const Pool2dArgs& args, const Tensor& out,
                          const Tensor& indices) = 0;
  virtual void max_pool2d_backward(const Tensor& dy, const Tensor& indices, const Tensor& dx) = 0;
  // Padding counts toward the divisor (PyTorch's count_include_pad=True).
  virtual void avg_pool2d(const Tensor& x, const Pool2dArgs& args, const Tensor& out) = 0;
  virtual void avg_pool2d_backward(const Tensor& dy, const Pool2dArgs& args, const Tensor& dx) = 0;

  // ---- random: fills dst (contiguous) from `gen`. uniform in [a, b); normal mean a, std b;
  // bernoulli 1 with probability a, else 0.
  virtual void random(RandomKind kind, double a, double b, Generator& gen, const Tensor& dst) = 0;

  // ---- fused attention: q [B, H, Tq, D], k/v [B, H, Tk, D], out like q, each with any strides whose
  // last one is 1 (a backend that needs more returns false); attn_mask additive [B or 1, 1, Tq or 1,
  // Tk] contiguous, or undefined; stats [B, H, Tq] contiguous; mask and stats are f64 for f64 inputs,
  // else f32. A
  // backend that has no fused path, or declines these shapes, returns false and the op composes
  // attention from matmul and softmax instead.
  virtual bool sdpa(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask,
                    bool causal, double scale, const Tensor& out, const Tensor& stats) {
    (void)q, (void)k, (void)v, (void)attn_mask, (void)causal, (void)scale, (void)out, (void)stats;
    return false;
  }
  virtual bool sdpa_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& out, const Tensor& stats, const Tensor& attn_mask,
                             bool causal, double scale, const Tensor& dq, const Tensor& dk,
                             const Tensor& dv) {
    (void)dout, (void)q, (void)k, (void)v, (void)out, (void)stats, (void)attn_mask, (void)causal;
    (void)scale, (void)dq, (void)dk, (void)dv;
    return false;
  }

  // Waits for all work queued on the device (no-op on CPU).
  virtual void synchronize(int device_index) { (void)device_index; }
};

// The backend serving `device`. Throws a dtrain::Error when that backend is not built or no device
// exists ("CUDA requested but dtrain was built without CUDA"...).
Backend& backend_for(Device device);
bool cuda_available();  // built with CUDA and at least one device visible
int cuda_device_count();
// Why no CUDA device can be used, in one line ending with what to do (no driver, a driver older than
// the runtime, no device, a build without CUDA); empty when one can.
std::string cuda_unavailable_reason();
// Makes `device` this process's GPU, once, before any other CUDA work (no-op for the CPU): no context
// is ever opened on another GPU. A second call with another GPU is an error.
void select_device(Device device);

// Host synchronisations: each time the host waits for device work or reads back a value the device
// computed (Tensor::item/to_vector, a copy to the host, a stream/event/device synchronise, a host wait
// on a collective). A training step that reads nothing back queues its work and returns; each counted
// point stalls the host until the device catches up. Reads of CPU tensors through item()/to_vector()
// count too, so a CPU run accounts for the same points a GPU run would stall at. Thread-safe.
uint64_t host_sync_count();
void count_host_sync();

// The most memory dtrain's allocator has held in tensors on `device` since the process started, in
// bytes (the caching allocator's peak for a GPU); 0 for the CPU, whose peak the process's RSS shows.
size_t peak_device_memory_bytes(Device device);

// TF32 tensor cores for f32 GEMM and convolution on GPUs (no effect on the CPU). Off unless set here
// or by DTRAIN_ALLOW_TF32=1; `dtrain train` sets it from --tf32 (on by default).
void set_allow_tf32(bool allow);

// Threads used by CPU kernels and OpenBLAS.
void set_num_threads(int n);
int get_num_threads();

}  // namespace dtrain
