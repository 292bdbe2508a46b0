// CPU convolution (im2col + OpenBLAS GEMM) and 2-D pooling, NCHW. f32 and f64 directly; f16 and
// bf16 through f32 copies. Every gradient is accumulated in a fixed order (per output plane or per
// channel), so backward passes are bitwise reproducible for any thread count.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/cpu_loops.h"

namespace dtrain {

using namespace cpu_detail;

namespace {

// Row-major C = alpha * op(A) @ op(B) + beta * C.
inline void gemm_rm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                    int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
}
inline void gemm_rm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                    const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
                    double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
}

// The geometry of one convolution, derived once from the tensors.
struct ConvShape {
  int64_t batch, c_in, h, w, c_out, kh, kw, oh, ow, groups;
  int64_t sh, sw, ph, pw;
  int64_t cg() const { return c_in / groups; }    // input channels per group
  int64_t cog() const { return c_out / groups; }  // output channels per group
  int64_t k() const { return cg() * kh * kw; }    // rows of a column matrix
  int64_t p() const { return oh * ow; }           // output positions per plane
  // A 1x1, stride-1, unpadded convolution reads the input as the column matrix directly.
  bool direct() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
};

ConvShape conv_shape(const Tensor& x, const Tensor& weight, const Conv2dArgs& a) {
  ConvShape s{};
  s.batch = x.size(0), s.c_in = x.size(1), s.h = x.size(2), s.w = x.size(3);
  s.c_out = weight.size(0), s.kh = weight.size(2), s.kw = weight.size(3);
  s.groups = a.groups, s.sh = a.stride_h, s.sw = a.stride_w, s.ph = a.pad_h, s.pw = a.pad_w;
  s.oh = (s.h + 2 * s.ph - s.kh) / s.sh + 1;
  s.ow = (s.w + 2 * s.pw - s.kw) / s.sw + 1;
  return s;
}

// col[(c*KH + i)*KW + j, oy*OW + ox] = x[c, oy*sh - ph + i, ox*sw - pw + j] (0 outside the image),
// for the cg channels starting at x.
template <class T>
void im2col(const T* x, const ConvShape& s, T* col) {
  const int64_t rows = s.k(), p = s.p();
#pragma omp parallel for schedule(static) if (rows * p > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t c = r / (s.kh * s.kw), i = (r / s.kw) % s.kh, j = r % s.kw;
    const T* xc = x + c * s.h * s.w;
    T* cr = col + r * p;
    for (int64_t oy = 0; oy < s.oh; ++oy) {
      const int64_t iy = oy * s.sh - s.ph + i;
      T* dst = cr + oy * s.ow;
      if (iy < 0 || iy >= s.h) {
        std::fill(dst, dst + s.ow, T(0));
        continue;
      }
      const T* xrow = xc + iy * s.w;
      for (int64_t ox = 0; ox < s.ow; ++ox) {
        const int64_t ix = ox * s.sw - s.pw + j;
        dst[ox] = (ix >= 0 && ix < s.w) ? xrow[ix] : T(0);
      }
    }
  }
}

// The adjoint of im2col: x[c, ...] += col[...]. Parallel over channels: a channel's plane receives
// only from its own rows, so each element is summed in one fixed order.
template <class T>
void col2im_add(const T* col, const ConvShape& s, T* x) {
  const int64_t p = s.p();
#pragma omp parallel for schedule(static) if (s.k() * p > kParallelGrain)
  for (int64_t c = 0; c < s.cg(); ++c) {
    T* xc = x + c * s.h * s.w;
    for (int64_t i = 0; i < s.kh; ++i) {
      for (int64_t j = 0; j < s.kw; ++j) {
        const T* cr = col + ((c * s.kh + i) * s.kw + j) * p;
        for (int64_t oy = 0; oy < s.oh; ++oy) {
          const int64_t iy = oy * s.sh - s.ph + i;
          if (iy < 0 || iy >= s.h) continue;
          T* xrow = xc + iy * s.w;
          const T* src = cr + oy * s.ow;
          for (int64_t ox = 0; ox < s.ow; ++ox) {
            const int64_t ix = ox * s.sw - s.pw + j;
            if (ix >= 0 && ix < s.w) xrow[ix] += src[ox];
          }
        }
      }
    }
  }
}

