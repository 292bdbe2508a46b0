// CUDA fused scaled-dot-product attention, forward and backward: the FlashAttention-2 algorithm
// (Dao, 2023) with scalar f32 FMA on shared-memory tiles (no tensor cores). The math is the CPU
// kernel's (cpu_attention.cpp), per (batch b, head h), with Z = M / (1 - p) the dropout factor of
// sdpa_dropout.h (Z = 1 without dropout):
//   S = scale Q K^T + mask (-inf where causal hides key j > i),  P = softmax_rows(S),
//   O = (P Z) V,  stats_i = m_i + log l_i  (m_i the row max, l_i = sum_j exp(S_ij - m_i)).
// Forward: one block per (b, h, tile of kTile query rows). It streams tiles of kTile keys and
// values through shared memory and keeps per row a running max m, a running sum l and an
// unnormalised accumulator A (registers). For each key tile, with m' = max(m, max_j S_ij):
//   alpha = exp(m - m'),  p_j = exp(S_ij - m'),  l <- alpha l + sum_j p_j,  A <- alpha A + (p Z) V
// and at the end O_i = A_i / l_i. While every key seen so far is masked (m' = -inf), 0 stands in
// for m' so that exp(-inf - m') is 0 rather than NaN. A row whose every key is masked ends with
// l = 0: its output and stats are NaN, as the CPU kernel (and the composed softmax) give.
// Backward: D_i = sum_d dO_id O_id (sdpa_delta_kernel, one warp per row), then one block per
// (b, h, tile of kTile keys) holds dK and dV of its keys in registers and loops over query tiles:
//   P = exp(S - stats),  dV += (P Z)^T dO,  dP = (dO V^T) Z,  dS = P (dP - D),
//   dK += scale dS^T Q,  dQ += scale dS K,
// dQ summed across key tiles with atomicAdd into an f32 [B, H, Tq, D] buffer, then converted to
// dq's dtype and layout (so dq is not bitwise reproducible; dk, dv and the forward are). A NaN
// stats row makes P NaN on that row, so the NaN of a fully masked row reaches dQ, dK and dV as on
// the CPU (with causal masking, which keys past that row's diagonal get NaN depends on each
// kernel's tiling: keys no query can see are skipped by both, at different granularity).
// Tiles: kTile = 32 (16 at head dim 128) query rows and keys, 128 threads, under 48 KiB of static
// shared memory; rows of the [tile][D] arrays are padded to D + 1 floats so that threads reading
// different rows at one column hit different banks. No [Tq, Tk] tensor exists in global memory.
// Inputs f32, f16 and bf16 (loaded to f32, one rounding on store); head dim 32, 64 or 128 (a
// template parameter), v's head dim equal to q's; anything else is declined (false), and the op
// composes attention instead. q, k, v, out, dout, dq, dk and dv are read and written through their
// strides (last dim unit-stride); the mask and stats are contiguous f32.
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/cuda_device.h"
#include "core/backend/cuda/kernel_utils.cuh"
#include "core/backend/sdpa_dropout.h"

