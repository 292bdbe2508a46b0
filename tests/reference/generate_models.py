"""Reference values for models/: ViT, Transformer and GPT, loss and every parameter gradient.

Run with /usr/bin/python3 (torch 1.13). Writes tests/reference/fixtures/model_{vit,transformer,gpt,vit_dwsep}.safetensors,
read by tests/models/test_models.cpp. Each model is a small configuration built here in PyTorch with random
weights (not any library's initialisation, so zero biases and unit norms hide nothing), and the loss is the
mean cross entropy of one batch; dropout is 0 and the modules are in training mode (torch's Transformer would
take its inference fast path otherwise).

Each file holds:
    param.<name>    the weights, stored as f32; the reference is computed in f64 from exactly these values
    input.<name>    the batch (images f32; token ids i64)
    loss            the loss, f64 scalar
    grad.<name>     d loss / d parameter, f64, under dtrain's parameter names
and metadata with the configuration.

ViT and GPT are written out by hand with the module names of dtrain's models, which for the ViT are timm's
VisionTransformer names (timm's Block: pre-LN, LayerNorm eps 1e-6, the fused qkv output read as
(3, heads, head_dim), exact erf GELU). The Transformer *is* torch.nn.Transformer (post-LN, ReLU), wrapped
with token embeddings scaled by sqrt(dim), sinusoidal positions and a linear generator; its weights are
stored under torch.nn.Transformer's state_dict names (dtrain loads them with from_torch_state) and the
metadata key `torch_state_keys` lists the state_dict keys of that torch.nn.Transformer, so the test can
check that dtrain's to_torch_state() names are torch's.
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import HERE, save_safetensors

torch.set_default_dtype(torch.float64)
FIXTURES = os.path.join(HERE, "fixtures")


def randomize(module, gen, scale=0.3):
    """Random weights rounded to f32: LayerNorm weights near 1, everything else N(0, scale^2)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "norm" in name and name.endswith("weight"):
                value = 1.0 + 0.2 * noise
            else:
                value = scale * noise
            p.copy_(value.float().double())


def save(name, params, inputs, loss, grads, metadata):
    tensors = {"loss": loss.detach()}
    for k, v in params.items():
        tensors["param." + k] = v.detach().float()
    for k, v in inputs.items():
        tensors["input." + k] = v
    for k, v in grads.items():
        tensors["grad." + k] = v.detach()
    path = os.path.join(FIXTURES, "model_" + name + ".safetensors")
    save_safetensors(path, tensors, metadata)
    print(f"{path}: loss {loss.item():.6f}, {len(params)} weights, {len(grads)} gradients, "
          f"{os.path.getsize(path)} bytes")


# ---------------------------------------------------------------------------------------------------
# Pre-LN blocks shared by the ViT (timm's Block) and GPT (the same block, causal).

class Attention(nn.Module):
    def __init__(self, dim, heads, causal=False):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        hd = c // self.heads
        # the fused projection read as (3, heads, head_dim): rows q, then k, then v, head by head
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        if self.causal:
            future = torch.ones(n, n, dtype=torch.bool).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        out = scores.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))  # erf GELU


class Block(nn.Module):
    def __init__(self, dim, heads, mlp, eps, causal=False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, causal)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


# ---------------------------------------------------------------------------------------------------
# ViT: image 8x8, 1 channel, patch 4, dim 16, depth 2, heads 2, MLP 32, 3 classes.

class PatchEmbed(nn.Module):
    def __init__(self, channels, dim, patch):
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, N, D], patches row by row


class DepthwiseSeparable(nn.Module):
    """A 3x3 depthwise convolution (groups = channels, padding 1), then a 1x1 pointwise one."""
    def __init__(self, channels, out_channels):
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.pointwise = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class DwsepStem(nn.Module):
    def __init__(self, channels, out_channels):
        super().__init__()
        self.conv1 = DepthwiseSeparable(channels, out_channels)
        self.conv2 = DepthwiseSeparable(out_channels, out_channels)

    def forward(self, x):
        return F.gelu(self.conv2(F.gelu(self.conv1(x))))


