#!/usr/bin/python3
"""Evaluates a ViT checkpoint written by `dtrain train` in PyTorch, on the Fashion-MNIST test set.

dtrain names a ViT's tensors as timm's VisionTransformer does (patch_embed.proj.*, cls_token, pos_embed,
blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*, norm.*, head.*), so its `model.safetensors`
loads into timm's model with load_state_dict(strict=True). This script does exactly that and prints the
top-1 accuracy, which must equal what `dtrain eval` reports for the same checkpoint.

    /usr/bin/python3 scripts/timm_eval.py CHECKPOINT_DIR_OR_model.safetensors [--heads 4]

The architecture is read from the tensor shapes (dim, depth, patch, MLP width, image size, classes);
only the number of heads is not visible in them: it comes from --heads, else from the file's metadata
(`heads`) when dtrain wrote it, else 4 (the `fm` preset).

With timm importable (it needs torch, torchvision, huggingface_hub, safetensors) the model is timm's
own VisionTransformer; otherwise (--impl local, or no timm) a re-implementation in this file with the
same module names and the same math: pre-LN blocks, LayerNorm eps 1e-6, the fused qkv output read as
(3, heads, head_dim), exact erf GELU, the class token's final state into the head.

Pixels are scaled to [0, 1] and normalised with the training set's mean 0.2860 and std 0.3530, in f32,
as dtrain's loader does.
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN, STD = 0.2860, 0.3530
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"

# ---- safetensors (the format is small; reading it here avoids needing the package) ----------------

_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
           "I32": torch.int32, "I64": torch.int64}


def read_safetensors(path):
    """Returns ({name: tensor}, metadata) for a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise SystemExit(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    metadata = header.pop("__metadata__", {}) or {}
    body = data[8 + n:]
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None:
            raise SystemExit(f"{path}: tensor {name} has dtype {entry['dtype']}, which this script does not read")
        raw = bytearray(body[begin:end])
        t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(entry["shape"]).clone()
    return tensors, metadata


# ---- the model ----------------------------------------------------------------------------------------

def vit_config(state, metadata, heads):
    """The VisionTransformer arguments that fit the checkpoint's tensors."""
    proj = state["patch_embed.proj.weight"]  # [dim, channels, patch, patch]
    dim, channels, patch = proj.shape[0], proj.shape[1], proj.shape[2]
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    patches = state["pos_embed"].shape[1] - 1  # one position is the class token's
    side = math.isqrt(patches)
    if side * side != patches:
        raise SystemExit(f"pos_embed has {patches} patch positions, not a square grid")
    if heads is None:
        heads = int(metadata.get("heads", 4))
    return dict(img_size=side * patch, patch_size=patch, in_chans=channels,
                num_classes=state["head.weight"].shape[0], embed_dim=dim, depth=depth, num_heads=heads,
                mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / dim)


class PatchEmbed(nn.Module):
    def __init__(self, patch, channels, dim):
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, N, D], patches row by row


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        hd = c // self.heads
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        weights = ((q @ k.transpose(-2, -1)) / math.sqrt(hd)).softmax(-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class LocalVisionTransformer(nn.Module):
    """timm's VisionTransformer with the defaults dtrain uses, under timm's parameter names."""

    def __init__(self, img_size, patch_size, in_chans, num_classes, embed_dim, depth, num_heads, mlp_ratio):
        super().__init__()
        patches = (img_size // patch_size) ** 2
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, patches + 1, embed_dim))
        hidden = int(round(embed_dim * mlp_ratio))
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, images):
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def build_model(config, impl):
    """(model, description). impl: 'timm', 'local' or 'auto' (timm when it imports)."""
    if impl in ("timm", "auto"):
        try:
            import timm
            from timm.models.vision_transformer import VisionTransformer
        except ImportError as e:
            if impl == "timm":
                raise SystemExit(f"--impl timm: cannot import timm ({e}); install it or use --impl local")
        else:
            model = VisionTransformer(**config, qkv_bias=True, class_token=True, global_pool="token")
            return model, f"timm {timm.__version__} VisionTransformer"
    return LocalVisionTransformer(**config), "local VisionTransformer (timm's module names)"


# ---- Fashion-MNIST -----------------------------------------------------------------------------------

def read_idx(path):
    """An IDX file (gzip'd or not) of u8 data as a uint8 tensor of its dims."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise SystemExit(f"{path}: not an IDX file of u8 data")
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = data[4 + 4 * ndim:]
    if len(body) != math.prod(dims):
        raise SystemExit(f"{path}: {len(body)} data bytes for dims {dims}")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(dims)


def find(data_dir, name):
    for candidate in (name + ".gz", name):
        path = os.path.join(data_dir, candidate)
        if os.path.exists(path):
            return path
    raise SystemExit(f"{os.path.join(data_dir, name)}(.gz) not found; install dataset-fashion-mnist or pass --data-dir")


def load_test_set(data_dir):
    images = read_idx(find(data_dir, "t10k-images-idx3-ubyte"))
    labels = read_idx(find(data_dir, "t10k-labels-idx1-ubyte")).long()
    # One f32 table for the 256 pixel values, (p / 255 - mean) / std, as dtrain's loader computes it.
    table = (torch.arange(256, dtype=torch.float32) / 255.0 - MEAN) / STD
    return table[images.long()].unsqueeze(1), labels  # [N, 1, 28, 28], [N]


# ---- main --------------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a dtrain checkpoint directory or its model.safetensors")
    parser.add_argument("--heads", type=int, default=None,
                        help="attention heads (not visible in the tensor shapes; default: metadata, else 4)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--impl", choices=("auto", "timm", "local"), default="auto",
                        help="timm's VisionTransformer, this file's re-implementation, or timm when importable")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    path = args.checkpoint
    if os.path.isdir(path):
        path = os.path.join(path, "model.safetensors")
    if not os.path.exists(path):
        raise SystemExit(f"{path} not found: pass a checkpoint directory written by `dtrain train` or its model.safetensors")
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    state, metadata = read_safetensors(path)
    state = {k: v.float() for k, v in state.items()}
    config = vit_config(state, metadata, args.heads)
    model, description = build_model(config, args.impl)
    model.load_state_dict(state, strict=True)  # every name must match timm's, and nothing is left over
    model.eval()

    images, labels = load_test_set(args.data_dir)
    if images.shape[-1] != config["img_size"] or images.shape[1] != config["in_chans"]:
        raise SystemExit(f"the checkpoint's model takes {config['in_chans']}x{config['img_size']}x{config['img_size']} "
                         f"images, Fashion-MNIST's are {images.shape[1]}x{images.shape[2]}x{images.shape[3]}")
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), args.batch_size):
            logits = model(images[start:start + args.batch_size])
            correct += (logits.argmax(-1) == labels[start:start + args.batch_size]).sum().item()
    print(f"model: {description}, " + ", ".join(f"{k} {v}" for k, v in config.items()))
    print(f"test accuracy: {correct / len(labels):.4f} ({correct}/{len(labels)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
