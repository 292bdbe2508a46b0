// CPU fused scaled-dot-product attention, forward and backward. One task per (batch, head) pair;
// within it, query rows are taken in blocks of kBlock:
//   S = scale Q K^T + mask (-inf above the diagonal when causal),  P = softmax over each row of S,
//   O = P V,  stats_i = m_i + log l_i  (m_i the row max, l_i = sum_j exp(S_ij - m_i)).
// The backward pass recomputes P = exp(S - stats) and, with D_i = sum_d dO_id O_id (= sum_j P_ij dP_ij),
//   dV += P^T dO,  dP = dO V^T,  dS = P (dP - D),  dQ = scale dS K,  dK += scale dS^T Q.
// One block of scores (kBlock x Tk) is all the scratch there is: no [B, H, Tq, Tk] tensor is made, and
// q, k, v, out and the gradients are read and written through their strides (last dim unit-stride),
// so heads sliced out of a fused qkv projection, and an output laid out as [B, Tq, H, D], need no copies.
// A causal block stops at its last row's diagonal: keys past it are never multiplied.
// Dropout (p > 0) multiplies P by Z = M / (1 - p), M the keep mask of sdpa_dropout.h, after the
// softmax (whose statistics stay those of the undropped P): O = (P Z) V. In the backward pass
//   dV += (P Z)^T dO,  dP = (dO V^T) Z,  dS = P (dP - D),
// and D_i = sum_d dO_id O_id still equals sum_j P_ij dP_ij, because O_i = sum_j P_ij Z_ij V_j.
// A row whose every key is masked (-inf) has max -inf, so exp(S - m) is NaN: its output and stats
// are NaN, as the composed softmax gives, and the NaN reaches the gradients the row touches.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/cpu_loops.h"
#include "core/backend/cpu/cpu_math.h"
#include "core/backend/sdpa_dropout.h"

namespace dtrain {

namespace {

using cpu_detail::parallel_for;

constexpr int64_t kBlock = 64;  // query rows per block of scores

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
}
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
          int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
}

[[gnu::always_inline]] inline float exp_of(float v) { return cpu_detail::exp_poly(v); }
inline double exp_of(double v) { return std::exp(v); }

// A [B, H, T, D] operand: base pointer and element strides of its first three dims.
template <class T>
struct Heads {
  T* p;
  int64_t sb, sh, st;
  Heads(const Tensor& t)
      : p(t.data<T>()), sb(t.strides()[0]), sh(t.strides()[1]), st(t.strides()[2]) {}
  T* at(int64_t b, int64_t h) const { return p + b * sb + h * sh; }
};

// The problem's sizes, and where each (b, h) pair's mask rows start.
template <class T>
struct Shape4 {
  int64_t batch, heads, tq, tk, d;
  bool causal;
  const T* mask;             // [Bm, 1, Tqm, Tk] contiguous, or null
  int64_t mask_sb, mask_st;  // strides of its batch and query dims (0 where broadcast)

  Shape4(const Tensor& q, const Tensor& k, const Tensor& mask_t, bool causal_)
      : batch(q.size(0)),
        heads(q.size(1)),
        tq(q.size(2)),
        tk(k.size(2)),
        d(q.size(3)),
        causal(causal_),
        mask(mask_t.defined() ? mask_t.data<T>() : nullptr),
        mask_sb(0),
        mask_st(0) {
    if (mask) {
      mask_st = mask_t.size(2) == 1 ? 0 : tk;
      mask_sb = mask_t.size(0) == 1 ? 0 : mask_t.size(2) * tk;
    }
  }
  // Keys a block of query rows [i0, i0 + rows) can see.
  int64_t keys(int64_t i0, int64_t rows) const { return causal ? std::min(tk, i0 + rows) : tk; }
};

// The dropout of a call: p, the seed of its mask and the value Z takes for a kept score (off at
// p = 0).
template <class T>
struct Dropout {
  bool on;
  float p;
  T kept_scale;
  uint64_t seed;
  Dropout(double p_, uint64_t seed_)
      : on(p_ > 0.0),
        p(static_cast<float>(p_)),
        kept_scale(static_cast<T>(sdpa_dropout_scale(p_))),
        seed(seed_) {}
  // Z for scores (b, h, i, j) of j in [0, kn), multiplied into row.
  void apply(int64_t b, int64_t h, int64_t i, int64_t kn, T* row) const {
    for (int64_t j = 0; j < kn; ++j) {
      const bool keep = sdpa_dropout_keep(seed, static_cast<uint32_t>(b), static_cast<uint32_t>(h),
                                          static_cast<uint32_t>(i), static_cast<uint32_t>(j), p);
      row[j] *= keep ? kept_scale : T(0);
    }
  }
};

