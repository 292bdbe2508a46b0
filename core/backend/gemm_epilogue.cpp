#include "core/backend/gemm_epilogue.h"

namespace dtrain {

void check_gemm_epilogue(const char* backend, const GemmArgs& g, const Tensor& c) {
  const bool grad = g.epilogue == GemmEpilogue::bias_grad;
  const int64_t len = grad ? g.m : g.n;
  DTRAIN_CHECK(g.batch == 1 && g.beta == 0.0, backend,
               " gemm: an epilogue needs batch 1 and beta 0, got ", g.batch, " and ", g.beta,
               "; run the GEMM without one and add the bias separately");
  DTRAIN_CHECK(g.bias.defined() && g.bias.dtype() == c.dtype() && g.bias.device() == c.device() &&
                   g.bias.numel() == len && g.bias.is_contiguous(),
               backend, " gemm: the ", grad ? "bias_grad" : "bias", " epilogue needs a contiguous ",
               dtype_name(c.dtype()), " vector of ", len, " elements on ", c.device().str(),
               " in args.bias; pass one (a .contiguous() copy if strided)");
}

void compose_gemm_epilogue(Backend& be, const GemmArgs& g, const Tensor& a, const Tensor& b,
                           const Tensor& c) {
  GemmArgs plain = g;
  plain.epilogue = GemmEpilogue::none;
  plain.bias = Tensor();
  if (g.epilogue == GemmEpilogue::bias) {
    if (g.m > 0 && g.n > 0) {
      be.copy(make_view(g.bias, {g.m, g.n}, {0, 1}, g.bias.offset()),
              make_view(c, {g.m, g.n}, {g.ldc, 1}, c.offset()));
    }
    plain.beta = 1.0;
    be.gemm(plain, a, b, c);
    return;
  }
  be.gemm(plain, a, b, c);
  if (g.m == 0) return;
  if (g.k == 0) {
    be.fill(g.bias, 0.0);
    return;
  }
  Tensor at = make_view(a, {g.k, g.m}, g.trans_a ? Shape{g.lda, 1} : Shape{1, g.lda}, a.offset());
  if (!at.is_contiguous()) {
    Tensor dense = Tensor::empty({g.k, g.m}, a.dtype(), a.device());
    be.copy(at, dense);
    at = dense;
  }
  be.reduce(ReduceOp::sum, at, 1, g.k, g.m, g.bias, Tensor());
}

}  // namespace dtrain
