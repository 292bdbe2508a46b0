// GFLOP/s of dtrain's matmul against OpenBLAS's sgemm called directly, in one binary, on the same
// operands, alternating the two so both see the same machine state. Usage: bench_matmul [N] [reps]
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/backend/backend.h"
#include "core/ops/linalg.h"
#include "core/tensor/random.h"

using namespace dtrain;

namespace {
double seconds(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

int main(int argc, char** argv) {
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 1024;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 5;
  manual_seed(0);
  Tensor a = Tensor::randn({n, n}), b = Tensor::randn({n, n});
  Tensor c = Tensor::empty({n, n});
  const double flops = 2.0 * static_cast<double>(n) * n * n;
  std::printf("matmul %lldx%lldx%lld f32, best of %d\n", static_cast<long long>(n),
              static_cast<long long>(n), static_cast<long long>(n), reps);
  std::printf("%8s %16s %16s %8s\n", "threads", "dtrain GFLOP/s", "sgemm GFLOP/s", "ratio");
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    double best_ours = 1e30, best_blas = 1e30;
    for (int r = 0; r < reps + 1; ++r) {  // the first round warms up and is not counted
      auto t0 = std::chrono::steady_clock::now();
      Tensor out = matmul(a, b);
      double ours = seconds(t0);
      openblas_set_num_threads(threads);  // the baseline is OpenBLAS with its own threads
      t0 = std::chrono::steady_clock::now();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(n),
                  static_cast<int>(n), static_cast<int>(n), 1.0f, a.data<float>(),
                  static_cast<int>(n), b.data<float>(), static_cast<int>(n), 0.0f, c.data<float>(),
                  static_cast<int>(n));
      double blas = seconds(t0);
      set_num_threads(threads);
      if (r > 0) best_ours = std::min(best_ours, ours), best_blas = std::min(best_blas, blas);
    }
    std::printf("%8d %16.1f %16.1f %8.3f\n", threads, flops / best_ours / 1e9,
                flops / best_blas / 1e9, best_blas / best_ours);
  }
  return 0;
}