// y[n, g] (cog x P) = W[g] (cog x K) @ col(x[n, g]) (K x P), then + bias.
template <class T>
void conv2d_kernel(const Tensor& x, const Tensor& weight, const Tensor& bias, const ConvShape& s,
                   const Tensor& out) {
  const T* xp = x.data<T>();
  const T* wp = weight.data<T>();
  T* yp = out.data<T>();
  const int64_t k = s.k(), p = s.p(), cg = s.cg(), cog = s.cog();
  std::vector<T> col(s.direct() ? 0 : static_cast<size_t>(k * p));
  for (int64_t n = 0; n < s.batch; ++n) {
    for (int64_t g = 0; g < s.groups; ++g) {
      const T* xg = xp + (n * s.c_in + g * cg) * s.h * s.w;
      const T* colp = xg;
      if (!s.direct()) {
        im2col(xg, s, col.data());
        colp = col.data();
      }
      gemm_rm(false, false, cog, p, k, T(1), wp + g * cog * k, k, colp, p, T(0),
              yp + (n * s.c_out + g * cog) * p, p);
    }
  }
  if (bias.defined()) {
    const T* bp = bias.data<T>();
    const int64_t planes = s.batch * s.c_out;
#pragma omp parallel for schedule(static) if (planes * p > kParallelGrain)
    for (int64_t pl = 0; pl < planes; ++pl) {
      const T b = bp[pl % s.c_out];
      T* y = yp + pl * p;
      for (int64_t i = 0; i < p; ++i) y[i] += b;
    }
  }
}