// S (rows x kn, row-major) = scale Q_blk K^T + mask, with -inf above the diagonal when causal.
template <class T>
void block_scores(const Shape4<T>& s, int64_t b, const T* q, int64_t qst, const T* k, int64_t kst,
                  int64_t i0, int64_t rows, int64_t kn, T scale, T* scores) {
  gemm(false, true, rows, kn, s.d, scale, q + i0 * qst, qst, k, kst, T(0), scores, kn);
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = i0 + r;
    T* row = scores + r * kn;
    if (s.mask) {
      const T* m = s.mask + b * s.mask_sb + i * s.mask_st;
      for (int64_t j = 0; j < kn; ++j) row[j] += m[j];
    }
    if (s.causal) {
      for (int64_t j = i + 1; j < kn; ++j) row[j] = kNegInf;
    }
  }
}

template <class T>
void sdpa_forward_typed(const Tensor& q_t, const Tensor& k_t, const Tensor& v_t,
                        const Tensor& mask_t, bool causal, double scale, const Dropout<T>& drop,
                        const Tensor& out_t, const Tensor& stats_t) {
  const Shape4<T> s(q_t, k_t, mask_t, causal);
  const Heads<const T> q(q_t), k(k_t), v(v_t);
  const Heads<T> out(out_t);
  T* stats = stats_t.data<T>();  // [B, H, Tq] contiguous
  const int64_t pairs = s.batch * s.heads;
  parallel_for(pairs, 4 * s.tq * s.tk * s.d, [&](int64_t begin, int64_t end) {
    std::vector<T> scores(static_cast<size_t>(std::min(kBlock, s.tq) * s.tk));
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t b = pair / s.heads, h = pair % s.heads;
      const T *qp = q.at(b, h), *kp = k.at(b, h), *vp = v.at(b, h);
      T* op = out.at(b, h);
      for (int64_t i0 = 0; i0 < s.tq; i0 += kBlock) {
        const int64_t rows = std::min(kBlock, s.tq - i0), kn = s.keys(i0, rows);
        block_scores(s, b, qp, q.st, kp, k.st, i0, rows, kn, static_cast<T>(scale), scores.data());
        for (int64_t r = 0; r < rows; ++r) {
          T* row = scores.data() + r * kn;
          T m = -std::numeric_limits<T>::infinity();
          for (int64_t j = 0; j < kn; ++j) m = std::max(m, row[j]);
          // A row of only -inf (every key masked) gives NaN, as the composed softmax does.
          T l = 0;
#pragma omp simd reduction(+ : l)
          for (int64_t j = 0; j < kn; ++j) {
            row[j] = exp_of(row[j] - m);
            l += row[j];
          }
          const T inv = T(1) / l;
#pragma omp simd
          for (int64_t j = 0; j < kn; ++j) row[j] *= inv;
          stats[pair * s.tq + i0 + r] = m + std::log(l);
          if (drop.on) drop.apply(b, h, i0 + r, kn, row);
        }
        gemm(false, false, rows, s.d, kn, T(1), scores.data(), kn, vp, v.st, T(0), op + i0 * out.st,
             out.st);
      }
    }
  });
}

