#!/usr/bin/python3
"""Training throughput of dtrain against PyTorch on the same ViT, the same data and the same step.

    /usr/bin/python3 bench/compare_torch.py [--dtrain build/dtrain] [--steps 30] [--threads 1,2]

Both sides train ViT-fm (patch 4, dim 128, depth 6, heads 4, MLP 512; 28x28x1 images, 10 classes) with
AdamW (lr 1e-3, weight decay 0.05 on matrices only, as dtrain groups them), gradient clipping at norm
1.0 and a cosine schedule, at batch 128, in f32 on the CPU. PyTorch runs a model defined in this file
with timm's layout (pre-LN blocks, fused qkv, LayerNorm eps 1e-6, erf GELU, class token into the head);
dtrain runs `dtrain train --model vit --model-size fm`. Both read the same Fashion-MNIST training set
(the package dataset-fashion-mnist, or --data-dir; --synthetic writes random images of the same shape
into a temporary directory and gives that to both).

Each side runs once per thread count in --threads, each in a fresh process, interleaved (torch 1,
dtrain 1, torch 2, dtrain 2, ...), and keeps its best. Throughput is images/s over the steps after
the first --warmup ones (which pay for first-touch allocation and thread start-up): for PyTorch timed
here, for dtrain from the `elapsed_s` of its metrics file at the end of the warmup and of the run.

The machine's 1-minute load average before and after is printed: on a shared machine other work
takes cores from both sides, so compare numbers from quiet runs, or repeat.
"""
import argparse
import gzip
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST training set, as dtrain normalises
VIT_FM = dict(patch=4, dim=128, depth=6, heads=4, mlp_dim=512, image=28, channels=1, classes=10)
LR, WEIGHT_DECAY, CLIP = 1e-3, 0.05, 1.0


# ---------------------------------------------------------------- data