//   dbias[c] = sum_{n, p} dy[n, c, p]
//   dW[g]   += dy[n, g] (cog x P) @ col(x[n, g])^T (P x K)        summed over n in order
//   dx[n, g] = col2im(W[g]^T (K x cog) @ dy[n, g] (cog x P))
template <class T>
void conv2d_backward_kernel(const Tensor& dy, const Tensor& x, const Tensor& weight,
                            const ConvShape& s, const Tensor& dx, const Tensor& dweight,
                            const Tensor& dbias) {
  const T* xp = x.data<T>();
  const T* wp = weight.data<T>();
  const T* gp = dy.data<T>();
  const int64_t k = s.k(), p = s.p(), cg = s.cg(), cog = s.cog();
  if (dbias.defined()) {
    T* dbp = dbias.data<T>();
#pragma omp parallel for schedule(static) if (s.batch * s.c_out * p > kParallelGrain)
    for (int64_t c = 0; c < s.c_out; ++c) {
      double acc = 0.0;
      for (int64_t n = 0; n < s.batch; ++n) {
        const T* g = gp + (n * s.c_out + c) * p;
        for (int64_t i = 0; i < p; ++i) acc += static_cast<double>(g[i]);
      }
      dbp[c] = static_cast<T>(acc);
    }
  }
  std::vector<T> col(s.direct() ? 0 : static_cast<size_t>(k * p));
  if (dweight.defined()) {
    T* dwp = dweight.data<T>();
    std::fill(dwp, dwp + dweight.numel(), T(0));
    for (int64_t n = 0; n < s.batch; ++n) {
      for (int64_t g = 0; g < s.groups; ++g) {
        const T* xg = xp + (n * s.c_in + g * cg) * s.h * s.w;
        const T* colp = xg;
        if (!s.direct()) {
          im2col(xg, s, col.data());
          colp = col.data();
        }
        gemm_rm(false, true, cog, k, p, T(1), gp + (n * s.c_out + g * cog) * p, p, colp, p, T(1),
                dwp + g * cog * k, k);
      }
    }
  }
  if (dx.defined()) {
    T* dxp = dx.data<T>();
    if (!s.direct()) std::fill(dxp, dxp + dx.numel(), T(0));
    for (int64_t n = 0; n < s.batch; ++n) {
      for (int64_t g = 0; g < s.groups; ++g) {
        T* dxg = dxp + (n * s.c_in + g * cg) * s.h * s.w;
        const T* dyg = gp + (n * s.c_out + g * cog) * p;
        if (s.direct()) {
          // Groups partition the channels, so each slice of dx is written exactly once.
          gemm_rm(true, false, k, p, cog, T(1), wp + g * cog * k, k, dyg, p, T(0), dxg, p);
        } else {
          gemm_rm(true, false, k, p, cog, T(1), wp + g * cog * k, k, dyg, p, T(0), col.data(), p);
          col2im_add(col.data(), s, dxg);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Pooling. A window starts at (oy*sh - ph, ox*sw - pw) and spans kh x kw.
struct PoolShape {
  int64_t planes, h, w, oh, ow;
};

PoolShape pool_shape(const Tensor& x, const Tensor& out) {
  return {x.size(0) * x.size(1), x.size(2), x.size(3), out.size(2), out.size(3)};
}

// Max over the in-image part of each window (padding never wins). NaN propagates, as in PyTorch.
template <class T>
void max_pool2d_kernel(const Tensor& x, const Pool2dArgs& a, const Tensor& out,
                       const Tensor& indices) {
  const PoolShape s = pool_shape(x, out);
  const T* xp = x.data<T>();
  T* yp = out.data<T>();
  int64_t* ip = indices.defined() ? indices.data<int64_t>() : nullptr;
#pragma omp parallel for schedule(static) if (s.planes * s.oh * s.ow * a.kernel_h * a.kernel_w > \
                                              kParallelGrain)
  for (int64_t pl = 0; pl < s.planes; ++pl) {
    const T* xpl = xp + pl * s.h * s.w;
    for (int64_t oy = 0; oy < s.oh; ++oy) {
      const int64_t y0 = oy * a.stride_h - a.pad_h;
      const int64_t ys = std::max<int64_t>(y0, 0), ye = std::min(y0 + a.kernel_h, s.h);
      for (int64_t ox = 0; ox < s.ow; ++ox) {
        const int64_t x0 = ox * a.stride_w - a.pad_w;
        const int64_t xs = std::max<int64_t>(x0, 0), xe = std::min(x0 + a.kernel_w, s.w);
        T best = -std::numeric_limits<T>::infinity();
        int64_t best_at = ys * s.w + xs;
        for (int64_t iy = ys; iy < ye; ++iy) {
          for (int64_t ix = xs; ix < xe; ++ix) {
            const T v = xpl[iy * s.w + ix];
            if (v > best || std::isnan(v)) {
              best = v;
              best_at = iy * s.w + ix;
            }
          }
        }
        const int64_t o = (pl * s.oh + oy) * s.ow + ox;
        yp[o] = best;
        if (ip) ip[o] = best_at;
      }
    }
  }
}

template <class T>
void max_pool2d_backward_kernel(const Tensor& dy, const Tensor& indices, const Tensor& dx) {
  const int64_t planes = dx.size(0) * dx.size(1), hw = dx.size(2) * dx.size(3);
  const int64_t ohw = dy.size(2) * dy.size(3);
  const T* gp = dy.data<T>();
  const int64_t* ip = indices.data<int64_t>();
  T* dxp = dx.data<T>();
#pragma omp parallel for schedule(static) if (planes * (hw + ohw) > kParallelGrain)
  for (int64_t pl = 0; pl < planes; ++pl) {
    T* d = dxp + pl * hw;
    std::fill(d, d + hw, T(0));
    const T* g = gp + pl * ohw;
    const int64_t* idx = ip + pl * ohw;
    for (int64_t o = 0; o < ohw; ++o) {
      if (idx[o] >= 0 && idx[o] < hw) d[idx[o]] += g[o];
    }
  }
}

// PyTorch's count_include_pad=True divisor: the window clipped to the padded image (not to the
// image itself), so padded zeros count and a window hanging past the padding does not.
inline int64_t avg_divisor(int64_t y0, int64_t x0, const Pool2dArgs& a, int64_t h, int64_t w) {
  const int64_t ye = std::min(y0 + a.kernel_h, h + a.pad_h);
  const int64_t xe = std::min(x0 + a.kernel_w, w + a.pad_w);
  return (ye - y0) * (xe - x0);
}

template <class T>
void avg_pool2d_kernel(const Tensor& x, const Pool2dArgs& a, const Tensor& out) {
  const PoolShape s = pool_shape(x, out);
  const T* xp = x.data<T>();
  T* yp = out.data<T>();
#pragma omp parallel for schedule(static) if (s.planes * s.oh * s.ow * a.kernel_h * a.kernel_w > \
                                              kParallelGrain)
  for (int64_t pl = 0; pl < s.planes; ++pl) {
    const T* xpl = xp + pl * s.h * s.w;
    for (int64_t oy = 0; oy < s.oh; ++oy) {
      const int64_t y0 = oy * a.stride_h - a.pad_h;
      const int64_t ys = std::max<int64_t>(y0, 0), ye = std::min(y0 + a.kernel_h, s.h);
      for (int64_t ox = 0; ox < s.ow; ++ox) {
        const int64_t x0 = ox * a.stride_w - a.pad_w;
        const int64_t xs = std::max<int64_t>(x0, 0), xe = std::min(x0 + a.kernel_w, s.w);
        double acc = 0.0;
        for (int64_t iy = ys; iy < ye; ++iy) {
          for (int64_t ix = xs; ix < xe; ++ix) acc += static_cast<double>(xpl[iy * s.w + ix]);
        }
        yp[(pl * s.oh + oy) * s.ow + ox] =
            static_cast<T>(acc / static_cast<double>(avg_divisor(y0, x0, a, s.h, s.w)));
      }
    }
  }
}

template <class T>
void avg_pool2d_backward_kernel(const Tensor& dy, const Pool2dArgs& a, const Tensor& dx) {
  const PoolShape s = pool_shape(dx, dy);
  const T* gp = dy.data<T>();
  T* dxp = dx.data<T>();
#pragma omp parallel for schedule(static) if (s.planes * s.oh * s.ow * a.kernel_h * a.kernel_w > \
                                              kParallelGrain)
  for (int64_t pl = 0; pl < s.planes; ++pl) {
    T* d = dxp + pl * s.h * s.w;
    std::fill(d, d + s.h * s.w, T(0));
    for (int64_t oy = 0; oy < s.oh; ++oy) {
      const int64_t y0 = oy * a.stride_h - a.pad_h;
      const int64_t ys = std::max<int64_t>(y0, 0), ye = std::min(y0 + a.kernel_h, s.h);
      for (int64_t ox = 0; ox < s.ow; ++ox) {
        const int64_t x0 = ox * a.stride_w - a.pad_w;
        const int64_t xs = std::max<int64_t>(x0, 0), xe = std::min(x0 + a.kernel_w, s.w);
        const T share = static_cast<T>(static_cast<double>(gp[(pl * s.oh + oy) * s.ow + ox]) /
                                       static_cast<double>(avg_divisor(y0, x0, a, s.h, s.w)));
        for (int64_t iy = ys; iy < ye; ++iy) {
          for (int64_t ix = xs; ix < xe; ++ix) d[iy * s.w + ix] += share;
        }
      }
    }
  }
}

}  // namespace

void CpuBackend::conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                        const Conv2dArgs& args, const Tensor& out) {
  if (is_half(x.dtype())) {
    F32Staging f32;
    conv2d(f32.in(x), f32.in(weight), f32.in(bias), args, f32.out(out));
    return f32.write_back();
  }
  const ConvShape s = conv_shape(x, weight, args);
  dispatch_float(x.dtype(), "conv2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    conv2d_kernel<T>(x, weight, bias, s, out);
  });
}

