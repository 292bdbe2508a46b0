"""Reference values for every differentiable op of core/ops, read by tests/core/ops/test_reference.cpp.

Run with /usr/bin/python3 (torch 1.13). Writes tests/reference/fixtures/ops.safetensors.

Each case `<op>.<variant>` stores, all f32 (indices i64):
    <case>.<input>          the inputs, by the names the C++ test uses (x, a, b, weight, ...)
    <case>.out              the output (<case>.out.<i> for ops with several outputs)
    <case>.grad_out         the fixed upstream gradient (<case>.grad_out.<i>)
    <case>.grad_<input>     d(sum(out * grad_out)) / d(input), for each input that takes a gradient
The inputs are f32 values; the reference is computed from them in f64 and rounded to f32 once, so the
only error the C++ side sees is its own. Op parameters (dims, stride, eps, ...) are spelled out in both
files; keep them in step. Dropout is random and has no case here.

Each unary op of core/backend/unary_ops.def (the C++ table) has one case named as its row
(`gelu_tanh`, input `x`); test_reference.cpp fails with a message for a row that has none.
"""
import math
import os

import torch
import torch.nn.functional as F

from common import HERE, save_safetensors

OUT = os.path.join(HERE, "fixtures", "ops.safetensors")

gen = torch.Generator().manual_seed(20240614)
tensors = {}


def randn(*shape):
    return torch.randn(shape, generator=gen)


def positive(*shape):
    """Values in [0.5, 2): for log, sqrt, division and fractional powers."""
    return torch.rand(shape, generator=gen) * 1.5 + 0.5


def away_from_zero(*shape, gap=0.1):
    """Normal values pushed at least `gap` away from 0, so kinks (relu, abs) are not straddled."""
    x = randn(*shape)
    return x + gap * torch.where(x >= 0, 1.0, -1.0)


def case(name, fn, inputs, no_grad=()):
    """Records inputs, fn(**inputs) and the gradients of sum(out * grad_out) for one case."""
    leaves = {}
    for k, v in inputs.items():
        tensors[f"{name}.{k}"] = v
        if v.is_floating_point():
            leaves[k] = v.double().requires_grad_(k not in no_grad)
        else:
            leaves[k] = v
    result = fn(*leaves.values())
    outs = list(result) if isinstance(result, (list, tuple)) else [result]
    loss = None
    for i, out in enumerate(outs):
        suffix = "" if len(outs) == 1 else f".{i}"
        stored = out.detach()
        tensors[f"{name}.out{suffix}"] = stored.float() if stored.is_floating_point() else stored
        if out.requires_grad:
            g = randn(*out.shape)
            tensors[f"{name}.grad_out{suffix}"] = g
            term = (out * g.double()).sum()
            loss = term if loss is None else loss + term
    if loss is not None:
        loss.backward()
        for k, leaf in leaves.items():
            if leaf.is_floating_point() and leaf.requires_grad:
                assert leaf.grad is not None, f"{name}: {k} got no gradient"
                tensors[f"{name}.grad_{k}"] = leaf.grad.float()


# ---------------------------------------------------------------------------------------- elementwise
case("add.broadcast", lambda a, b: a + b, {"a": randn(2, 1, 4), "b": randn(3, 1)})
case("add.same_shape", lambda a, b: a + b, {"a": randn(2, 3), "b": randn(2, 3)})
case("sub.broadcast", lambda a, b: a - b, {"a": randn(2, 3), "b": randn(3)})
case("mul.broadcast", lambda a, b: a * b, {"a": randn(2, 3, 4), "b": randn(4)})
case("div.broadcast", lambda a, b: a / b, {"a": randn(2, 3), "b": positive(2, 1)})
case("neg", lambda x: -x, {"x": randn(2, 3)})
case("add_scalar", lambda x: x + 1.5, {"x": randn(2, 3)})
case("mul_scalar", lambda x: x * -2.5, {"x": randn(2, 3)})
case("rsub", lambda x: 3.0 - x, {"x": randn(2, 3)})
case("rdiv", lambda x: 2.0 / x, {"x": positive(2, 3)})
case("pow.cube", lambda x: torch.pow(x, 3.0), {"x": randn(2, 3)})
case("pow.fractional", lambda x: torch.pow(x, -1.5), {"x": positive(2, 3)})
case("exp", torch.exp, {"x": randn(2, 3)})
case("log", torch.log, {"x": positive(2, 3)})
case("sqrt", torch.sqrt, {"x": positive(2, 3)})
case("rsqrt", torch.rsqrt, {"x": positive(2, 3)})
case("abs", torch.abs, {"x": away_from_zero(2, 3)})
case("square", torch.square, {"x": randn(2, 3)})
_a = randn(2, 3)
case("maximum", torch.maximum, {"a": _a, "b": _a + away_from_zero(3)})
case("minimum", torch.minimum, {"a": _a, "b": _a + away_from_zero(3)})
# values at least 0.05 from the bounds -0.5 and 0.5
case("clamp", lambda x: torch.clamp(x, -0.5, 0.5),
     {"x": torch.tensor([[-1.2, -0.45, 0.0, 0.3], [0.56, 0.9, -0.6, 0.44]])})
