// CUDA GEMM through cuBLASLt: f32 (TF32 tensor cores only when allowed, see cuda_device.h), bf16
// and f16 (f32 accumulation and scaling), strided batches. The row-major problem is mapped to
// cuBLAS's column-major one by gemm_layout.h. Descriptors, layouts and the heuristic's choice are
// cached per problem (LtPlan); where cuBLASLt offers no algorithm (and for f64) the classic
// cublasGemmStridedBatchedEx runs instead.
// Epilogues (backend_kernels.def): bias runs as CUBLASLT_EPILOGUE_BIAS and bias_grad as
// CUBLASLT_EPILOGUE_BGRADB (gemm_layout.h says why), the vector of C's dtype as cuBLASLt requires
// (BIAS_DATA_TYPE = D's type, f32 GEMMs included). Where cuBLASLt does not take the case (f64,
// alpha != 1, k = 0, a strided C, no algorithm from the heuristic, NOT_SUPPORTED at launch) the
// epilogue is composed as on the CPU: bias rows copied into C and the GEMM with beta 1, or the
// GEMM and then a sum over the rows of op(A)^T.
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>

#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/cuda_check.h"
#include "core/backend/cuda/cuda_device.h"
#include "core/backend/cuda/cuda_tensor_util.h"
#include "core/backend/cuda/gemm_layout.h"
#include "core/backend/gemm_epilogue.h"

namespace dtrain {
namespace cuda {
namespace {

struct GemmTypes {
  cudaDataType_t data;
  cublasComputeType_t compute;
  cudaDataType_t scale;
};

GemmTypes gemm_types(DType t) {
  switch (t) {
    case DType::f32:
      return {CUDA_R_32F, gemm_compute_type(t, cuda_allow_tf32()), CUDA_R_32F};
    case DType::f16:
      return {CUDA_R_16F, gemm_compute_type(t, false), CUDA_R_32F};
    case DType::bf16:
      return {CUDA_R_16BF, gemm_compute_type(t, false), CUDA_R_32F};
    case DType::f64:
      return {CUDA_R_64F, gemm_compute_type(t, false), CUDA_R_64F};
    default:
      throw Error(detail::concat("cuda gemm: unsupported dtype ", dtype_name(t),
                                 "; expected f32, f64, f16 or bf16"));
  }
}

// The largest power of two (up to 256) dividing the address: cuBLASLt must only pick kernels whose
// vector loads this alignment allows.
uint32_t alignment_of(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 1 && (a % al) != 0) al >>= 1;
  return al;
}

// Owners of cuBLASLt descriptors.
struct MatmulDesc {
  cublasLtMatmulDesc_t d = nullptr;
  ~MatmulDesc() {
    if (d) cublasLtMatmulDescDestroy(d);
  }
};
struct Layout {
  cublasLtMatrixLayout_t d = nullptr;
  ~Layout() {
    if (d) cublasLtMatrixLayoutDestroy(d);
  }
};
struct Preference {
  cublasLtMatmulPreference_t d = nullptr;
  ~Preference() {
    if (d) cublasLtMatmulPreferenceDestroy(d);
  }
};

void make_layout(Layout& l, const ColMajorMatrix& m, cudaDataType_t type, int32_t batch) {
  DTRAIN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l.d, type, static_cast<uint64_t>(m.rows),
                                                 static_cast<uint64_t>(m.cols), m.ld));
  if (batch > 1) {
    DTRAIN_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l.d, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                         &batch, sizeof(batch)));
    const int64_t stride = m.batch_stride;
    DTRAIN_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        l.d, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
  }
}

// The cuBLASLt epilogue of one GEMM and its vector (bias read, or bias gradient written).
struct LtEpilogue {
  cublasLtEpilogue_t kind = CUBLASLT_EPILOGUE_DEFAULT;
  void* vector = nullptr;
};

// Everything a plan depends on: device, data/compute/scale types (the compute type carries the TF32
// setting), transposes, shape, leading dimensions, batch and strides, the operands' alignments, and
// the epilogue with its vector's alignment.
using AlgoKey =
    std::tuple<int, int, int, int, bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
               int32_t, int64_t, int64_t, int64_t, uint32_t, uint32_t, uint32_t, int, uint32_t>;