class VisionTransformer(nn.Module):
    def __init__(self, image, channels, patch, dim, depth, heads, mlp, classes, stem_channels=0):
        super().__init__()
        n = (image // patch) ** 2
        if stem_channels:
            self.stem = DwsepStem(channels, stem_channels)
            channels = stem_channels
        self.patch_embed = PatchEmbed(channels, dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp, 1e-6) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, images):
        x = self.patch_embed(self.stem(images) if hasattr(self, "stem") else images)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def vit_fixture(gen, name="vit", **extra):
    cfg = dict(image=8, channels=1, patch=4, dim=16, depth=2, heads=2, mlp=32, classes=3)
    cfg.update(extra)
    model = VisionTransformer(**cfg)
    randomize(model, gen)
    images = torch.randn(4, cfg["channels"], 8, 8, generator=gen).float()
    labels = torch.tensor([0, 2, 1, 2])
    loss = F.cross_entropy(model(images.double()), labels)
    loss.backward()
    params = dict(model.named_parameters())
    grads = {k: p.grad for k, p in params.items()}
    save(name, params, {"images": images, "labels": labels}, loss, grads, cfg)


# ---------------------------------------------------------------------------------------------------
# Transformer: torch.nn.Transformer, vocab 11 (pad 0, bos 1, eos 2), dim 16, 2 + 2 layers, heads 2, MLP 32.