_ints = torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]])
case("eq", torch.eq, {"a": _ints, "b": torch.tensor([1.0, 1.0, 0.0])})
case("gt", torch.gt, {"a": _ints, "b": torch.tensor([1.0, 1.0, 0.0])})
case("lt", torch.lt, {"a": _ints, "b": torch.tensor([1.0, 1.0, 0.0])})
# The comparisons give a's dtype in dtrain; store 0/1 as f32.
for _op in ("eq", "gt", "lt"):
    tensors[f"{_op}.out"] = tensors[f"{_op}.out"].float()

# In-place updates (not recorded): dst after the update.
_dst, _b, _c = randn(2, 3), randn(3), positive(2, 3)
tensors.update({"add_.dst": _dst, "add_.b": _b, "add_.out": _dst + 0.5 * _b})
tensors.update({"addcmul_.dst": _dst, "addcmul_.a": _b, "addcmul_.b": _c,
                "addcmul_.out": torch.addcmul(_dst.double(), _b.double(), _c.double(), value=-0.3).float()})
tensors.update({"addcdiv_.dst": _dst, "addcdiv_.a": _b, "addcdiv_.b": _c,
                "addcdiv_.out": torch.addcdiv(_dst.double(), _b.double(), _c.double(), value=0.7).float()})

# ---------------------------------------------------------------------------------------- reductions
case("sum.all", torch.sum, {"x": randn(2, 3, 4)})
case("sum.dims", lambda x: torch.sum(x, dim=(0, 2)), {"x": randn(2, 3, 4)})
case("sum.keepdim", lambda x: torch.sum(x, dim=-1, keepdim=True), {"x": randn(2, 3, 4)})
case("mean.all", torch.mean, {"x": randn(2, 3, 4)})
case("mean.dims", lambda x: torch.mean(x, dim=(1, 2), keepdim=True), {"x": randn(2, 3, 4)})
case("max.dim", lambda x: torch.max(x, dim=1).values, {"x": randn(2, 5, 3)})
case("max.keepdim", lambda x: torch.max(x, dim=-1, keepdim=True).values, {"x": randn(2, 5, 3)})
case("max.all", torch.max, {"x": randn(3, 4)})
case("argmax", lambda x: torch.argmax(x, dim=1), {"x": randn(2, 5, 3)})

# ---------------------------------------------------------------------------------------- shape
case("cat", lambda a, b, c: torch.cat([a, b, c], dim=1), {"a": randn(2, 1, 3), "b": randn(2, 2, 3),
                                                           "c": randn(2, 3, 3)})
case("stack", lambda a, b, c: torch.stack([a, b, c], dim=1), {"a": randn(2, 3), "b": randn(2, 3),
                                                               "c": randn(2, 3)})
case("split", lambda x: torch.split(x, 2, dim=1), {"x": randn(2, 5, 3)})
case("chunk", lambda x: torch.chunk(x, 2, dim=0), {"x": randn(4, 3)})