namespace dtrain {
namespace cuda {
namespace {

constexpr int kAttnThreads = 128;
constexpr int kWarps = kAttnThreads / 32;

// Query rows and keys per tile: static shared memory stays under 48 KiB (the backward's four
// [kTile][D + 1] f32 tiles take 33 KiB at D = 64 with 32 and at D = 128 with 16).
template <int D>
constexpr int kTileFor = D == 128 ? 16 : 32;

// A [B, H, T, D] operand: base pointer and element strides of its first three dims.
template <class T>
struct Heads {
  T* p;
  int64_t sb, sh, st;
  __device__ T* row(int64_t b, int64_t h, int64_t t) const { return p + b * sb + h * sh + t * st; }
};

template <class T>
Heads<T> heads_of(const Tensor& t) {
  return {static_cast<T*>(t.raw_data()), t.strides()[0], t.strides()[1], t.strides()[2]};
}

// The problem as every kernel sees it.
struct Problem {
  int64_t heads, tq, tk;
  bool causal;
  float scale;
  const float* mask;         // [Bm, 1, Tqm, Tk] contiguous, or null
  int64_t mask_sb, mask_st;  // strides of its batch and query dims (0 where broadcast)
  bool drop_on;
  float drop_p, drop_scale;  // keep iff sdpa_dropout_keep(seed, ..., drop_p); kept x drop_scale
  uint64_t seed;
};

// S_ij = scale (q_i . k_j) + mask_ij, or -inf where causal hides key j from query i.
__device__ __forceinline__ float score(const Problem& s, int64_t b, int64_t i, int64_t j,
                                       float dot) {
  float v = dot * s.scale;
  if (s.mask) v += s.mask[b * s.mask_sb + i * s.mask_st + j];
  if (s.causal && j > i) v = lowest<float>();
  return v;
}

// Z_ij: 1 / (1 - p) where the score is kept, 0 where it is dropped.
__device__ __forceinline__ float dropout_factor(const Problem& s, int64_t b, int64_t h, int64_t i,
                                                int64_t j) {
  return sdpa_dropout_keep(s.seed, static_cast<uint32_t>(b), static_cast<uint32_t>(h),
                           static_cast<uint32_t>(i), static_cast<uint32_t>(j), s.drop_p)
             ? s.drop_scale
             : 0.0f;
}

// Rows [t0, t0 + kTile) of a [B, H, T, D] operand into a padded f32 tile; zeros past `rows`.
template <int kTile, int D, class T>
__device__ __forceinline__ void load_tile(float (*tile)[D + 1], const Heads<const T>& x, int64_t b,
                                          int64_t h, int64_t t0, int64_t rows) {
  for (int e = threadIdx.x; e < kTile * D; e += kAttnThreads) {
    const int r = e / D, c = e % D;
    tile[r][c] = t0 + r < rows ? cast<float>(x.row(b, h, t0 + r)[c]) : 0.0f;
  }
}

template <class T, int D>
__global__ void __launch_bounds__(kAttnThreads)
    sdpa_forward_kernel(Heads<const T> q, Heads<const T> k, Heads<const T> v, Heads<T> out,
                        float* stats, Problem s, int64_t q_tiles) {
  constexpr int kTile = kTileFor<D>;
  constexpr int kPerThread = kTile * D / kAttnThreads;  // accumulator elements per thread
  __shared__ float q_s[kTile][D + 1];
  __shared__ float k_s[kTile][D + 1];
  __shared__ float v_s[kTile][D + 1];
  __shared__ float p_s[kTile][kTile + 1];  // scores, then p Z
  __shared__ float m_s[kTile], l_s[kTile], alpha_s[kTile];

  const int64_t bh = blockIdx.x / q_tiles, i0 = (blockIdx.x % q_tiles) * kTile;
  const int64_t b = bh / s.heads, h = bh % s.heads;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  load_tile<kTile, D>(q_s, q, b, h, i0, s.tq);
  for (int r = tid; r < kTile; r += kAttnThreads) {
    m_s[r] = lowest<float>();
    l_s[r] = 0.0f;
  }
  float acc[kPerThread];
  _Pragma("unroll") for (int t = 0; t < kPerThread; ++t) acc[t] = 0.0f;
  // A causal tile sees keys up to its last row's diagonal.
  const int64_t rows_end = i0 + kTile < s.tq ? i0 + kTile : s.tq;
  const int64_t keys = s.causal && rows_end < s.tk ? rows_end : s.tk;

  for (int64_t j0 = 0; j0 < keys; j0 += kTile) {
    __syncthreads();  // the previous tile's k_s, v_s and p_s are no longer read
    load_tile<kTile, D>(k_s, k, b, h, j0, s.tk);
    load_tile<kTile, D>(v_s, v, b, h, j0, s.tk);
    __syncthreads();
    for (int e = tid; e < kTile * kTile; e += kAttnThreads) {
      const int r = e / kTile, c = e % kTile;
      float dot = 0.0f;
      for (int d = 0; d < D; ++d) dot = fmaf(q_s[r][d], k_s[c][d], dot);
      const int64_t i = i0 + r, j = j0 + c;
      p_s[r][c] = i < s.tq && j < s.tk ? score(s, b, i, j, dot) : lowest<float>();
    }
    __syncthreads();
    // Online softmax, one warp per row, lane = key (lanes past kTile hold -inf).
    for (int r = warp; r < kTile; r += kWarps) {
      const float sc = lane < kTile ? p_s[r][lane] : lowest<float>();
      const float m_old = m_s[r];
      const float m_new = fmaxf(m_old, warp_max(sc));
      const float m_use = m_new == lowest<float>() ? 0.0f : m_new;
      float p = expf(sc - m_use);
      const float row_sum = warp_sum(p);
      const float alpha = expf(m_old - m_use);
      const int64_t i = i0 + r, j = j0 + lane;
      if (s.drop_on && lane < kTile && i < s.tq && j < s.tk) p *= dropout_factor(s, b, h, i, j);
      if (lane < kTile) p_s[r][lane] = p;
      if (lane == 0) {
        m_s[r] = m_new;
        l_s[r] = alpha * l_s[r] + row_sum;
        alpha_s[r] = alpha;
      }
    }
    __syncthreads();
    // A <- alpha A + (p Z) V; thread owns elements e = tid + t * kAttnThreads of the [kTile, D] A.
    _Pragma("unroll") for (int t = 0; t < kPerThread; ++t) {
      const int e = tid + t * kAttnThreads, r = e / D, c = e % D;
      float o = acc[t] * alpha_s[r];
      for (int jj = 0; jj < kTile; ++jj) o = fmaf(p_s[r][jj], v_s[jj][c], o);
      acc[t] = o;
    }
  }
  // m_s and l_s were last written before the loop's final barrier.
  _Pragma("unroll") for (int t = 0; t < kPerThread; ++t) {
    const int e = tid + t * kAttnThreads, r = e / D, c = e % D;
    if (i0 + r < s.tq) {
      const float l = l_s[r];
      out.row(b, h, i0 + r)[c] = cast<T>(l > 0.0f ? acc[t] / l : quiet_nan<float>());
    }
  }
  for (int r = tid; r < kTile; r += kAttnThreads) {
    if (i0 + r < s.tq) {
      const float l = l_s[r];
      stats[bh * s.tq + i0 + r] = l > 0.0f ? m_s[r] + logf(l) : quiet_nan<float>();
    }
  }
}

// D_i = sum_d dO_id O_id, one warp per row of the [B, H, Tq] rows.
template <class T>
__global__ void sdpa_delta_kernel(Heads<const T> dout, Heads<const T> out, float* delta,
                                  int64_t heads, int64_t tq, int d, int64_t rows) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (row >= rows) return;  // uniform across the warp
  const int lane = threadIdx.x & 31;
  const int64_t i = row % tq, bh = row / tq, b = bh / heads, h = bh % heads;
  const T *o = out.row(b, h, i), *g = dout.row(b, h, i);
  float acc = 0.0f;
  for (int c = lane; c < d; c += 32) acc = fmaf(cast<float>(o[c]), cast<float>(g[c]), acc);
  acc = warp_sum(acc);
  if (lane == 0) delta[row] = acc;
}

template <class T, int D>
__global__ void __launch_bounds__(kAttnThreads)
    sdpa_backward_kernel(Heads<const T> q, Heads<const T> k, Heads<const T> v, Heads<const T> dout,
                         const float* stats, const float* delta, float* dq_acc, Heads<T> dk,
                         Heads<T> dv, Problem s, int64_t k_tiles) {
  constexpr int kTile = kTileFor<D>;
  constexpr int kPerThread = kTile * D / kAttnThreads;
  __shared__ float k_s[kTile][D + 1];
  __shared__ float v_s[kTile][D + 1];
  __shared__ float q_s[kTile][D + 1];
  __shared__ float do_s[kTile][D + 1];
  __shared__ float pz_s[kTile][kTile + 1];  // P Z
  __shared__ float ds_s[kTile][kTile + 1];  // dS
  __shared__ float lse_s[kTile], delta_s[kTile];

  const int64_t bh = blockIdx.x / k_tiles, j0 = (blockIdx.x % k_tiles) * kTile;
  const int64_t b = bh / s.heads, h = bh % s.heads;
  const int tid = threadIdx.x;

  load_tile<kTile, D>(k_s, k, b, h, j0, s.tk);
  load_tile<kTile, D>(v_s, v, b, h, j0, s.tk);
  float dk_acc[kPerThread], dv_acc[kPerThread];
  _Pragma("unroll") for (int t = 0; t < kPerThread; ++t) dk_acc[t] = dv_acc[t] = 0.0f;

  // Causal: query rows i < j0 see none of these keys.
  for (int64_t i0 = s.causal ? j0 : 0; i0 < s.tq; i0 += kTile) {
    __syncthreads();  // the previous query tile is no longer read
    load_tile<kTile, D>(q_s, q, b, h, i0, s.tq);
    load_tile<kTile, D>(do_s, dout, b, h, i0, s.tq);
    for (int r = tid; r < kTile; r += kAttnThreads) {
      const bool in = i0 + r < s.tq;
      lse_s[r] = in ? stats[bh * s.tq + i0 + r] : 0.0f;
      delta_s[r] = in ? delta[bh * s.tq + i0 + r] : 0.0f;
    }
    __syncthreads();
    // P = exp(S - stats), P Z and dS = P (Z (dO V^T) - D); zero outside the problem.
    for (int e = tid; e < kTile * kTile; e += kAttnThreads) {
      const int r = e / kTile, c = e % kTile;
      const int64_t i = i0 + r, j = j0 + c;
      float pz = 0.0f, ds = 0.0f;
      if (i < s.tq && j < s.tk) {
        float dot = 0.0f, dp = 0.0f;
        for (int d = 0; d < D; ++d) {
          dot = fmaf(q_s[r][d], k_s[c][d], dot);
          dp = fmaf(do_s[r][d], v_s[c][d], dp);
        }
        const float p = expf(score(s, b, i, j, dot) - lse_s[r]);
        const float z = s.drop_on ? dropout_factor(s, b, h, i, j) : 1.0f;
        pz = p * z;
        ds = p * (z * dp - delta_s[r]);
      }
      pz_s[r][c] = pz;
      ds_s[r][c] = ds;
    }
    __syncthreads();
    // dV += (P Z)^T dO and dK += dS^T Q (scaled at the end): thread owns (key, column) elements.
    _Pragma("unroll") for (int t = 0; t < kPerThread; ++t) {
      const int e = tid + t * kAttnThreads, jj = e / D, c = e % D;
      float gv = dv_acc[t], gk = dk_acc[t];
      for (int r = 0; r < kTile; ++r) {
        gv = fmaf(pz_s[r][jj], do_s[r][c], gv);
        gk = fmaf(ds_s[r][jj], q_s[r][c], gk);
      }
      dv_acc[t] = gv;
      dk_acc[t] = gk;
    }
    // dQ += scale dS K, this key tile's share, into the f32 buffer.
    _Pragma("unroll") for (int t = 0; t < kPerThread; ++t) {
      const int e = tid + t * kAttnThreads, r = e / D, c = e % D;
      if (i0 + r >= s.tq) continue;
      float g = 0.0f;
      for (int jj = 0; jj < kTile; ++jj) g = fmaf(ds_s[r][jj], k_s[jj][c], g);
      atomicAdd(dq_acc + (bh * s.tq + i0 + r) * D + c, s.scale * g);
    }
  }
  _Pragma("unroll") for (int t = 0; t < kPerThread; ++t) {
    const int e = tid + t * kAttnThreads, jj = e / D, c = e % D;
    if (j0 + jj < s.tk) {
      dk.row(b, h, j0 + jj)[c] = cast<T>(s.scale * dk_acc[t]);
      dv.row(b, h, j0 + jj)[c] = cast<T>(dv_acc[t]);
    }
  }
}

// dq = the f32 buffer [B, H, Tq, D] (contiguous), in dq's dtype and layout.
template <class T>
__global__ void sdpa_store_dq_kernel(const float* acc, Heads<T> dq, int64_t heads, int64_t tq,
                                     int d, int64_t n) {
  DTRAIN_GRID_STRIDE(e, n) {
    const int64_t row = e / d, i = row % tq, bh = row / tq;
    dq.row(bh / heads, bh % heads, i)[e % d] = cast<T>(acc[e]);
  }
}

// ---- host side

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t tile_of(int64_t d) { return d == 128 ? kTileFor<128> : kTileFor<64>; }

// Whether the kernels take this problem: f32/f16/bf16 operands of one dtype, 4-d with a unit-stride
// last dim, head dim 32, 64 or 128 for q, k and v, f32 stats and mask (contiguous), non-empty, and
// B H max(Tq, Tk) below 2^31 (every grid, one block per tile or warp per row, fits in gridDim.x).
bool accepts(const Tensor& q, const Tensor& k, const Tensor& stats, const Tensor& mask,
             double dropout_p, std::initializer_list<const Tensor*> all) {
  const DType t = q.dtype();
  if (t != DType::f32 && t != DType::f16 && t != DType::bf16) return false;
  for (const Tensor* x : all) {
    if (x->dtype() != t || x->dim() != 4 || x->strides()[3] != 1) return false;
    if (!x->device().is_cuda() || x->device() != q.device()) return false;
    if (x->size(3) != q.size(3)) return false;
  }
  const int64_t d = q.size(3);
  if (d != 32 && d != 64 && d != 128) return false;
  if (stats.dtype() != DType::f32 || !stats.is_contiguous()) return false;
  if (mask.defined() && (mask.dtype() != DType::f32 || !mask.is_contiguous())) return false;
  if (q.numel() == 0 || k.size(2) == 0) return false;
  if (!(dropout_p >= 0.0 && dropout_p <= 1.0)) return false;
  const int64_t longest = q.size(2) > k.size(2) ? q.size(2) : k.size(2);
  return q.size(0) * q.size(1) * longest < (int64_t{1} << 31);
}

Problem problem_of(const Tensor& q, const Tensor& k, const Tensor& mask, bool causal, double scale,
                   double dropout_p, uint64_t seed) {
  Problem s{};
  s.heads = q.size(1);
  s.tq = q.size(2);
  s.tk = k.size(2);
  s.causal = causal;
  s.scale = static_cast<float>(scale);
  s.mask = mask.defined() ? mask.data<float>() : nullptr;
  if (s.mask) {
    s.mask_st = mask.size(2) == 1 ? 0 : s.tk;
    s.mask_sb = mask.size(0) == 1 ? 0 : mask.size(2) * s.tk;
  }
  s.drop_on = dropout_p > 0.0;
  s.drop_p = static_cast<float>(dropout_p);
  s.drop_scale = static_cast<float>(sdpa_dropout_scale(dropout_p));
  s.seed = seed;
  return s;
}

// Calls f(T{}, std::integral_constant<int, D>{}) for the storage type and head dim.
template <class F>
void dispatch_attention(DType t, int64_t d, F&& f) {
  auto with_type = [&](auto type) {
    if (d == 32) f(type, std::integral_constant<int, 32>{});
    if (d == 64) f(type, std::integral_constant<int, 64>{});
    if (d == 128) f(type, std::integral_constant<int, 128>{});
  };
  if (t == DType::f32) with_type(float{});
  if (t == DType::f16) with_type(half{});
  if (t == DType::bf16) with_type(bf16{});
}

}  // namespace
}  // namespace cuda

