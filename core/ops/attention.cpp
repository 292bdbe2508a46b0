// Scaled dot-product attention:
//   out = dropout(softmax(q k^T * scale + mask)) v,   scale = 1/sqrt(D) unless given.
// A backend with a fused kernel (flash style) serves it whole when it accepts the shapes, dropout
// included: one 64-bit seed drawn from the Generator per call keys the mask of every score
// (b, h, i, j) (core/backend/sdpa_dropout.h), and the backward pass regenerates it from the same
// seed. Otherwise attention is composed from matmul, add, softmax and dropout, and autograd
// differentiates the composition.
#include "core/amp/autocast.h"
#include "core/ops/attention.h"

#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/backend/backend.h"
#include "core/ops/activation.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"

namespace dtrain {

namespace {

// Additive causal mask [Tq, Tk]: query i may attend to keys j <= i (the top-left aligned triangle,
// as torch's is_causal); -inf above the diagonal, 0 elsewhere. Made once per shape, dtype and device
// and kept (a model sees a handful of lengths), so a step does not build and upload it per layer.
// Nothing writes to it: every use adds it to the scores out of place.
Tensor causal_mask(int64_t tq, int64_t tk, DType dtype, Device device) {
  using Key = std::tuple<int64_t, int64_t, DType, int, int>;
  static std::mutex mutex;
  static auto* cache =
      new std::map<Key, Tensor>();  // leaked: device memory outlives static destructors
  const Key key{tq, tk, dtype, static_cast<int>(device.kind), device.index};
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = cache->find(key); it != cache->end()) return it->second;
  std::vector<double> m(static_cast<size_t>(tq * tk), 0.0);
  for (int64_t i = 0; i < tq; ++i) {
    for (int64_t j = i + 1; j < tk; ++j) {
      m[static_cast<size_t>(i * tk + j)] = -std::numeric_limits<double>::infinity();
    }
  }
  return cache->emplace(key, Tensor::from_vector(m, {tq, tk}, dtype, device)).first->second;
}

// The mask as the fused kernels take it: contiguous [B or 1, 1, Tq or 1, Tk], f64 for f64 inputs and
// f32 otherwise. Undefined when the mask has another layout (the composed path handles any
// broadcastable mask).
Tensor fused_mask(const Tensor& mask, DType dtype, int64_t batch, int64_t tq, int64_t tk) {
  Shape s = mask.shape();
  while (s.size() < 4) s.insert(s.begin(), 1);
  const bool fits = s.size() == 4 && (s[0] == 1 || s[0] == batch) && s[1] == 1 &&
                    (s[2] == 1 || s[2] == tq) && s[3] == tk;
  if (!fits) return Tensor();
  Tensor m = mask.detach().reshape(s);
  if (m.dtype() != dtype) m = m.to(dtype);
  return m.contiguous();
}

// The dtype of the fused kernels' mask and statistics: f64 for f64 inputs, else f32.
DType fused_dtype(DType input) { return input == DType::f64 ? DType::f64 : DType::f32; }

// A view with a unit-stride last dim, which is all the fused kernels ask of a layout.
Tensor unit_last(const Tensor& t) { return t.strides().back() == 1 ? t : t.contiguous(); }

// Tries the backend's fused kernel; returns an undefined tensor when it declines. q, k and v go as
// they are (heads sliced from a fused projection are strided views), and the output is laid out as
// [B, Tq, H, D] and handed back as its [B, H, Tq, D] view, so merging the heads afterwards is free.
Tensor try_fused(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& mask_in,
                 bool causal, double scale, double dropout_p, uint64_t seed) {
  const Tensor q = unit_last(q_in.detach()), k = unit_last(k_in.detach()),
               v = unit_last(v_in.detach());
  Tensor mask;
  if (mask_in.defined()) {
    mask = fused_mask(mask_in, fused_dtype(q.dtype()), q.size(0), q.size(2), k.size(2));
    if (!mask.defined()) return Tensor();
  }
  Backend& be = backend_for(q.device());
  Tensor out = Tensor::empty({q.size(0), q.size(2), q.size(1), q.size(3)}, q.dtype(), q.device())
                   .permute({0, 2, 1, 3});
  // stats: the per-row log-sum-exp of the scores, which the fused backward needs.
  Tensor stats =
      Tensor::empty({q.size(0), q.size(1), q.size(2)}, fused_dtype(q.dtype()), q.device());
  if (!be.sdpa(q, k, v, mask, causal, scale, dropout_p, seed, out, stats)) return Tensor();

  return autograd::record(
      "scaled_dot_product_attention", {q_in, k_in, v_in}, out,
      [qd = q, kd = k, vd = v, od = out.detach(), stats, mask, causal, scale, dropout_p, seed](
          const Tensor& grad_out, const std::vector<bool>& needs) {
        (void)needs;  // the fused backward produces all three gradients at once
        Tensor dq = Tensor::empty(qd.shape(), qd.dtype(), qd.device());
        Tensor dk = Tensor::empty(kd.shape(), kd.dtype(), kd.device());
        Tensor dv = Tensor::empty(vd.shape(), vd.dtype(), vd.device());
        const bool done = backend_for(qd.device())
                              .sdpa_backward(unit_last(grad_out), qd, kd, vd, od, stats, mask,
                                             causal, scale, dropout_p, seed, dq, dk, dv);
        DTRAIN_CHECK(done, "scaled_dot_product_attention: the ", backend_for(qd.device()).name(),
                     " backend ran the fused forward for q ", shape_str(qd.shape()),
                     " but declined its backward; a backend must accept both or neither");
        return std::vector<Tensor>{dq, dk, dv};
      });
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& attn_mask, bool causal, double dropout_p,
                                    bool training, double scale, Generator* gen) {
  if (amp::autocast_enabled() && q.defined() && k.defined() && v.defined()) {
    Tensor q16 = amp::autocast(amp::OpClass::attention, q),
           k16 = amp::autocast(amp::OpClass::attention, k);
    Tensor v16 = amp::autocast(amp::OpClass::attention, v);
    // The additive mask follows q's dtype so the scores and the mask add without promotion.
    Tensor m16 =
        attn_mask.defined() && is_floating(attn_mask.dtype()) && attn_mask.dtype() != q16.dtype()
            ? attn_mask.to(q16.dtype())
            : attn_mask;
    if (!q16.same(q) || !k16.same(k) || !v16.same(v) ||
        (attn_mask.defined() && !m16.same(attn_mask))) {
      return scaled_dot_product_attention(q16, k16, v16, m16, causal, dropout_p, training, scale,
                                          gen);
    }
  }
  const char* op = "scaled_dot_product_attention";
  DTRAIN_CHECK(q.defined() && k.defined() && v.defined(), op, ": q, k or v is undefined");
  DTRAIN_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op, ": q ", shape_str(q.shape()),
               ", k ", shape_str(k.shape()), " and v ", shape_str(v.shape()),
               " must all be [B, H, T, D]");
  DTRAIN_CHECK(is_floating(q.dtype()), op, ": q is ", dtype_name(q.dtype()),
               "; it needs a floating dtype");
  DTRAIN_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(), op, ": q, k and v are ",
               dtype_name(q.dtype()), ", ", dtype_name(k.dtype()), " and ", dtype_name(v.dtype()),
               "; cast them to one dtype");
  DTRAIN_CHECK(q.device() == k.device() && q.device() == v.device(), op, ": q, k and v are on ",
               q.device().str(), ", ", k.device().str(), " and ", v.device().str(),
               "; move them to one device");
  DTRAIN_CHECK(k.size(0) == q.size(0) && k.size(1) == q.size(1) && k.size(3) == q.size(3), op,
               ": k ", shape_str(k.shape()), " does not match q ", shape_str(q.shape()),
               "; k needs q's batch, heads and head dim");
  DTRAIN_CHECK(v.size(0) == k.size(0) && v.size(1) == k.size(1) && v.size(2) == k.size(2), op,
               ": v ", shape_str(v.shape()), " does not match k ", shape_str(k.shape()),
               "; v needs k's batch, heads and length");
  DTRAIN_CHECK(dropout_p >= 0.0 && dropout_p <= 1.0, op, ": dropout_p is ", dropout_p,
               "; it must be in [0, 1]");
  const int64_t batch = q.size(0), heads = q.size(1), tq = q.size(2), tk = k.size(2);
  if (attn_mask.defined()) {
    DTRAIN_CHECK(is_floating(attn_mask.dtype()), op, ": attn_mask is ",
                 dtype_name(attn_mask.dtype()),
                 "; it must be an additive floating mask (see key_padding_to_attn_mask)");
    DTRAIN_CHECK(attn_mask.device() == q.device(), op, ": attn_mask is on ",
                 attn_mask.device().str(), " but q is on ", q.device().str());
    const Shape scores_shape{batch, heads, tq, tk};
    bool fits = attn_mask.dim() <= 4;
    for (int64_t i = 1; fits && i <= attn_mask.dim(); ++i) {
      const int64_t m = attn_mask.size(-i);
      fits = m == 1 || m == scores_shape[static_cast<size_t>(4 - i)];
    }
    DTRAIN_CHECK(fits, op, ": attn_mask ", shape_str(attn_mask.shape()),
                 " does not broadcast to the scores ", shape_str(scores_shape),
                 " ([B, H, Tq, Tk]); give a mask with those sizes or 1s");
  }
  if (scale <= 0.0) scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  const bool use_dropout = training && dropout_p > 0.0;

  // The fused path gives no gradient to the mask. With dropout it draws one seed for its mask; when
  // the backend declines, the generator is put back, so the composed dropout draws what it would
  // have drawn without the attempt.
  const bool mask_needs_grad =
      attn_mask.defined() && attn_mask.requires_grad() && autograd::grad_enabled();
  if (!mask_needs_grad && v.size(3) == q.size(3)) {
    if (!use_dropout) {
      Tensor fused = try_fused(q, k, v, attn_mask, causal, scale, 0.0, 0);
      if (fused.defined()) return fused;
    } else {
      Generator& g = gen ? *gen : default_generator();
      const auto state = g.state();
      Tensor fused = try_fused(q, k, v, attn_mask, causal, scale, dropout_p, g.next_u64());
      if (fused.defined()) return fused;
      g.set_state(state);
    }
  }

  Tensor scores = mul(matmul(q, k.transpose(-2, -1)), scale);  // [B, H, Tq, Tk]
  if (causal) scores = add(scores, causal_mask(tq, tk, scores.dtype(), scores.device()));
  if (attn_mask.defined()) {
    scores =
        add(scores, attn_mask.dtype() == scores.dtype() ? attn_mask : attn_mask.to(scores.dtype()));
  }
  Tensor weights = softmax(scores, -1);
  if (use_dropout) weights = dropout(weights, dropout_p, true, gen);
  return matmul(weights, v);
}

Tensor key_padding_to_attn_mask(const Tensor& key_padding_mask, DType dtype) {
  DTRAIN_CHECK(key_padding_mask.defined() && key_padding_mask.dim() == 2,
               "key_padding_to_attn_mask: the key padding mask has shape ",
               key_padding_mask.defined() ? shape_str(key_padding_mask.shape()) : "undefined",
               "; it must be [B, Tk] (nonzero = padding)");
  DTRAIN_CHECK(is_floating(dtype), "key_padding_to_attn_mask: dtype ", dtype_name(dtype),
               " is not floating; an additive mask needs -inf");
  const int64_t batch = key_padding_mask.size(0), tk = key_padding_mask.size(1);
  // log(1) = 0 where the key is kept and log(0) = -inf where it is padding: formed on the mask's
  // device, with no read back.
  NoGradGuard no_grad;
  const Tensor mask = key_padding_mask.to(dtype);
  const Tensor kept = eq(mask, Tensor::zeros({}, dtype, mask.device()));
  return log(kept).reshape({batch, 1, 1, tk});
}

}  // namespace dtrain
