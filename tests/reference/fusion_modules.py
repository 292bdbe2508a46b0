"""Reference values for core/nn's fusion modules against PyTorch twins: CrossModalAttention
(torch.nn.MultiheadAttention with kdim/vdim), GatedFusion and
DepthwiseSeparableConv2d.

Run with /usr/bin/python3 (torch 1.13). Writes tests/reference/fusion_modules.json, read by
tests/core/nn/test_fusion_modules.cpp. Every weight and input is random, rounded to f32 (so the
f32 and f64 C++ runs start from exactly these values), and the reference is computed in f64 from
them, with dropout 0 in eval mode.

Per case:
    config        the module's constructor arguments (the C++ test spells out the same)
    params        {dtrain name: tensor}; the torch twin's state_dict under the same names
    inputs        {name: tensor}; key padding masks are i64 [B, Tb], 1 = padding
    grad_output   the upstream gradient w; the loss is sum(output * w)
    output        the module's output
    grads         {param name: d loss / d param}
    input_grads   {input name: d loss / d input} for the floating inputs
A tensor is {"dtype": "f64" | "i64", "shape": [...], "data": [row-major values]}; Python's json
writes doubles with round-trip precision.
"""
import json
import os

import torch
import torch.nn as nn

torch.set_default_dtype(torch.float64)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fusion_modules.json")


def f32_exact(t):
    return t.float().double()


def randn(gen, *shape, scale=1.0):
    return f32_exact(scale * torch.randn(shape, generator=gen))


def encode(t):
    t = t.detach().contiguous().cpu()
    if t.dtype in (torch.int64, torch.bool, torch.int32):
        data = [int(v) for v in t.reshape(-1).tolist()]
        return {"dtype": "i64", "shape": list(t.shape), "data": data}
    data = [float(v) for v in t.reshape(-1).tolist()]
    return {"dtype": "f64", "shape": list(t.shape), "data": data}


def randomize(module, gen, scale):
    with torch.no_grad():
        for _, p in module.named_parameters():
            p.copy_(randn(gen, *p.shape, scale=scale))


def run_case(module, inputs, forward, config, gen):
    """inputs: {name: tensor}; floating ones get gradients. forward(module, inputs) -> output."""
    module.eval()
    leaves = {}
    for name, t in inputs.items():
        if t.is_floating_point():
            t = t.clone().requires_grad_(True)
        leaves[name] = t
    out = forward(module, leaves)
    grad_output = randn(gen, *out.shape)
    (out * grad_output).sum().backward()
    return {
        "config": config,
        "params": {n: encode(p) for n, p in module.state_dict().items()},
        "inputs": {n: encode(t) for n, t in leaves.items()},
        "grad_output": encode(grad_output),
        "output": encode(out),
        "grads": {n: encode(p.grad) for n, p in module.named_parameters()},
        "input_grads": {n: encode(t.grad) for n, t in leaves.items() if t.is_floating_point()},
    }


class GatedFusion(nn.Module):
    """g = sigmoid(W [x_a; x_b] + b); out = g * x_a + (1 - g) * x_b."""

    def __init__(self, dim, bias=True):
        super().__init__()
        self.gate = nn.Linear(2 * dim, dim, bias=bias)

    def forward(self, x_a, x_b):
        g = torch.sigmoid(self.gate(torch.cat([x_a, x_b], dim=-1)))
        return g * x_a + (1 - g) * x_b


class DepthwiseSeparableConv2d(nn.Module):
    def __init__(self, cin, cout, k, stride, padding, depthwise_bias, pointwise_bias):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, k, stride=stride, padding=padding, groups=cin,
                                   bias=depthwise_bias)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=pointwise_bias)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


def cross_attention_case(gen, embed_dim, heads, kdim, vdim, bias, batch, tq, tk, padding):
    mha = nn.MultiheadAttention(embed_dim, heads, bias=bias, kdim=kdim, vdim=vdim, batch_first=True)
    assert not mha._qkv_same_embed_dim  # the q/k/v_proj_weight names
    randomize(mha, gen, 0.5)
    inputs = {"query": randn(gen, batch, tq, embed_dim), "key": randn(gen, batch, tk, kdim)}
    same = kdim == vdim
    if not same:
        inputs["value"] = randn(gen, batch, tk, vdim)
    if padding is not None:
        inputs["key_padding_mask"] = torch.tensor(padding, dtype=torch.int64)

    def forward(m, x):
        mask = x["key_padding_mask"].bool() if "key_padding_mask" in x else None
        value = x["key"] if same else x["value"]
        out, _ = m(x["query"], x["key"], value, key_padding_mask=mask, need_weights=False)
        return out

    config = {"embed_dim": embed_dim, "num_heads": heads, "kdim": kdim, "vdim": vdim, "bias": bias}
    return run_case(mha, inputs, forward, config, gen)


def main():
    gen = torch.Generator().manual_seed(20261130)
    cases = {}
    # keys and values from one context, the second batch item's last two positions padded
    cases["cross_attention_padding"] = cross_attention_case(
        gen, 8, 2, 6, 6, True, batch=2, tq=3, tk=4, padding=[[0, 0, 0, 1], [0, 0, 1, 1]])
    # separate key and value inputs of different widths, no bias, no mask
    cases["cross_attention_kv"] = cross_attention_case(
        gen, 6, 3, 5, 7, False, batch=2, tq=2, tk=3, padding=None)

    fusion = GatedFusion(6)
    randomize(fusion, gen, 0.5)
    cases["gated_fusion"] = run_case(
        fusion, {"x_a": randn(gen, 2, 3, 6), "x_b": randn(gen, 2, 3, 6)},
        lambda m, x: m(x["x_a"], x["x_b"]), {"dim": 6}, gen)

    for name, (cin, cout, k, stride, padding, dbias, pbias, hw) in {
        "depthwise_separable_bias": (3, 4, 3, 2, 1, True, True, 5),
        "depthwise_separable_nobias": (2, 3, 2, 1, 0, False, False, 4),
    }.items():
        conv = DepthwiseSeparableConv2d(cin, cout, k, stride, padding, dbias, pbias)
        randomize(conv, gen, 0.5)
        config = {"in_channels": cin, "out_channels": cout, "kernel_size": k, "stride": stride,
                  "padding": padding, "depthwise_bias": dbias, "pointwise_bias": pbias}
        cases[name] = run_case(conv, {"x": randn(gen, 2, cin, hw, hw)}, lambda m, x: m(x["x"]),
                               config, gen)

    doc = {"generator": "tests/reference/fusion_modules.py", "torch": torch.__version__,
           "cases": cases}
    tmp = OUT + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    os.replace(tmp, OUT)


if __name__ == "__main__":
    main()
