// The row-major GEMM of the backend interface as the column-major problem cuBLAS solves. A row-major
// matrix with leading dimension ld is, read column-major, its transpose with the same ld, so
//   C = op(A) op(B)  (row-major, m x n)   <=>   C^T = op(B)^T op(A)^T  (column-major, n x m),
// which is a column-major GEMM with B as the first operand and A as the second, each keeping its own
// transpose flag. Plain C++, tested without a GPU.
#pragma once
#include <algorithm>
#include <cstdint>

#include "core/backend/backend.h"

namespace dtrain::cuda {

struct ColMajorMatrix {
  bool transposed = false;             // the op applied to the stored matrix
  int64_t rows = 0, cols = 0, ld = 0;  // the stored matrix, column-major
  int64_t batch_stride = 0;
};

struct ColMajorGemm {
  // In cuBLAS's names: out (m x n) = op(first) (m x k) @ op(second) (k x n), where m, n, k here are
  // the interface's n, m, k.
  ColMajorMatrix first, second, out;
  int64_t m = 0, n = 0, k = 0;
};

// The epilogues after the swap. cuBLAS's D is C^T, n x m: its rows are C's columns and its
// columns are C's rows, and its second operand is A.
//   bias      (bias [n] added to each row of C)  = CUBLASLT_EPILOGUE_BIAS, whose vector has one
//             element per row of D (D.rows = n) and is broadcast over D's columns (C's rows);
//   bias_grad (bias[i] = sum_p op(A)[i, p])      = CUBLASLT_EPILOGUE_BGRADB, which reduces
//             cuBLAS's B = second = A over k into one element per column of D (D.cols = m).
// BGRADA would reduce our B instead (one element per column of C), which is not the contract.
inline int64_t epilogue_vector_length(const ColMajorGemm& p, GemmEpilogue e) {
  return e == GemmEpilogue::bias_grad ? p.out.cols : p.out.rows;
}

inline ColMajorGemm to_col_major(const GemmArgs& g) {
  ColMajorGemm p;
  p.m = g.n;
  p.n = g.m;
  p.k = g.k;
  // first = B. Untransposed, B is k x n row-major = n x k column-major; transposed, n x k row-major.
  p.first.transposed = g.trans_b;
  p.first.rows = g.trans_b ? g.k : g.n;
  p.first.cols = g.trans_b ? g.n : g.k;
  p.first.ld = g.ldb;
  p.first.batch_stride = g.stride_b;
  // second = A. Untransposed, A is m x k row-major = k x m column-major.
  p.second.transposed = g.trans_a;
  p.second.rows = g.trans_a ? g.m : g.k;
  p.second.cols = g.trans_a ? g.k : g.m;
  p.second.ld = g.lda;
  p.second.batch_stride = g.stride_a;
  p.out.rows = g.n;
  p.out.cols = g.m;
  p.out.ld = g.ldc;
  p.out.batch_stride = g.stride_c;
  // A matrix of one column never steps by its ld, but cuBLAS still requires ld >= rows.
  for (ColMajorMatrix* mat : {&p.first, &p.second, &p.out}) {
    if (mat->cols <= 1) mat->ld = std::max<int64_t>(mat->ld, mat->rows);
    mat->ld = std::max<int64_t>(mat->ld, 1);
  }
  return p;
}

}  // namespace dtrain::cuda