// A cuBLASLt problem ready to run: its descriptors and the heuristic's algorithm (none: cuBLASLt
// has no algorithm for it). Made once per problem, so a training step's GEMMs cost one map look-up
// of host work each instead of five descriptor creations and a heuristic query. Immutable once
// cached, except an epilogue's vector pointer, which each call sets under vector_mutex just before
// cublasLtMatmul (which reads the descriptor when it enqueues: PyTorch destroys its descriptors
// right after the call).
struct LtPlan {
  MatmulDesc desc;
  Layout first, second, out;
  std::optional<cublasLtMatmulAlgo_t> algo;
  std::mutex vector_mutex;
};

std::mutex& cache_mutex() {
  static std::mutex m;
  return m;
}
// Never shrinks (a run has a bounded set of shapes), so cached plans stay put while they are used
// outside the lock. Leaked, like the device contexts.
std::map<AlgoKey, std::unique_ptr<LtPlan>>& plan_cache() {
  static auto* cache = new std::map<AlgoKey, std::unique_ptr<LtPlan>>();
  return *cache;
}

std::unique_ptr<LtPlan> make_plan(DeviceContext& ctx, const ColMajorGemm& p, int32_t batch,
                                  const GemmTypes& ty, uint32_t al_first, uint32_t al_second,
                                  uint32_t al_out, const LtEpilogue& ep) {
  auto plan = std::make_unique<LtPlan>();
  DTRAIN_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc.d, ty.compute, ty.scale));
  const cublasOperation_t op_first = p.first.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = p.second.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  DTRAIN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc.d, CUBLASLT_MATMUL_DESC_TRANSA,
                                                     &op_first, sizeof(op_first)));
  DTRAIN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc.d, CUBLASLT_MATMUL_DESC_TRANSB,
                                                     &op_second, sizeof(op_second)));
  if (ep.kind != CUBLASLT_EPILOGUE_DEFAULT) {
    // The heuristic reads the vector pointer for its alignment (part of the key).
    const int32_t vector_type = ty.data;
    DTRAIN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc.d, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                       &ep.kind, sizeof(ep.kind)));
    DTRAIN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan->desc.d, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &vector_type, sizeof(vector_type)));
    DTRAIN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan->desc.d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &ep.vector, sizeof(ep.vector)));
  }
  make_layout(plan->first, p.first, ty.data, batch);
  make_layout(plan->second, p.second, ty.data, batch);
  make_layout(plan->out, p.out, ty.data, batch);

  Preference pref;
  DTRAIN_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref.d));
  const uint64_t workspace = DeviceContext::kGemmWorkspace;
  DTRAIN_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref.d, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof(workspace)));
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, al_first},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, al_second},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, al_out},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, al_out}};
  for (const auto& [attr, value] : aligns) {
    DTRAIN_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.d, attr, &value, sizeof(value)));
  }
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t status =
      cublasLtMatmulAlgoGetHeuristic(ctx.cublaslt(), plan->desc.d, plan->first.d, plan->second.d,
                                     plan->out.d, plan->out.d, pref.d, 1, &result, &found);
  if (status == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS) {
    plan->algo = result.algo;
  }
  return plan;
}

LtPlan& lt_plan(DeviceContext& ctx, const ColMajorGemm& p, int32_t batch, const GemmTypes& ty,
                uint32_t al_first, uint32_t al_second, uint32_t al_out, const LtEpilogue& ep) {
  const AlgoKey key{ctx.index,
                    static_cast<int>(ty.data),
                    static_cast<int>(ty.compute),
                    static_cast<int>(ty.scale),
                    p.first.transposed,
                    p.second.transposed,
                    p.m,
                    p.n,
                    p.k,
                    p.first.ld,
                    p.second.ld,
                    p.out.ld,
                    batch,
                    p.first.batch_stride,
                    p.second.batch_stride,
                    p.out.batch_stride,
                    al_first,
                    al_second,
                    al_out,
                    static_cast<int>(ep.kind),
                    alignment_of(ep.vector)};
  {
    std::lock_guard<std::mutex> lock(cache_mutex());
    auto it = plan_cache().find(key);
    if (it != plan_cache().end()) return *it->second;
  }
  // Made outside the lock (the heuristic takes a while); a plan another thread cached meanwhile
  // wins.
  std::unique_ptr<LtPlan> plan = make_plan(ctx, p, batch, ty, al_first, al_second, al_out, ep);
  std::lock_guard<std::mutex> lock(cache_mutex());
  return *plan_cache().emplace(key, std::move(plan)).first->second;
}