void CpuBackend::conv2d_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                 const Conv2dArgs& args, const Tensor& dx, const Tensor& dweight,
                                 const Tensor& dbias) {
  if (is_half(x.dtype()) || is_half(dy.dtype())) {
    F32Staging f32;
    conv2d_backward(f32.in(dy), f32.in(x), f32.in(weight), args, f32.out(dx), f32.out(dweight),
                    f32.out(dbias));
    return f32.write_back();
  }
  const ConvShape s = conv_shape(x, weight, args);
  dispatch_float(x.dtype(), "conv2d_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    conv2d_backward_kernel<T>(dy, x, weight, s, dx, dweight, dbias);
  });
}

void CpuBackend::max_pool2d(const Tensor& x, const Pool2dArgs& args, const Tensor& out,
                            const Tensor& indices) {
  if (is_half(x.dtype())) {
    F32Staging f32;
    max_pool2d(f32.in(x), args, f32.out(out), indices);
    return f32.write_back();
  }
  dispatch_float(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    max_pool2d_kernel<T>(x, args, out, indices);
  });
}

void CpuBackend::max_pool2d_backward(const Tensor& dy, const Tensor& indices, const Tensor& dx) {
  if (is_half(dy.dtype())) {
    F32Staging f32;
    max_pool2d_backward(f32.in(dy), indices, f32.out(dx));
    return f32.write_back();
  }
  dispatch_float(dy.dtype(), "max_pool2d_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    max_pool2d_backward_kernel<T>(dy, indices, dx);
  });
}

void CpuBackend::avg_pool2d(const Tensor& x, const Pool2dArgs& args, const Tensor& out) {
  if (is_half(x.dtype())) {
    F32Staging f32;
    avg_pool2d(f32.in(x), args, f32.out(out));
    return f32.write_back();
  }
  dispatch_float(x.dtype(), "avg_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    avg_pool2d_kernel<T>(x, args, out);
  });
}

void CpuBackend::avg_pool2d_backward(const Tensor& dy, const Pool2dArgs& args, const Tensor& dx) {
  if (is_half(dy.dtype())) {
    F32Staging f32;
    avg_pool2d_backward(f32.in(dy), args, f32.out(dx));
    return f32.write_back();
  }
  dispatch_float(dy.dtype(), "avg_pool2d_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    avg_pool2d_backward_kernel<T>(dy, args, dx);
  });
}

}  // namespace dtrain
