#!/usr/bin/env python3
"""PyTorch eager baseline for `dtrain bench step --model vit-b16`: the same ViT-B/16, batch, optimizer and
synthetic data, timed the same way, with MFU against a GEMM peak measured in the same process.

The model is written here with plain torch.nn (no timm) to match models/vit.cpp: patch 16 conv embedding,
class token, learned positions, 12 pre-LN blocks (LN eps 1e-6 -> MHA with a fused qkv projection with bias
-> residual, LN -> fc1 3072 -> erf GELU -> fc2 -> residual), final LN, linear head on the class token,
224x224x3 images, 1000 classes, no dropout. AdamW as launch/optimizer_factory.cpp builds it: lr 1e-3,
betas (0.9, 0.999), eps 1e-8, weight decay 0.05 on weights of rank >= 2 except cls_token and pos_embed,
and gradient clipping to norm 1.0 (dtrain's --clip-grad-norm default, which bench step applies).
Inputs are N(0, 1) images with label 0, as in launch/bench.cpp.

FLOPs per image are 3x models::vit_forward_flops (multiply-adds count 2; backward = 2x forward), so the
two MFU figures share a numerator. The peak is the best torch.matmul rate at 8192^3 (1024^3 on CPU) in
the precision's dtype, as dtrain's measured_peak_flops does.

  python3 bench/torch_vit_b16.py --batch 128 --steps 20 --warmup 5 --precision bf16 --device cuda
prints one JSON line: images_per_s, step_ms, model_tflops, peak_tflops, mfu.
"""
import argparse
import json
import math
import time


def vit_forward_flops(image_size, in_channels, patch, dim, depth, mlp_dim, num_classes):
    """One image's forward FLOPs, term for term as models/vit.cpp's vit_forward_flops."""
    num_patches = (image_size // patch) ** 2
    n, d = num_patches + 1, dim
    patch_embed = 2.0 * num_patches * d * in_channels * patch * patch
    per_block = (2.0 * n * d * 3 * d        # qkv
                 + 2.0 * n * n * d * 2      # q k^T and attn v
                 + 2.0 * n * d * d          # proj
                 + 2.0 * n * d * mlp_dim * 2)  # fc1, fc2
    return patch_embed + depth * per_block + 2.0 * d * num_classes


VIT_B16 = dict(image_size=224, in_channels=3, patch=16, dim=768, depth=12, heads=12, mlp_dim=3072,
               num_classes=1000)


def build_model(torch, cfg, attention):
    nn = torch.nn
    F = torch.nn.functional

    class Attention(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(dim, 3 * dim)
            self.proj = nn.Linear(dim, dim)

        def forward(self, x):
            b, n, d = x.shape
            # The fused output splits as (3, heads, head_dim), as in timm and dtrain.
            q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            if attention == "sdpa":
                out = F.scaled_dot_product_attention(q, k, v)
            else:  # "math": softmax(q k^T / sqrt(dh)) v composed of matmuls, as dtrain's CUDA path does
                scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
                out = scores.softmax(dim=-1) @ v
            return self.proj(out.transpose(1, 2).reshape(b, n, d))

    class Mlp(nn.Module):
        def __init__(self, dim, hidden):
            super().__init__()
            self.fc1 = nn.Linear(dim, hidden)
            self.fc2 = nn.Linear(hidden, dim)

        def forward(self, x):
            return self.fc2(F.gelu(self.fc1(x)))  # erf GELU (approximate='none')

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

    class PatchEmbed(nn.Module):
        def __init__(self, in_channels, dim, patch):
            super().__init__()
            self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch, stride=patch)

        def forward(self, images):
            return self.proj(images).flatten(2).transpose(1, 2)  # [B, N, D], patches row-major

    class VisionTransformer(nn.Module):
        def __init__(self, c):
            super().__init__()
            num_patches = (c["image_size"] // c["patch"]) ** 2
            self.patch_embed = PatchEmbed(c["in_channels"], c["dim"], c["patch"])
            self.cls_token = nn.Parameter(torch.zeros(1, 1, c["dim"]))
            self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, c["dim"]))
            self.blocks = nn.ModuleList(Block(c["dim"], c["heads"], c["mlp_dim"]) for _ in range(c["depth"]))
            self.norm = nn.LayerNorm(c["dim"], eps=1e-6)
            self.head = nn.Linear(c["dim"], c["num_classes"])
            # timm's (and dtrain's) initialisation; it does not change the speed, only keeps the losses sane.
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
            nn.init.normal_(self.cls_token, std=1e-6)
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=0.02)
                    nn.init.zeros_(m.bias)

        def forward(self, images):
            x = self.patch_embed(images)
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
            for block in self.blocks:
                x = block(x)
            return self.head(self.norm(x)[:, 0])

    return VisionTransformer(cfg)