def read_idx(path):
    """(dims, bytes) of an IDX u8 file, gzip'd or not."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        sys.exit(f"compare_torch.py: {path} is not a u8 IDX file")
    ndims = raw[3]
    dims = struct.unpack(">" + "I" * ndims, raw[4 : 4 + 4 * ndims])
    return dims, raw[4 + 4 * ndims :]


def find_idx(data_dir, name):
    for candidate in (name + ".gz", name):
        path = os.path.join(data_dir, candidate)
        if os.path.exists(path):
            return path
    sys.exit(f"compare_torch.py: no {name}(.gz) in {data_dir}; install dataset-fashion-mnist, pass "
             "--data-dir, or use --synthetic")


def write_synthetic(data_dir, n_train=2048, n_test=256):
    """Random images and labels in the four Fashion-MNIST files (plain IDX)."""
    import random

    rng = random.Random(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        with open(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte"), "wb") as f:
            f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, n, 28, 28))
            f.write(bytes(rng.randrange(256) for _ in range(n * 28 * 28)))
        with open(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte"), "wb") as f:
            f.write(struct.pack(">BBBBI", 0, 0, 8, 1, n))
            f.write(bytes(rng.randrange(10) for _ in range(n)))


# ---------------------------------------------------------------- the PyTorch side


def torch_worker(args):
    """Trains args.steps steps with args.threads threads; prints one JSON line with the timing."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    c = VIT_FM

    class Attention(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.heads, self.head_dim = heads, dim // heads
            self.qkv = nn.Linear(dim, 3 * dim)
            self.proj = nn.Linear(dim, dim)

        def forward(self, x):
            b, n, d = x.shape
            # The fused projection splits as (3, heads, head_dim), as timm's does.
            q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
            attn = (q @ k.transpose(-2, -1)) * self.head_dim ** -0.5
            out = attn.softmax(dim=-1) @ v
            return self.proj(out.transpose(1, 2).reshape(b, n, d))

    class Mlp(nn.Module):
        def __init__(self, dim, hidden):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

        def forward(self, x):
            return self.fc2(F.gelu(self.fc1(x)))  # erf GELU

    class Block(nn.Module):
        def __init__(self, dim, heads, mlp_dim):
            super().__init__()
            self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
            self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, mlp_dim)

        def forward(self, x):
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))

    class PatchEmbed(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Conv2d(c["channels"], c["dim"], c["patch"], stride=c["patch"])

        def forward(self, x):
            return self.proj(x).flatten(2).transpose(1, 2)  # [B, N, D], patches row-major

    class VisionTransformer(nn.Module):
        def __init__(self):
            super().__init__()
            patches = (c["image"] // c["patch"]) ** 2
            self.patch_embed = PatchEmbed()
            self.cls_token = nn.Parameter(torch.zeros(1, 1, c["dim"]))
            self.pos_embed = nn.Parameter(torch.randn(1, patches + 1, c["dim"]) * 0.02)
            self.blocks = nn.Sequential(*[Block(c["dim"], c["heads"], c["mlp_dim"]) for _ in range(c["depth"])])
            self.norm = nn.LayerNorm(c["dim"], eps=1e-6)
            self.head = nn.Linear(c["dim"], c["classes"])

        def forward(self, x):
            x = self.patch_embed(x)
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
            return self.head(self.norm(self.blocks(x))[:, 0])

    dims, pixels = read_idx(find_idx(args.data_dir, "train-images-idx3-ubyte"))
    _, labels = read_idx(find_idx(args.data_dir, "train-labels-idx1-ubyte"))
    n = dims[0]
    images = torch.frombuffer(bytearray(pixels), dtype=torch.uint8).reshape(n, 1, 28, 28)
    targets = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()
    order = torch.randperm(n)

    model = VisionTransformer()
    decay = [p for name, p in model.named_parameters()
             if p.dim() >= 2 and "_token" not in name and "pos_embed" not in name]
    no_decay = [p for name, p in model.named_parameters()
                if not (p.dim() >= 2 and "_token" not in name and "pos_embed" not in name)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=LR)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))

    batch = args.batch_size
    steps_per_epoch = n // batch
    model.train()
    warm_end = None
    start = time.perf_counter()
    for step in range(args.steps):
        idx = order[(step % steps_per_epoch) * batch : (step % steps_per_epoch + 1) * batch]
        # The loader's work, as dtrain's does it per batch: u8 -> f32, scaled and normalised.
        x = (images[idx].float() / 255.0 - MEAN) / STD
        y = targets[idx]
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        schedule.step()
        loss_value = loss.item()  # syncs and reads the loss, as a logging loop does
        if step + 1 == args.warmup:
            warm_end = time.perf_counter()
    end = time.perf_counter()
    timed = args.steps - args.warmup
    print(json.dumps({"threads": args.threads, "images_per_s": timed * batch / (end - warm_end),
                      "seconds": end - start, "final_loss": loss_value,
                      "parameters": sum(p.numel() for p in model.parameters())}))


def run_torch(args, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, os.path.abspath(__file__), "--torch-worker", "--threads", str(threads),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
           "--data-dir", args.data_dir]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"compare_torch.py: the PyTorch run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the dtrain side


def build_type(dtrain):
    cache = os.path.join(os.path.dirname(os.path.abspath(dtrain)), "CMakeCache.txt")
    try:
        with open(cache) as f:
            for line in f:
                if line.startswith("CMAKE_BUILD_TYPE:"):
                    return line.split("=", 1)[1].strip() or "Release (default)"
    except OSError:
        pass
    return "unknown"


