#include "core/nn/positional_encoding.h"

#include <cmath>
#include <vector>

#include "core/nn/init.h"
#include "core/ops/activation.h"
#include "core/ops/elementwise.h"

namespace dtrain::nn {

Tensor sinusoidal_table(int64_t max_len, int64_t dim, DType dtype) {
  DTRAIN_CHECK(max_len > 0 && dim > 0, "sinusoidal_table(", max_len, ", ", dim,
               "): both sizes must be positive");
  std::vector<double> values(static_cast<size_t>(max_len * dim));
  for (int64_t p = 0; p < max_len; ++p) {
    for (int64_t j = 0; j < dim; ++j) {
      // Columns 2i and 2i+1 share the frequency 1 / 10000^(2i/dim).
      int64_t even = j - (j % 2);
      double angle =
          static_cast<double>(p) *
          std::exp(-std::log(10000.0) * static_cast<double>(even) / static_cast<double>(dim));
      values[static_cast<size_t>(p * dim + j)] = (j % 2 == 0) ? std::sin(angle) : std::cos(angle);
    }
  }
  return Tensor::from_vector(values, {max_len, dim}, dtype);
}

PositionalEncoding::PositionalEncoding(int64_t max_len, int64_t dim, PositionKind kind,
                                       double dropout)
    : Module("PositionalEncoding"), max_len_(max_len), dim_(dim), kind_(kind), dropout_(dropout) {
  DTRAIN_CHECK(dropout >= 0.0 && dropout < 1.0, "PositionalEncoding: dropout ", dropout,
               " must be in [0, 1)");
  if (kind == PositionKind::sinusoidal) {
    table_ = register_buffer("pe", sinusoidal_table(max_len, dim), /*persistent=*/false);
  } else {
    DTRAIN_CHECK(max_len > 0 && dim > 0, "PositionalEncoding(", max_len, ", ", dim,
                 "): both sizes must be positive");
    table_ = register_parameter("weight", Tensor::empty({max_len, dim}));
    init::trunc_normal_(table_, 0.02);
  }
}

Tensor PositionalEncoding::forward(const Tensor& x) const {
  auto scope = forward_scope();
  DTRAIN_CHECK(x.dim() == 3 && x.size(2) == dim_, "PositionalEncoding(dim ", dim_,
               "): input of shape ", shape_str(x.shape()), " is not [B, T, ", dim_, "]");
  DTRAIN_CHECK(x.size(1) <= max_len_, "PositionalEncoding: sequence of ", x.size(1),
               " tokens is longer than max_len ", max_len_, "; build it with a larger max_len");
  Tensor y = x + table_.narrow(0, 0, x.size(1));
  if (is_training() && dropout_ > 0.0) y = dropout(y, dropout_, true);
  return y;
}

}  // namespace dtrain::nn