def adamw(torch, model):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        exempt = p.dim() < 2 or "_token" in name or "pos_embed" in name
        (no_decay if exempt else decay).append(p)
    groups = [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)


def synchronize(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measured_peak_flops(torch, device, dtype, reps):
    """Best rate of one n^3 matmul, n = 8192 on a GPU and 1024 on a CPU (dtrain's measured_peak_flops)."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    for r in range(reps + 1):  # the first one warms up (cuBLAS heuristics, clocks)
        synchronize(torch, device)
        t0 = time.perf_counter()
        torch.matmul(a, b)
        synchronize(torch, device)
        if r > 0:
            best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    ap.add_argument("--precision", choices=["bf16", "f32"], default="bf16",
                    help="bf16: autocast to bfloat16 with f32 master weights (no loss scaler needed)")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--attention", choices=["sdpa", "math"], default="sdpa",
                    help="sdpa: F.scaled_dot_product_attention (PyTorch's usual path); math: matmul+softmax")
    ap.add_argument("--image-size", type=int, default=224,
                    help="224 for ViT-B/16; smaller only for a quick smoke test")
    ap.add_argument("--depth", type=int, default=12, help="12 for ViT-B/16; smaller only for a smoke test")
    ap.add_argument("--clip-grad-norm", type=float, default=1.0, help="<= 0: off (dtrain's default is 1.0)")
    ap.add_argument("--peak-reps", type=int, default=5, help="timed matmuls for the peak (best is kept)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch  # imported here so that --help works without PyTorch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("torch_vit_b16: --device cuda but torch.cuda.is_available() is False")
    torch.manual_seed(args.seed)
    cfg = dict(VIT_B16, image_size=args.image_size, depth=args.depth)
    model = build_model(torch, cfg, args.attention).to(device)
    optimizer = adamw(torch, model)
    images = torch.randn(args.batch, cfg["in_channels"], cfg["image_size"], cfg["image_size"], device=device)
    labels = torch.zeros(args.batch, dtype=torch.long, device=device)
    mixed = args.precision == "bf16"

    def step():
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=mixed):
            logits = model(images)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad_norm)
        optimizer.step()
        return loss

    for _ in range(args.warmup):
        step()
    synchronize(torch, device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    synchronize(torch, device)
    step_s = (time.perf_counter() - t0) / args.steps
    final_loss = float(loss)

    flops_per_image = 3.0 * vit_forward_flops(cfg["image_size"], cfg["in_channels"], cfg["patch"], cfg["dim"],
                                              cfg["depth"], cfg["mlp_dim"], cfg["num_classes"])
    achieved = flops_per_image * args.batch / step_s
    # dtrain's CPU backend computes in f32 whatever it stores; do the same for the peak on a CPU.
    peak_dtype = torch.bfloat16 if mixed and device.type == "cuda" else torch.float32
    peak = measured_peak_flops(torch, device, peak_dtype, args.peak_reps)
    print(json.dumps({
        "impl": "pytorch-eager", "torch": torch.__version__, "model": "vit-b16" if args.depth == 12 and
        args.image_size == 224 else "vit-b16-reduced", "attention": args.attention,
        "precision": args.precision, "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "batch": args.batch, "steps": args.steps,
        "params": sum(p.numel() for p in model.parameters()),
        "images_per_s": round(args.batch / step_s, 1), "step_ms": round(step_s * 1e3, 2),
        "gflop_per_image": round(flops_per_image / 1e9, 3),
        "model_tflops": round(achieved / 1e12, 2), "peak_tflops": round(peak / 1e12, 2),
        "peak_dtype": str(peak_dtype).replace("torch.", ""), "mfu": round(achieved / peak, 4),
        "final_loss": round(final_loss, 4)}))


if __name__ == "__main__":
    main()