using namespace cuda;

bool CudaBackend::sdpa(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask,
                       bool causal, double scale, double dropout_p, uint64_t seed,
                       const Tensor& out, const Tensor& stats) {
  if (!accepts(q, k, stats, attn_mask, dropout_p, {&q, &k, &v, &out})) return false;
  const Problem s = problem_of(q, k, attn_mask, causal, scale, dropout_p, seed);
  const int dev = q.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  const int64_t q_tiles = ceil_div(s.tq, tile_of(q.size(3)));
  const unsigned blocks = static_cast<unsigned>(q.size(0) * s.heads * q_tiles);
  dispatch_attention(q.dtype(), q.size(3), [&](auto type, auto head_dim) {
    using T = decltype(type);
    sdpa_forward_kernel<T, decltype(head_dim)::value><<<blocks, kAttnThreads, 0, stream>>>(
        heads_of<const T>(q), heads_of<const T>(k), heads_of<const T>(v), heads_of<T>(out),
        stats.data<float>(), s, q_tiles);
  });
  check_launch("sdpa_forward_kernel");
  return true;
}

bool CudaBackend::sdpa_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                const Tensor& v, const Tensor& out, const Tensor& stats,
                                const Tensor& attn_mask, bool causal, double scale,
                                double dropout_p, uint64_t seed, const Tensor& dq, const Tensor& dk,
                                const Tensor& dv) {
  if (!accepts(q, k, stats, attn_mask, dropout_p, {&dout, &q, &k, &v, &out, &dq, &dk, &dv})) {
    return false;
  }
  const Problem s = problem_of(q, k, attn_mask, causal, scale, dropout_p, seed);
  const int dev = q.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  const int64_t batch = q.size(0), d = q.size(3), rows = batch * s.heads * s.tq;
  Tensor delta = Tensor::empty({batch, s.heads, s.tq}, DType::f32, q.device());
  Tensor dq_acc = Tensor::zeros({batch, s.heads, s.tq, d}, DType::f32, q.device());
  const int64_t k_tiles = ceil_div(s.tk, tile_of(d));
  const unsigned delta_blocks = static_cast<unsigned>(ceil_div(rows, kWarps));
  const unsigned blocks = static_cast<unsigned>(batch * s.heads * k_tiles);
  dispatch_attention(q.dtype(), d, [&](auto type, auto head_dim) {
    using T = decltype(type);
    sdpa_delta_kernel<T><<<delta_blocks, kAttnThreads, 0, stream>>>(
        heads_of<const T>(dout), heads_of<const T>(out), delta.data<float>(), s.heads, s.tq,
        static_cast<int>(d), rows);
    check_launch("sdpa_delta_kernel");
    sdpa_backward_kernel<T, decltype(head_dim)::value><<<blocks, kAttnThreads, 0, stream>>>(
        heads_of<const T>(q), heads_of<const T>(k), heads_of<const T>(v), heads_of<const T>(dout),
        stats.data<float>(), delta.data<float>(), dq_acc.data<float>(), heads_of<T>(dk),
        heads_of<T>(dv), s, k_tiles);
    check_launch("sdpa_backward_kernel");
    sdpa_store_dq_kernel<T><<<grid_for(rows * d), kThreads, 0, stream>>>(
        dq_acc.data<float>(), heads_of<T>(dq), s.heads, s.tq, static_cast<int>(d), rows * d);
    check_launch("sdpa_store_dq_kernel");
  });
  return true;
}

}  // namespace dtrain