// One (possibly batched) GEMM through cuBLASLt, with an epilogue when ep has one. Returns false,
// having done nothing, when cuBLASLt has no algorithm for this problem (or, with an epilogue,
// refuses it at launch).
bool lt_gemm(DeviceContext& ctx, const ColMajorGemm& p, int32_t batch, const GemmTypes& ty,
             const void* alpha, const void* beta, const void* first, const void* second, void* out,
             const LtEpilogue& ep) {
  LtPlan& plan =
      lt_plan(ctx, p, batch, ty, alignment_of(first), alignment_of(second), alignment_of(out), ep);
  if (!plan.algo) return false;
  auto matmul = [&] {
    return cublasLtMatmul(ctx.cublaslt(), plan.desc.d, alpha, first, plan.first.d, second,
                          plan.second.d, beta, out, plan.out.d, out, plan.out.d, &*plan.algo,
                          ctx.gemm_workspace(), DeviceContext::kGemmWorkspace, ctx.stream);
  };
  if (ep.kind == CUBLASLT_EPILOGUE_DEFAULT) {
    DTRAIN_CUBLAS_CHECK(matmul());
    return true;
  }
  std::lock_guard<std::mutex> lock(plan.vector_mutex);
  DTRAIN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc.d, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                     &ep.vector, sizeof(ep.vector)));
  const cublasStatus_t status = matmul();
  if (status == CUBLAS_STATUS_NOT_SUPPORTED) return false;
  check_cublas(status, "cublasLtMatmul with an epilogue");
  return true;
}

void classic_gemm(DeviceContext& ctx, const ColMajorGemm& p, int32_t batch, const GemmTypes& ty,
                  const void* alpha, const void* beta, const void* first, const void* second,
                  void* out) {
  DTRAIN_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      ctx.cublas(), p.first.transposed ? CUBLAS_OP_T : CUBLAS_OP_N,
      p.second.transposed ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(p.m), static_cast<int>(p.n),
      static_cast<int>(p.k), alpha, first, ty.data, static_cast<int>(p.first.ld),
      p.first.batch_stride, second, ty.data, static_cast<int>(p.second.ld), p.second.batch_stride,
      beta, out, ty.data, static_cast<int>(p.out.ld), p.out.batch_stride, batch, ty.compute,
      CUBLAS_GEMM_DEFAULT));
}

// The epilogue inside cuBLASLt's GEMM. False, having done nothing, where cuBLASLt does not take the
// case: f64 (cuBLASLt's epilogues are for f32/f16/bf16 here, and f64 GEMMs run classic cuBLAS),
// alpha != 1 (whether BGRADB scales the gradient by alpha is not documented), empty sizes or
// k = 0, a C with row stride != n (a cuBLASLt release skipped the bias for ld > rows on pre-A100
// GPUs, see dfyz/cublaslt-bias-epilogue), dims past int32, or no algorithm.
bool fused_epilogue(const GemmArgs& g, const Tensor& a, const Tensor& b, const Tensor& c) {
  const int64_t kIntMax = 2147483647;
  if (c.dtype() == DType::f64 || g.alpha != 1.0 || g.m == 0 || g.n == 0 || g.k == 0 ||
      g.ldc != g.n || g.m > kIntMax || g.n > kIntMax || g.k > kIntMax || g.lda > kIntMax ||
      g.ldb > kIntMax) {
    return false;
  }
  const int dev = c.device().index;
  DeviceGuard guard(dev);
  DeviceContext& ctx = device_context(dev);
  const GemmTypes ty = gemm_types(c.dtype());
  const float alpha = 1.0f, beta = 0.0f;  // the scale type of f32, f16 and bf16 GEMMs
  LtEpilogue ep;
  ep.kind = g.epilogue == GemmEpilogue::bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_BGRADB;
  ep.vector = g.bias.raw_data();
  // The row-major problem as cuBLAS's: first = B, second = A (gemm_layout.h).
  return lt_gemm(ctx, to_col_major(g), 1, ty, &alpha, &beta, b.raw_data(), a.raw_data(),
                 c.raw_data(), ep);
}

}  // namespace
}  // namespace cuda