def run_dtrain(args, threads, work_dir):
    metrics = os.path.join(work_dir, f"dtrain-{threads}.jsonl")
    c = VIT_FM
    cmd = [args.dtrain, "train", "--model", "vit", "--model-size", "fm", "--patch", str(c["patch"]),
           "--dim", str(c["dim"]), "--depth", str(c["depth"]), "--heads", str(c["heads"]),
           "--mlp-dim", str(c["mlp_dim"]), "--dataset", "fashion-mnist", "--data-dir", args.data_dir,
           "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--optimizer", "adamw",
           "--lr", str(LR), "--weight-decay", str(WEIGHT_DECAY), "--clip-grad-norm", str(CLIP),
           "--schedule", "cosine", "--precision", "f32", "--device", "cpu", "--seed", "0",
           "--threads", str(threads), "--log-interval", str(args.warmup), "--eval-batches", "1",
           "--metrics-file", metrics, "--progress", "0"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"compare_torch.py: the dtrain run failed: {' '.join(cmd)}\n{done.stderr}")
    records = [json.loads(line) for line in open(metrics) if line.strip()]
    logged = {r["step"]: r for r in records if "split" not in r}
    if args.warmup not in logged or args.steps not in logged:
        sys.exit(f"compare_torch.py: {metrics} lacks steps {args.warmup} and {args.steps}")
    seconds = logged[args.steps]["elapsed_s"] - logged[args.warmup]["elapsed_s"]
    summary = next((l for l in done.stdout.splitlines() if "throughput:" in l), "")
    return {"threads": threads, "images_per_s": (args.steps - args.warmup) * args.batch_size / seconds,
            "seconds": logged[args.steps]["elapsed_s"], "final_loss": logged[args.steps]["loss"],
            "summary": summary}


# ---------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser(description="dtrain vs PyTorch training throughput on ViT-fm.")
    parser.add_argument("--dtrain", default=os.path.join(REPO, "build", "dtrain"), help="the dtrain binary")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", default="1,2", help="thread counts to try for each side")
    parser.add_argument("--data-dir", default=FASHION_MNIST_DIR, help="Fashion-MNIST IDX files")
    parser.add_argument("--synthetic", action="store_true", help="random images instead of Fashion-MNIST")
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 0 < args.warmup < args.steps:
        sys.exit("compare_torch.py: need 0 < --warmup < --steps")

    if args.torch_worker:
        args.threads = int(args.threads)
        torch_worker(args)
        return

    if not os.access(args.dtrain, os.X_OK):
        sys.exit(f"compare_torch.py: no dtrain binary at {args.dtrain}; build it (cmake --build build "
                 "--target dtrain) or pass --dtrain")
    thread_counts = [int(t) for t in args.threads.split(",")]
    with tempfile.TemporaryDirectory(prefix="dtrain-compare-") as work_dir:
        if args.synthetic:
            args.data_dir = work_dir
            write_synthetic(work_dir)
        import torch

        print(f"ViT-fm (patch {VIT_FM['patch']}, dim {VIT_FM['dim']}, depth {VIT_FM['depth']}, heads "
              f"{VIT_FM['heads']}, MLP {VIT_FM['mlp_dim']}), AdamW, batch {args.batch_size}, f32, CPU; "
              f"{args.steps} steps, the first {args.warmup} untimed; data: "
              f"{'synthetic' if args.synthetic else args.data_dir}")
        print(f"torch {torch.__version__}; dtrain {args.dtrain} (build type {build_type(args.dtrain)}); "
              f"{os.cpu_count()} CPUs; load average before: {os.getloadavg()[0]:.2f}")
        results = {"torch": [], "dtrain": []}
        for threads in thread_counts:
            for side, run in (("torch", run_torch), ("dtrain", run_dtrain)):
                r = run(args, threads) if side == "torch" else run(args, threads, work_dir)
                results[side].append(r)
                print(f"  {side:6s} threads {threads}: {r['images_per_s']:8.1f} images/s  "
                      f"(run {r['seconds']:.1f} s, final loss {r['final_loss']:.4f}, "
                      f"load {os.getloadavg()[0]:.2f})", flush=True)
        best = {side: max(rs, key=lambda r: r["images_per_s"]) for side, rs in results.items()}
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        print(f"torch  best: {best['torch']['images_per_s']:.1f} images/s ({best['torch']['threads']} threads)")
        print(f"dtrain best: {best['dtrain']['images_per_s']:.1f} images/s ({best['dtrain']['threads']} threads)")
        print(f"ratio dtrain/torch: {best['dtrain']['images_per_s'] / best['torch']['images_per_s']:.2f}")


if __name__ == "__main__":
    main()
