"""Reference values for core/nn: attention, encoder and decoder layers against torch.nn.

Run with /usr/bin/python3 (torch 1.13). Writes tests/reference/fixtures/nn_<case>.safetensors, read by
tests/core/nn/test_nn_reference.cpp. Everything is f64, dropout is 0 and the modules are in eval mode.

Each file holds, under dtrain's parameter names (torch's are mapped, see the *_NAMES functions):
    param.<name>          the weights, random (not torch's initialisation, so zero biases hide nothing)
    input.<name>          x [B, T, E], memory [B, S, *], masks (key padding: i64 [B, T], 1 = padding;
                          attn_mask: additive f64 [T, T])
    grad_output           the upstream gradient w; the loss is sum(output * w)
    output                the module's output
    grad.<name>           d loss / d parameter, and grad.input.x, grad.input.memory
and metadata with the module's configuration.

torch.nn.MultiheadAttention keeps q, k and v in one in_proj_weight [3E, E] (rows q, then k, then v,
head by head), which is exactly the layout of timm's fused qkv and so of dtrain's `qkv`; for
cross-attention its first E rows are dtrain's `q` and the other 2E its `kv` (with kdim != E torch keeps
separate q/k/v_proj_weight, and kv is k and v stacked). The timm ViT block (pre-LN, GELU, LayerNorm
eps 1e-6) is torch's TransformerEncoderLayer(norm_first=True, activation="gelu"); the script checks
that with a hand-written timm-style block before saving.
"""
import math
import os

import torch
import torch.nn.functional as F

from common import HERE, save_safetensors

torch.set_default_dtype(torch.float64)
FIXTURES = os.path.join(HERE, "fixtures")

E, HEADS, FF = 8, 2, 16
B, T, S = 2, 5, 4