using namespace cuda;

void CudaBackend::gemm(const GemmArgs& args, const Tensor& a, const Tensor& b, const Tensor& c) {
  DTRAIN_CHECK(a.dtype() == c.dtype() && b.dtype() == c.dtype(), "cuda gemm: operands are ",
               dtype_name(a.dtype()), ", ", dtype_name(b.dtype()), " and ", dtype_name(c.dtype()),
               "; convert them to one dtype first");
  if (args.epilogue != GemmEpilogue::none) {
    check_gemm_epilogue("cuda", args, c);
    if (!fused_epilogue(args, a, b, c)) compose_gemm_epilogue(*this, args, a, b, c);
    return;
  }
  if (args.m == 0 || args.n == 0 || args.batch == 0) return;
  const int dev = c.device().index;
  DeviceGuard guard(dev);
  DeviceContext& ctx = device_context(dev);
  const GemmTypes ty = gemm_types(c.dtype());
  const size_t width = dtype_size(c.dtype());

  if (args.k == 0) {  // op(A) op(B) is empty: C = beta C
    Tensor cv =
        make_view(c, {args.batch, args.m, args.n}, {args.stride_c, args.ldc, 1}, c.offset());
    if (args.beta == 0.0) {
      fill(cv, 0.0);
    } else {
      Tensor tmp = contiguous_as(cv, c.dtype());
      binary_scalar(BinaryOp::mul, tmp, args.beta, false, tmp);
      copy(tmp, cv);
    }
    return;
  }

  const int64_t kIntMax = 2147483647;
  DTRAIN_CHECK(args.m <= kIntMax && args.n <= kIntMax && args.k <= kIntMax &&
                   args.batch <= kIntMax && args.lda <= kIntMax && args.ldb <= kIntMax &&
                   args.ldc <= kIntMax,
               "cuda gemm: dims m=", args.m, " n=", args.n, " k=", args.k, " batch=", args.batch,
               " exceed 2^31 - 1; split the product");
  ColMajorGemm p = to_col_major(args);
  // Scaling factors in the scale type: f64 for f64 data, f32 otherwise.
  double alpha_d = args.alpha, beta_d = args.beta;
  float alpha_f = static_cast<float>(args.alpha), beta_f = static_cast<float>(args.beta);
  const void* alpha = ty.scale == CUDA_R_64F ? static_cast<const void*>(&alpha_d) : &alpha_f;
  const void* beta = ty.scale == CUDA_R_64F ? static_cast<const void*>(&beta_d) : &beta_f;

  const char* pa = static_cast<const char*>(a.raw_data());
  const char* pb = static_cast<const char*>(b.raw_data());
  char* pc = static_cast<char*>(c.raw_data());
  auto run = [&](const ColMajorGemm& q, int32_t batch, const char* first, const char* second,
                 char* out) {
    if (ty.compute == CUBLAS_COMPUTE_64F ||
        !lt_gemm(ctx, q, batch, ty, alpha, beta, first, second, out, LtEpilogue{})) {
      classic_gemm(ctx, q, batch, ty, alpha, beta, first, second, out);
    }
  };
  // A batch stride of 0 broadcasts an operand. Strided batches with a zero stride are not
  // documented for cuBLASLt, so those batches run one GEMM each.
  if (args.batch > 1 && (args.stride_a == 0 || args.stride_b == 0)) {
    ColMajorGemm q = p;
    q.first.batch_stride = q.second.batch_stride = q.out.batch_stride = 0;
    for (int64_t i = 0; i < args.batch; ++i) {
      run(q, 1, pb + static_cast<size_t>(i * args.stride_b) * width,
          pa + static_cast<size_t>(i * args.stride_a) * width,
          pc + static_cast<size_t>(i * args.stride_c) * width);
    }
    return;
  }
  run(p, static_cast<int32_t>(args.batch), pb, pa, pc);
}

}  // namespace dtrain