# ---------------------------------------------------------------------------------------- activations
case("relu", F.relu, {"x": away_from_zero(2, 5)})
case("gelu_erf", F.gelu, {"x": randn(2, 5) * 2})
case("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), {"x": randn(2, 5) * 2})
case("tanh", torch.tanh, {"x": randn(2, 5)})
case("sigmoid", torch.sigmoid, {"x": randn(2, 5) * 2})
case("softmax.last", lambda x: torch.softmax(x, dim=-1), {"x": randn(2, 3, 4) * 2})
case("softmax.middle", lambda x: torch.softmax(x, dim=1), {"x": randn(2, 3, 4) * 2})
case("log_softmax.last", lambda x: torch.log_softmax(x, dim=-1), {"x": randn(2, 3, 4) * 2})
case("log_softmax.first", lambda x: torch.log_softmax(x, dim=0), {"x": randn(3, 4) * 2})

# ---------------------------------------------------------------------------------------- layer norm
case("layer_norm.affine", lambda x, weight, bias: F.layer_norm(x, (5,), weight, bias, eps=1e-5),
     {"x": randn(2, 3, 5), "weight": 1 + 0.5 * randn(5), "bias": randn(5)})
case("layer_norm.plain", lambda x: F.layer_norm(x, (6,), eps=1e-6), {"x": randn(4, 6) * 3 + 1})

# ---------------------------------------------------------------------------------------- embedding
case("embedding.basic", lambda weight, indices: F.embedding(indices, weight),
     {"weight": randn(6, 3), "indices": torch.tensor([[1, 5, 1, 0], [3, 3, 3, 2]])})
case("embedding.padding_idx", lambda weight, indices: F.embedding(indices, weight, padding_idx=2),
     {"weight": randn(6, 3), "indices": torch.tensor([[1, 2, 4], [2, 0, 1]])})

# ---------------------------------------------------------------------------------------- cross entropy
_targets = torch.tensor([0, 3, 1, 3, 2])
case("cross_entropy.mean", lambda logits, targets: F.cross_entropy(logits, targets),
     {"logits": randn(5, 4) * 2, "targets": _targets})
case("cross_entropy.sum", lambda logits, targets: F.cross_entropy(logits, targets, reduction="sum"),
     {"logits": randn(5, 4) * 2, "targets": _targets})
case("cross_entropy.none", lambda logits, targets: F.cross_entropy(logits, targets, reduction="none"),
     {"logits": randn(5, 4) * 2, "targets": _targets})
case("cross_entropy.ignore_index", lambda logits, targets: F.cross_entropy(logits, targets),
     {"logits": randn(5, 4) * 2, "targets": torch.tensor([0, -100, 1, -100, 2])})
case("cross_entropy.label_smoothing",
     lambda logits, targets: F.cross_entropy(logits, targets, label_smoothing=0.1),
     {"logits": randn(5, 4) * 2, "targets": _targets})
case("cross_entropy.smoothing_ignore_sum",
     lambda logits, targets: F.cross_entropy(logits, targets, ignore_index=1, label_smoothing=0.2,
                                             reduction="sum"),
     {"logits": randn(5, 4) * 2, "targets": torch.tensor([1, 3, 1, 0, 2])})
# dtrain takes [..., C] logits (class last); torch wants [N, C], so flatten for it.
case("cross_entropy.batched",
     lambda logits, targets: F.cross_entropy(logits.reshape(-1, 4), targets.reshape(-1)),
     {"logits": randn(2, 3, 4) * 2, "targets": torch.tensor([[0, 1, 2], [3, 0, -100]])})


# ---------------------------------------------------------------------------------------- attention
def sdpa(q, k, v, attn_mask=None, causal=False, scale=None):
    """softmax(q k^T * scale + mask) v, written out (F.scaled_dot_product_attention is newer than 1.13)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale
    if attn_mask is not None:
        scores = scores + attn_mask
    if causal:
        tq, tk = scores.shape[-2], scores.shape[-1]
        future = torch.ones(tq, tk, dtype=torch.bool).triu(diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def key_padding_mask(padding):
    """[B, Tk] with 1 at padded keys -> additive [B, 1, 1, Tk] (0 or -inf)."""
    zeros = torch.zeros(padding.shape, dtype=torch.float64)
    return zeros.masked_fill(padding.bool(), float("-inf"))[:, None, None, :]


case("sdpa.plain", sdpa, {"q": randn(2, 2, 3, 4), "k": randn(2, 2, 5, 4), "v": randn(2, 2, 5, 4)})
case("sdpa.causal", lambda q, k, v: sdpa(q, k, v, causal=True),
     {"q": randn(1, 2, 4, 4), "k": randn(1, 2, 4, 4), "v": randn(1, 2, 4, 4)})
_padding = torch.tensor([[0.0, 0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
case("sdpa.padding", lambda q, k, v, key_padding: sdpa(q, k, v, attn_mask=key_padding_mask(key_padding)),
     {"q": randn(2, 2, 3, 4), "k": randn(2, 2, 5, 4), "v": randn(2, 2, 5, 4), "key_padding": _padding},
     no_grad=("key_padding",))
tensors["sdpa.padding.attn_mask"] = key_padding_mask(_padding).float()
_padding = torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0]])
case("sdpa.causal_padding_scale",
     lambda q, k, v, key_padding: sdpa(q, k, v, attn_mask=key_padding_mask(key_padding), causal=True,
                                       scale=0.3),
     {"q": randn(1, 2, 5, 3), "k": randn(1, 2, 5, 3), "v": randn(1, 2, 5, 3), "key_padding": _padding},
     no_grad=("key_padding",))

# ---------------------------------------------------------------------------------------- conv, pool
case("conv2d.plain", lambda x, weight, bias: F.conv2d(x, weight, bias),
     {"x": randn(2, 3, 5, 5), "weight": randn(4, 3, 3, 3) * 0.3, "bias": randn(4)})
case("conv2d.stride_padding", lambda x, weight: F.conv2d(x, weight, stride=2, padding=1),
     {"x": randn(2, 2, 5, 6), "weight": randn(3, 2, 3, 2) * 0.3})
case("conv2d.groups", lambda x, weight, bias: F.conv2d(x, weight, bias, padding=1, groups=2),
     {"x": randn(1, 4, 4, 5), "weight": randn(6, 2, 3, 3) * 0.3, "bias": randn(6)})
case("max_pool2d.plain", lambda x: F.max_pool2d(x, 2), {"x": randn(2, 2, 4, 4)})
case("max_pool2d.stride_padding", lambda x: F.max_pool2d(x, 3, stride=2, padding=1),
     {"x": randn(1, 2, 5, 5)})
case("avg_pool2d.plain", lambda x: F.avg_pool2d(x, 2), {"x": randn(2, 2, 4, 4)})
case("avg_pool2d.stride_padding", lambda x: F.avg_pool2d(x, 3, stride=2, padding=1),
     {"x": randn(1, 2, 5, 5)})

# ---------------------------------------------------------------------------------------- matmul, linear
case("matmul.2d", torch.matmul, {"a": randn(3, 4), "b": randn(4, 5)})
case("matmul.batched", torch.matmul, {"a": randn(2, 3, 4), "b": randn(2, 4, 5)})
case("matmul.broadcast", torch.matmul, {"a": randn(2, 1, 3, 4), "b": randn(3, 4, 2)})
case("matmul.vec_mat", torch.matmul, {"a": randn(4), "b": randn(4, 3)})
case("matmul.mat_vec", torch.matmul, {"a": randn(3, 4), "b": randn(4)})
case("linear.bias", F.linear, {"x": randn(2, 3, 4), "weight": randn(5, 4), "bias": randn(5)})
case("linear.no_bias", F.linear, {"x": randn(3, 4), "weight": randn(2, 4)})

# ------------------------------------------------------------------------------------- added later
# Cases added after the file was first made are drawn last, so the cases above keep their values.
case("silu", F.silu, {"x": randn(2, 5) * 2})
# add_layer_norm: h = x + residual and layer_norm(h), with upstream gradients on both outputs.
case("add_layer_norm",
     lambda x, residual, weight, bias: (lambda h: (h, F.layer_norm(h, (7,), weight, bias, eps=1e-5)))(
         x + residual),
     {"x": randn(2, 3, 7), "residual": randn(2, 3, 7) * 2 + 1, "weight": 1 + 0.5 * randn(7),
      "bias": randn(7)})


if __name__ == "__main__":
    for name, t in tensors.items():
        assert t.dtype in (torch.float32, torch.int64), f"{name}: {t.dtype}"
        assert torch.isfinite(t).all() or name == "sdpa.padding.attn_mask", f"{name} is not finite"
    save_safetensors(OUT, tensors)
    print(f"wrote {OUT}: {len(tensors)} tensors, {os.path.getsize(OUT)} bytes")