def sinusoidal(max_len, dim):
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    pe = torch.zeros(max_len, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


class Seq2Seq(nn.Module):
    def __init__(self, vocab, dim, layers, heads, mlp, max_len, pad):
        super().__init__()
        self.dim, self.pad = dim, pad
        self.src_embed = nn.Embedding(vocab, dim, padding_idx=pad)
        self.tgt_embed = nn.Embedding(vocab, dim, padding_idx=pad)
        self.transformer = nn.Transformer(dim, heads, layers, layers, mlp, dropout=0.0,
                                          batch_first=True)
        self.generator = nn.Linear(dim, vocab)
        # dtrain keeps the table as an f32 buffer (converted, not recomputed, by to(f64)): use the same values
        self.register_buffer("pe", sinusoidal(max_len, dim).float().double(), persistent=False)

    def embed(self, table, tokens):
        return table(tokens) * math.sqrt(self.dim) + self.pe[: tokens.shape[1]]

    def forward(self, src, tgt_in):
        t = tgt_in.shape[1]
        causal = torch.full((t, t), float("-inf")).triu(1)
        out = self.transformer(self.embed(self.src_embed, src), self.embed(self.tgt_embed, tgt_in),
                               tgt_mask=causal, src_key_padding_mask=src == self.pad,
                               tgt_key_padding_mask=tgt_in == self.pad,
                               memory_key_padding_mask=src == self.pad)
        return self.generator(out)


def torch_names(model):
    """The module's parameters under the names torch.nn.Transformer's state_dict uses, with the
    embeddings and the generator beside them (the names dtrain's to_torch_state() produces)."""
    out = {}
    for name, p in model.named_parameters():
        out[name[len("transformer."):] if name.startswith("transformer.") else name] = p
    return out


def dtrain_names(torch_state, dim):
    """Maps torch.nn.Transformer names (and tensors of that layout) to dtrain's Transformer names:
    encoder_layers.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}, decoder_layers.N.{..., cross_attn.q,
    cross_attn.kv, cross_attn.proj, norm3}, encoder_norm, decoder_norm. Cross-attention's fused in_proj is
    split into q (its first dim rows) and kv (the other 2 dim)."""
    rename = [("self_attn.in_proj_", "attn.qkv."), ("self_attn.out_proj.", "attn.proj."),
              ("multihead_attn.out_proj.", "cross_attn.proj."), ("linear1.", "mlp.fc1."),
              ("linear2.", "mlp.fc2."), ("norm1.", "norm1."), ("norm2.", "norm2."), ("norm3.", "norm3.")]
    out = {}
    for name, t in torch_state.items():
        for stack in ("encoder", "decoder"):
            if name.startswith(stack + ".layers."):
                index, tail = name[len(stack + ".layers."):].split(".", 1)
                prefix = f"{stack}_layers.{index}."
                if tail.startswith("multihead_attn.in_proj_"):
                    kind = tail.rsplit("_", 1)[1]
                    out[prefix + "cross_attn.q." + kind] = t[:dim]
                    out[prefix + "cross_attn.kv." + kind] = t[dim:]
                else:
                    for a, b in rename:
                        if tail.startswith(a):
                            out[prefix + b + tail[len(a):]] = t
                            break
                    else:
                        raise KeyError(name)
                break
            if name.startswith(stack + ".norm."):
                out[stack + "_norm." + name[len(stack + ".norm."):]] = t
                break
        else:
            out[name] = t  # src_embed, tgt_embed, generator
    return out


def transformer_fixture(gen):
    cfg = dict(vocab=11, dim=16, layers=2, heads=2, mlp=32, max_len=12, pad=0)
    model = Seq2Seq(**cfg)
    randomize(model, gen)
    model.train()
    pad, bos, eos = 0, 1, 2
    # Rows of different lengths, padded at the end; the decoder input is bos + target, the expected
    # output target + eos, and the loss ignores the pad positions.
    src = torch.tensor([[5, 7, 3, 9, 4, 2], [6, 10, 8, 2, pad, pad], [3, 2, pad, pad, pad, pad]])
    tgt = torch.tensor([[1, 9, 4, 6, 5, 2, pad], [1, 8, 3, 2, pad, pad, pad], [1, 7, 7, 10, 4, 3, 2]])
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    logits = model(src, tgt_in)
    loss = F.cross_entropy(logits.reshape(-1, cfg["vocab"]), tgt_out.reshape(-1), ignore_index=pad)
    loss.backward()
    params = torch_names(model)
    grads = dtrain_names({k: p.grad for k, p in params.items()}, cfg["dim"])
    keys = list(model.transformer.state_dict().keys())
    meta = dict(cfg, bos=bos, eos=eos, torch_state_keys=",".join(keys))
    save("transformer", params, {"src": src, "tgt_in": tgt_in.contiguous(),
                                 "tgt_out": tgt_out.contiguous()}, loss, grads, meta)


# ---------------------------------------------------------------------------------------------------
# GPT: vocab 13, dim 16, depth 2, heads 2, MLP 32, T = 8 (max_len 10), head tied to the token embedding.

class Positions(nn.Module):
    def __init__(self, max_len, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(max_len, dim))


class Gpt(nn.Module):
    def __init__(self, vocab, dim, depth, heads, mlp, max_len):
        super().__init__()
        self.tok_embed = nn.Embedding(vocab, dim)
        self.pos_embed = Positions(max_len, dim)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp, 1e-5, causal=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens):
        h = self.tok_embed(tokens) + self.pos_embed.weight[: tokens.shape[1]]
        return self.norm(self.blocks(h)) @ self.tok_embed.weight.t()


def gpt_fixture(gen):
    cfg = dict(vocab=13, dim=16, depth=2, heads=2, mlp=32, max_len=10)
    model = Gpt(**cfg)
    randomize(model, gen)
    tokens = torch.randint(0, cfg["vocab"], (3, 9), generator=gen)
    idx, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()  # T = 8
    loss = F.cross_entropy(model(idx).reshape(-1, cfg["vocab"]), targets.reshape(-1))
    loss.backward()
    params = dict(model.named_parameters())
    grads = {k: p.grad for k, p in params.items()}
    save("gpt", params, {"tokens": idx, "targets": targets}, loss, grads, cfg)


if __name__ == "__main__":
    gen = torch.Generator().manual_seed(20240611)
    vit_fixture(gen)
    transformer_fixture(gen)
    gpt_fixture(gen)
    # Written last, so the fixtures above keep their random draws: the ViT with --stem dwsep (3 input
    # channels, so the depthwise step has more than one group).
    vit_fixture(gen, name="vit_dwsep", channels=3, stem_channels=6)