template <class T>
void sdpa_backward_typed(const Tensor& dout_t, const Tensor& q_t, const Tensor& k_t,
                         const Tensor& v_t, const Tensor& out_t, const Tensor& stats_t,
                         const Tensor& mask_t, bool causal, double scale_d, const Dropout<T>& drop,
                         const Tensor& dq_t, const Tensor& dk_t, const Tensor& dv_t) {
  const Shape4<T> s(q_t, k_t, mask_t, causal);
  const Heads<const T> dout(dout_t), q(q_t), k(k_t), v(v_t), out(out_t);
  const Heads<T> dq(dq_t), dk(dk_t), dv(dv_t);
  const T* stats = stats_t.data<T>();
  const T scale = static_cast<T>(scale_d);
  const int64_t pairs = s.batch * s.heads;
  parallel_for(pairs, 10 * s.tq * s.tk * s.d, [&](int64_t begin, int64_t end) {
    const size_t block = static_cast<size_t>(std::min(kBlock, s.tq) * s.tk);
    std::vector<T> p(block), dp(block), delta(static_cast<size_t>(kBlock));
    std::vector<T> z(drop.on ? static_cast<size_t>(s.tk) : 0);
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t b = pair / s.heads, h = pair % s.heads;
      const T *qp = q.at(b, h), *kp = k.at(b, h), *vp = v.at(b, h), *op = out.at(b, h),
              *dop = dout.at(b, h);
      T *dqp = dq.at(b, h), *dkp = dk.at(b, h), *dvp = dv.at(b, h);
      for (int64_t j = 0; j < s.tk; ++j) {
        std::fill_n(dkp + j * dk.st, s.d, T(0));
        std::fill_n(dvp + j * dv.st, s.d, T(0));
      }
      for (int64_t i0 = 0; i0 < s.tq; i0 += kBlock) {
        const int64_t rows = std::min(kBlock, s.tq - i0), kn = s.keys(i0, rows);
        block_scores(s, b, qp, q.st, kp, k.st, i0, rows, kn, scale, p.data());
        for (int64_t r = 0; r < rows; ++r) {
          T* row = p.data() + r * kn;
          const T lse = stats[pair * s.tq + i0 + r];
#pragma omp simd
          for (int64_t j = 0; j < kn; ++j) row[j] = exp_of(row[j] - lse);
          const T *o = op + (i0 + r) * out.st, *g = dop + (i0 + r) * dout.st;
          T dot = 0;
#pragma omp simd reduction(+ : dot)
          for (int64_t c = 0; c < s.d; ++c) dot += o[c] * g[c];
          delta[static_cast<size_t>(r)] = dot;
        }
        const T* dob = dop + i0 * dout.st;
        gemm(false, true, rows, kn, s.d, T(1), dob, dout.st, vp, v.st, T(0), dp.data(), kn);
        for (int64_t r = 0; r < rows; ++r) {
          T* pr = p.data() + r * kn;
          T* dr = dp.data() + r * kn;
          const T dl = delta[static_cast<size_t>(r)];
          if (drop.on) {
            // dS = P (Z (dO V^T) - D); then P becomes P Z for dV.
            std::fill_n(z.data(), kn, T(1));
            drop.apply(b, h, i0 + r, kn, z.data());
            for (int64_t j = 0; j < kn; ++j) {
              dr[j] = pr[j] * (z[static_cast<size_t>(j)] * dr[j] - dl);
              pr[j] *= z[static_cast<size_t>(j)];
            }
          } else {
#pragma omp simd
            for (int64_t j = 0; j < kn; ++j) dr[j] = pr[j] * (dr[j] - dl);
          }
        }
        gemm(true, false, kn, s.d, rows, T(1), p.data(), kn, dob, dout.st, T(1), dvp, dv.st);
        gemm(false, false, rows, s.d, kn, scale, dp.data(), kn, kp, k.st, T(0), dqp + i0 * dq.st,
             dq.st);
        gemm(true, false, kn, s.d, rows, scale, dp.data(), kn, qp + i0 * q.st, q.st, T(1), dkp,
             dk.st);
      }
    }
  });
}

// The fused kernels take f32 or f64 operands whose last dim is unit-stride, and non-empty sizes.
bool accepts(const Tensor& q, const Tensor& k, const Tensor& stats, const Tensor& mask,
             std::initializer_list<const Tensor*> all) {
  if (q.dtype() != DType::f32 && q.dtype() != DType::f64) return false;
  if (stats.dtype() != q.dtype() || (mask.defined() && mask.dtype() != q.dtype())) return false;
  if (q.numel() == 0 || k.size(2) == 0) return false;
  for (const Tensor* t : all) {
    if (t->dtype() != q.dtype() || t->dim() != 4 || t->strides()[3] != 1) return false;
  }
  return true;
}

}  // namespace

bool CpuBackend::sdpa(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask,
                      bool causal, double scale, double dropout_p, uint64_t seed, const Tensor& out,
                      const Tensor& stats) {
  if (!accepts(q, k, stats, attn_mask, {&q, &k, &v, &out})) return false;
  if (q.dtype() == DType::f32) {
    sdpa_forward_typed<float>(q, k, v, attn_mask, causal, scale, Dropout<float>(dropout_p, seed),
                              out, stats);
  } else {
    sdpa_forward_typed<double>(q, k, v, attn_mask, causal, scale, Dropout<double>(dropout_p, seed),
                               out, stats);
  }
  return true;
}

bool CpuBackend::sdpa_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                               const Tensor& v, const Tensor& out, const Tensor& stats,
                               const Tensor& attn_mask, bool causal, double scale, double dropout_p,
                               uint64_t seed, const Tensor& dq, const Tensor& dk,
                               const Tensor& dv) {
  if (!accepts(q, k, stats, attn_mask, {&dout, &q, &k, &v, &out, &dq, &dk, &dv})) return false;
  if (q.dtype() == DType::f32) {
    sdpa_backward_typed<float>(dout, q, k, v, out, stats, attn_mask, causal, scale,
                               Dropout<float>(dropout_p, seed), dq, dk, dv);
  } else {
    sdpa_backward_typed<double>(dout, q, k, v, out, stats, attn_mask, causal, scale,
                                Dropout<double>(dropout_p, seed), dq, dk, dv);
  }
  return true;
}

}  // namespace dtrain