def randomize(module, gen):
    """Random weights of a moderate size: LayerNorm weights near 1, everything else N(0, 0.3^2)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_(0.3 * noise)


def mha_names(prefix, mha, cross):
    """(dtrain name, torch tensor getter) pairs for a torch MultiheadAttention (getter maps a function
    from torch parameter to tensor, so the same mapping serves weights and gradients)."""
    out = []
    if not cross:
        out.append((prefix + "qkv.weight", lambda f: f(mha.in_proj_weight)))
        out.append((prefix + "qkv.bias", lambda f: f(mha.in_proj_bias)))
    elif mha._qkv_same_embed_dim:
        out.append((prefix + "q.weight", lambda f: f(mha.in_proj_weight)[:E]))
        out.append((prefix + "kv.weight", lambda f: f(mha.in_proj_weight)[E:]))
        out.append((prefix + "q.bias", lambda f: f(mha.in_proj_bias)[:E]))
        out.append((prefix + "kv.bias", lambda f: f(mha.in_proj_bias)[E:]))
    else:
        out.append((prefix + "q.weight", lambda f: f(mha.q_proj_weight)))
        out.append((prefix + "kv.weight",
                    lambda f: torch.cat([f(mha.k_proj_weight), f(mha.v_proj_weight)], 0)))
        out.append((prefix + "q.bias", lambda f: f(mha.in_proj_bias)[:E]))
        out.append((prefix + "kv.bias", lambda f: f(mha.in_proj_bias)[E:]))
    out.append((prefix + "proj.weight", lambda f: f(mha.out_proj.weight)))
    out.append((prefix + "proj.bias", lambda f: f(mha.out_proj.bias)))
    return out


def linear_names(prefix, lin):
    return [(prefix + "weight", lambda f: f(lin.weight)), (prefix + "bias", lambda f: f(lin.bias))]


def encoder_names(layer):
    return (linear_names("norm1.", layer.norm1) + mha_names("attn.", layer.self_attn, False) +
            linear_names("norm2.", layer.norm2) + linear_names("mlp.fc1.", layer.linear1) +
            linear_names("mlp.fc2.", layer.linear2))


def decoder_names(layer):
    return (linear_names("norm1.", layer.norm1) + mha_names("attn.", layer.self_attn, False) +
            linear_names("norm2.", layer.norm2) +
            mha_names("cross_attn.", layer.multihead_attn, True) +
            linear_names("norm3.", layer.norm3) + linear_names("mlp.fc1.", layer.linear1) +
            linear_names("mlp.fc2.", layer.linear2))


def padding_mask(lengths, width):
    """bool [len(lengths), width], True past each length (torch's key_padding_mask convention)."""
    return torch.arange(width)[None, :] >= torch.tensor(lengths)[:, None]


def causal_mask(n):
    return torch.triu(torch.full((n, n), float("-inf")), diagonal=1)


def save_case(case, module, names, run, inputs, masks, gen, metadata):
    """Runs `run(**inputs)`, backpropagates a random upstream gradient and saves the case."""
    module.eval()
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    out = run(**leaves)
    w = torch.randn(out.shape, generator=gen)
    (out * w).sum().backward()
    tensors = {"output": out.detach(), "grad_output": w}
    for name, get in names:
        tensors["param." + name] = get(lambda p: p.detach()).clone()
        tensors["grad." + name] = get(lambda p: p.grad).clone()
    for k, v in leaves.items():
        tensors["input." + k] = v.detach()
        tensors["grad.input." + k] = v.grad
    for k, v in masks.items():
        tensors["input." + k] = v
    # every torch parameter element is mapped to exactly one dtrain name
    mapped = sum(tensors["param." + n].numel() for n, _ in names)
    assert mapped == sum(p.numel() for p in module.parameters()), case
    save_safetensors(os.path.join(FIXTURES, "nn_" + case + ".safetensors"), tensors, metadata)
    print(f"nn_{case}: {len(tensors)} tensors, output {list(out.shape)}")


def timm_block(layer, x, key_padding_mask=None):
    """A timm-style ViT Block written out by hand (fused qkv read as (3, heads, head_dim)), to confirm
    that torch's norm_first encoder layer with in_proj as qkv is the same computation."""
    Bx, N, C = x.shape
    hd = C // HEADS
    mha = layer.self_attn

    def attn(h):
        qkv = F.linear(h, mha.in_proj_weight, mha.in_proj_bias)
        qkv = qkv.reshape(Bx, N, 3, HEADS, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = q @ k.transpose(-2, -1) * hd ** -0.5
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        o = (scores.softmax(-1) @ v).transpose(1, 2).reshape(Bx, N, C)
        return mha.out_proj(o)

    x = x + attn(F.layer_norm(x, (C,), layer.norm1.weight, layer.norm1.bias, 1e-6))
    h = F.layer_norm(x, (C,), layer.norm2.weight, layer.norm2.bias, 1e-6)
    return x + layer.linear2(F.gelu(layer.linear1(h)))


def main():
    gen = torch.Generator().manual_seed(1913)
    x = torch.randn(B, T, E, generator=gen)
    memory = torch.randn(B, S, E, generator=gen)
    pad_t = padding_mask([T, 3], T)  # batch 1: the last two tokens are padding
    pad_s = padding_mask([S - 1, 2], S)

    # ---- self-attention: additive attn_mask plus key padding
    mha = torch.nn.MultiheadAttention(E, HEADS, dropout=0.0, batch_first=True)
    randomize(mha, gen)
    attn_mask = 0.5 * torch.randn(T, T, generator=gen)
    save_case("mha_self_padding", mha, mha_names("", mha, False),
              lambda x: mha(x, x, x, attn_mask=attn_mask, key_padding_mask=pad_t,
                            need_weights=False)[0],
              {"x": x}, {"attn_mask": attn_mask, "key_padding_mask": pad_t.long()}, gen,
              {"dim": E, "heads": HEADS})

    # ---- self-attention: causal
    mha = torch.nn.MultiheadAttention(E, HEADS, dropout=0.0, batch_first=True)
    randomize(mha, gen)
    save_case("mha_self_causal", mha, mha_names("", mha, False),
              lambda x: mha(x, x, x, attn_mask=causal_mask(T), need_weights=False)[0],
              {"x": x}, {}, gen, {"dim": E, "heads": HEADS})

    # ---- cross-attention over a memory of another width, with memory padding
    kv_dim = 6
    memory6 = torch.randn(B, S, kv_dim, generator=gen)
    mha = torch.nn.MultiheadAttention(E, HEADS, dropout=0.0, batch_first=True, kdim=kv_dim,
                                      vdim=kv_dim)
    randomize(mha, gen)
    save_case("mha_cross", mha, mha_names("", mha, True),
              lambda x, memory: mha(x, memory, memory, key_padding_mask=pad_s,
                                    need_weights=False)[0],
              {"x": x, "memory": memory6}, {"key_padding_mask": pad_s.long()}, gen,
              {"dim": E, "heads": HEADS, "kv_dim": kv_dim})

    # ---- encoder, pre-LN (the timm ViT block), key padding
    enc = torch.nn.TransformerEncoderLayer(E, HEADS, FF, dropout=0.0, activation="gelu",
                                           layer_norm_eps=1e-6, batch_first=True, norm_first=True)
    randomize(enc, gen)
    enc.eval()
    with torch.no_grad():
        ref = enc(x, src_key_padding_mask=pad_t)
        hand = timm_block(enc, x, pad_t)
        assert torch.allclose(ref, hand, atol=1e-12), "timm-style block differs from torch's"
    save_case("encoder_pre", enc, encoder_names(enc),
              lambda x: enc(x, src_key_padding_mask=pad_t), {"x": x},
              {"key_padding_mask": pad_t.long()}, gen,
              {"dim": E, "heads": HEADS, "ff": FF, "eps": 1e-6, "pre_norm": 1, "activation": "gelu"})

    # ---- encoder, post-LN with ReLU (the original Transformer), causal
    enc = torch.nn.TransformerEncoderLayer(E, HEADS, FF, dropout=0.0, activation="relu",
                                           layer_norm_eps=1e-5, batch_first=True, norm_first=False)
    randomize(enc, gen)
    save_case("encoder_post", enc, encoder_names(enc),
              lambda x: enc(x, src_mask=causal_mask(T)), {"x": x}, {}, gen,
              {"dim": E, "heads": HEADS, "ff": FF, "eps": 1e-5, "pre_norm": 0, "activation": "relu"})

    # ---- decoder, pre-LN, GELU: causal self-attention, memory padding
    dec = torch.nn.TransformerDecoderLayer(E, HEADS, FF, dropout=0.0, activation="gelu",
                                           layer_norm_eps=1e-5, batch_first=True, norm_first=True)
    randomize(dec, gen)
    save_case("decoder_pre", dec, decoder_names(dec),
              lambda x, memory: dec(x, memory, tgt_mask=causal_mask(T),
                                    memory_key_padding_mask=pad_s),
              {"x": x, "memory": memory}, {"memory_key_padding_mask": pad_s.long()}, gen,
              {"dim": E, "heads": HEADS, "ff": FF, "eps": 1e-5, "pre_norm": 1, "activation": "gelu"})

    # ---- decoder, post-LN, ReLU: causal plus target padding, memory padding
    dec = torch.nn.TransformerDecoderLayer(E, HEADS, FF, dropout=0.0, activation="relu",
                                           layer_norm_eps=1e-5, batch_first=True, norm_first=False)
    randomize(dec, gen)
    save_case("decoder_post", dec, decoder_names(dec),
              lambda x, memory: dec(x, memory, tgt_mask=causal_mask(T), tgt_key_padding_mask=pad_t,
                                    memory_key_padding_mask=pad_s),
              {"x": x, "memory": memory},
              {"key_padding_mask": pad_t.long(), "memory_key_padding_mask": pad_s.long()}, gen,
              {"dim": E, "heads": HEADS, "ff": FF, "eps": 1e-5, "pre_norm": 0, "activation": "relu"})

    # ---- sinusoidal positions, written the usual PyTorch way
    max_len, d = 7, 6
    position = torch.arange(max_len).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
    pe = torch.zeros(max_len, d)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    save_safetensors(os.path.join(FIXTURES, "nn_positional.safetensors"), {"pe": pe})
    print("nn_positional: 1 tensor")


if __name__ == "__main__":
    main()
