#!/usr/bin/python3
"""A PyTorch twin of dtrain's English -> Chinese translation example, recipe for recipe.

    /usr/bin/python3 bench/torch_translation.py --dtrain-build build
        [--config examples/transformer_gettext_zh.ini] [--steps N] [--threads 2] [--seed 0]
        [--hypotheses FILE]
    /usr/bin/python3 bench/torch_translation.py --data FILE.json ...   (data exported before)

What it compares: `dtrain train --config examples/transformer_gettext_zh.ini` against the same
recipe in PyTorch (Debian's python3-torch, f32 on the CPU), scored the way dtrain scores it.

- Data: the exact pairs and token ids dtrain's TransformerWorkload uses, written by
  `build/bench_translation_data` (bench/translation_data.cpp; --dtrain-build DIR runs it, writing
  DIR/translation_<dataset>.json; --data reads a file it wrote before): the gettext catalogs'
  train/valid split, sources as characters plus the .ini's byte-pair merges, targets as
  characters, pad 0, bos 1, eos 2; encoder input = source tokens + eos, decoder input = bos +
  target, predicted = target + eos; each batch padded to its longest row.
- Model (models/transformer.cpp): torch.nn.Transformer, batch first, post-LN (norm_first=False),
  ReLU, final encoder and decoder norms, the .ini's dim / mlp-dim / dropout on the model-size
  preset's layers and heads; embeddings * sqrt(dim) + the sinusoidal table (sin on even columns,
  cos on odd, frequency 1/10000^(2i/dim)), then dropout; a generator Linear. Padding masks on the
  encoder's and decoder's keys and the memory, a causal decoder mask. As dtrain: no dropout on the
  attention weights (its Transformer leaves attn_dropout at 0); every matrix Glorot uniform as
  dtrain holds it (embeddings and generator included; the decoder's cross-attention input
  projection as two matrices, q [dim, dim] and kv [2 dim, dim], since that is how dtrain stores
  it), every bias uniform(+-1/sqrt(fan_in)) (dtrain's Linear; torch's MultiheadAttention would
  zero them), pad rows of the embeddings zero.
- Recipe (read from the .ini, with dtrain's defaults from launch/config.h for what it leaves out):
  AdamW (eps 1e-8) with weight decay on every parameter of 2 or more dimensions and none on
  biases and norms (launch/optimizer_factory.cpp), linear warmup then cosine to min-lr
  (core/optim/lr_schedule.cpp: factor (s + 1) / warmup during warmup), gradient clipping by total
  norm, cross entropy averaged over non-pad targets with the .ini's label smoothing; batches
  drawn from a seeded per-epoch permutation, the last partial batch dropped.
- Evaluation (eval_sums in launch/workload_transformer.cpp), on the whole valid split: greedy
  decoding from bos until eos (at most seq-len tokens), each hypothesis cut at its reference's
  length + 4 characters; corpus BLEU (sacreBLEU's zh tokenizer for Chinese, 13a for German) and
  chrF from `bench_translation_data --score` (dtrain's core/data/text_metrics, equal to sacreBLEU
  2.x), and from sacrebleu too when it is importable; the valid loss (teacher forcing, no
  smoothing), exact match and CER; 5 samples (dtrain's: valid pairs 0, 7, 14, 21, 28).

It prints the training loss every 500 steps (the logged step's, as dtrain's metrics file has it,
and the mean over the 500), the wall time of training and of evaluation, and the scores.
--steps N shortens the run (the schedule follows it, as dtrain's --steps would), for a smoke test.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG_EVERY = 500

# launch/config.h's defaults for the keys an .ini may leave out.
DTRAIN_DEFAULTS = {
    "model": "vit", "model-size": "fm", "dim": "0", "depth": "0", "heads": "0", "mlp-dim": "0",
    "dropout": "0", "dataset": "fashion-mnist", "seq-len": "64", "bpe-merges": "0",
    "batch-size": "128", "grad-accum": "1", "steps": "0", "optimizer": "adamw", "lr": "1e-3",
    "min-lr": "0", "schedule": "cosine", "warmup-steps": "0", "weight-decay": "0.05",
    "beta1": "0.9", "beta2": "0.999", "clip-grad-norm": "1.0", "label-smoothing": "0", "seed": "0",
    "data-dir": "",
}
# TransformerConfig::preset (models/transformer.cpp): layers, heads, dim, mlp-dim; "fm" is "small".
PRESETS = {"tiny": (2, 4, 64, 256), "small": (3, 4, 128, 512), "base": (6, 8, 512, 2048)}


# ---------------------------------------------------------------- recipe

def read_ini(path):
    """The .ini's key = value lines over dtrain's defaults (# starts a comment line)."""
    values = dict(DTRAIN_DEFAULTS)
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                sys.exit(f"{path}:{number}: not a 'key = value' line: {line}")
            key, value = (part.strip() for part in line.split("=", 1))
            values[key] = value
    return values


def recipe_of(ini, args):
    """The twin's settings, refusing what it does not mirror."""
    if ini["model"] != "transformer":
        sys.exit(f"{args.config}: model = {ini['model']}; this twin mirrors model = transformer")
    if ini["dataset"] not in ("gettext-zh", "gettext-de"):
        sys.exit(f"{args.config}: dataset = {ini['dataset']}; give gettext-zh or gettext-de")
    if ini["optimizer"] != "adamw" or ini["schedule"] != "cosine":
        sys.exit(f"{args.config}: optimizer {ini['optimizer']}, schedule {ini['schedule']}: "
                 "this twin mirrors adamw with the cosine schedule")
    if int(ini["grad-accum"]) != 1:
        sys.exit(f"{args.config}: grad-accum {ini['grad-accum']}: this twin takes 1")
    size = "small" if ini["model-size"] == "fm" else ini["model-size"]
    if size not in PRESETS:
        sys.exit(f"{args.config}: model-size {ini['model-size']}: use tiny, small or base")
    layers, heads, dim, mlp_dim = PRESETS[size]
    steps = args.steps if args.steps else int(ini["steps"])
    if steps <= 0:
        sys.exit(f"{args.config}: steps = {ini['steps']}; this twin needs a step count "
                 "(or --steps)")
    r = {
        "dataset": ini["dataset"], "data_dir": ini["data-dir"], "seq_len": int(ini["seq-len"]),
        "bpe_merges": int(ini["bpe-merges"]),
        "layers": int(ini["depth"]) or layers, "heads": int(ini["heads"]) or heads,
        "dim": int(ini["dim"]) or dim, "mlp_dim": int(ini["mlp-dim"]) or mlp_dim,
        "dropout": float(ini["dropout"]), "batch_size": int(ini["batch-size"]), "steps": steps,
        "lr": float(ini["lr"]), "min_lr": float(ini["min-lr"]),
        "warmup_steps": int(ini["warmup-steps"]), "weight_decay": float(ini["weight-decay"]),
        "betas": (float(ini["beta1"]), float(ini["beta2"])),
        "clip_grad_norm": float(ini["clip-grad-norm"]),
        "label_smoothing": float(ini["label-smoothing"]),
        "seed": int(ini["seed"]) if args.seed is None else args.seed,
    }
    if steps <= r["warmup_steps"]:
        sys.exit(f"--steps {steps} must exceed warmup-steps = {r['warmup_steps']} (as dtrain asks)")
    return r


def lr_factor(step, warmup, total, min_ratio):
    """core/optim/lr_schedule.cpp's warmup_cosine at 0-based step `step`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(step - warmup, total - warmup) / (total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# ---------------------------------------------------------------- data

def load_data(args, recipe):
    """The exported JSON: given (--data), or written now by --dtrain-build's bench_translation_data
    (a few seconds; the catalogs may have changed since the last run)."""
    if args.data:
        path = args.data
    else:
        exporter = os.path.join(args.dtrain_build, "bench_translation_data")
        if not os.access(exporter, os.X_OK):
            sys.exit(f"{exporter} is missing: build it (cmake --build {args.dtrain_build} "
                     "--target bench_translation_data) or give --data FILE.json")
        path = os.path.join(args.dtrain_build, f"translation_{recipe['dataset']}.json")
        command = [exporter, "--dataset", recipe["dataset"], "--seq-len", str(recipe["seq_len"]),
                   "--bpe-merges", str(recipe["bpe_merges"]), "--out", path]
        if recipe["data_dir"]:
            command += ["--data-dir", recipe["data_dir"]]
        if subprocess.run(command).returncode != 0:
            sys.exit(f"{exporter} failed (its message is above)")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    expected = dict(recipe, locale_dir=recipe["data_dir"] or "/usr/share/locale")
    for key in ("dataset", "seq_len", "bpe_merges", "locale_dir"):
        if data[key] != expected[key]:
            sys.exit(f"{path} holds {key} = {data[key]} but the recipe has {expected[key]}: "
                     "export it again")
    return data, path


def pad_rows(rows, pad):
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def make_batch(pairs, indices, pad):
    """TranslationDataset::get_batch: source + eos, bos + target, target + eos; padded with pad."""
    chosen = [pairs[i] for i in indices]
    src = pad_rows([p["source_ids"] for p in chosen], pad)
    tgt_in = pad_rows([p["target_ids"][:-1] for p in chosen], pad)
    tgt_out = pad_rows([p["target_ids"][1:] for p in chosen], pad)
    return src, tgt_in, tgt_out


def train_batches(size, batch_size, seed):
    """Global batches from a seeded permutation per epoch; the last partial batch is dropped."""
    epoch = 0
    while True:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(size, generator=g).tolist()
        for start in range(0, size - batch_size + 1, batch_size):
            yield order[start:start + batch_size]
        epoch += 1


# ---------------------------------------------------------------- model

def sinusoidal_table(max_len, dim):
    """nn::sinusoidal_table: column j has angle p / 10000^((j - j % 2) / dim); sin even, cos odd."""
    position = torch.arange(max_len, dtype=torch.float64)[:, None]
    even = torch.arange(dim, dtype=torch.float64)
    even = even - even % 2
    angle = position * torch.exp(-math.log(10000.0) * even / dim)
    table = torch.where(torch.arange(dim) % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float()


class Translator(nn.Module):
    """models/transformer.cpp's Transformer on torch.nn.Transformer."""

    def __init__(self, src_vocab, tgt_vocab, max_len, dim, heads, layers, mlp_dim, dropout, pad):
        super().__init__()
        self.dim, self.pad = dim, pad
        self.src_embed = nn.Embedding(src_vocab, dim, padding_idx=pad)
        self.tgt_embed = nn.Embedding(tgt_vocab, dim, padding_idx=pad)
        self.register_buffer("pe", sinusoidal_table(max_len, dim), persistent=False)
        self.drop = nn.Dropout(dropout)
        self.transformer = nn.Transformer(
            d_model=dim, nhead=heads, num_encoder_layers=layers, num_decoder_layers=layers,
            dim_feedforward=mlp_dim, dropout=dropout, activation="relu", batch_first=True,
            norm_first=False)
        self.generator = nn.Linear(dim, tgt_vocab)
        for module in self.modules():
            if isinstance(module, nn.MultiheadAttention):
                module.dropout = 0.0  # dtrain's Transformer has no dropout on attention weights
        if hasattr(self.transformer.encoder, "enable_nested_tensor"):
            self.transformer.encoder.enable_nested_tensor = False
        self.init_like_dtrain()

    @torch.no_grad()
    def init_like_dtrain(self):
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        # dtrain's cross-attention holds q [dim, dim] and kv [2 dim, dim] as two Linear layers, each
        # Glorot uniform on its own shape; torch fuses them into one [3 dim, dim] in_proj_weight.
        for layer in self.transformer.decoder.layers:
            w = layer.multihead_attn.in_proj_weight
            nn.init.xavier_uniform_(w[:self.dim])
            nn.init.xavier_uniform_(w[self.dim:])
        # Every bias as nn::Linear's: uniform(+-1/sqrt(fan_in)); torch zeroes attention biases.
        for module in self.modules():
            if isinstance(module, nn.MultiheadAttention):
                bound = 1 / math.sqrt(self.dim)
                nn.init.uniform_(module.in_proj_bias, -bound, bound)
                nn.init.uniform_(module.out_proj.bias, -bound, bound)
        self.src_embed.weight[self.pad].zero_()
        self.tgt_embed.weight[self.pad].zero_()

    def embed(self, table, ids):
        return self.drop(table(ids) * math.sqrt(self.dim) + self.pe[:ids.size(1)])

    def encode(self, src):
        return self.transformer.encoder(self.embed(self.src_embed, src),
                                        src_key_padding_mask=src == self.pad)

    def decode(self, tgt_in, memory, src):
        t = tgt_in.size(1)
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
        h = self.transformer.decoder(self.embed(self.tgt_embed, tgt_in), memory, tgt_mask=causal,
                                     tgt_key_padding_mask=tgt_in == self.pad,
                                     memory_key_padding_mask=src == self.pad)
        return self.generator(h)

    def forward(self, src, tgt_in):
        return self.decode(tgt_in, self.encode(src), src)

    @torch.no_grad()
    def greedy_decode(self, src, bos, eos, max_len):
        """Transformer::greedy_decode: arg max from bos until eos or max_len tokens, per row."""
        memory = self.encode(src)
        prefix = torch.full((src.size(0), 1), bos, dtype=torch.long)
        done = torch.zeros(src.size(0), dtype=torch.bool)
        out = [[] for _ in range(src.size(0))]
        for t in range(1, max_len + 1):
            ids = self.decode(prefix, memory, src)[:, t - 1].argmax(-1)
            ids = torch.where(done, torch.full_like(ids, self.pad), ids)
            done = done | (ids == eos)
            for b, i in enumerate(ids.tolist()):
                if not done[b]:
                    out[b].append(i)
            prefix = torch.cat([prefix, ids[:, None]], 1)
            if bool(done.all()):
                break
        return out


def decay_groups(model, weight_decay):
    """launch/optimizer_factory.cpp: decay on parameters of 2+ dimensions, none on the rest."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


# ---------------------------------------------------------------- evaluation

def edit_distance(a, b):
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        diagonal, row[0] = row[0], i
        for j in range(1, len(b) + 1):
            up = row[j]
            row[j] = min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1]))
            diagonal = up
    return row[len(b)]


def decode_ids(ids, tokens, data):
    """CharVocab::decode: stops at eos, skips pad and bos, unk as U+FFFD."""
    out = []
    for i in ids:
        if i == data["eos_id"]:
            break
        if i in (data["pad_id"], data["bos_id"]):
            continue
        out.append("\ufffd" if i == data["unk_id"] else tokens[i])
    return "".join(out)


def evaluate(model, data, pairs, batch_size, seq_len):
    """eval_sums over the whole split: loss, greedy hypotheses cut at reference length + 4."""
    model.eval()
    tokens = data["target_vocab"]["tokens"]
    pad = data["pad_id"]
    loss_sum, loss_tokens, hypotheses = 0.0, 0, []
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            indices = list(range(start, min(start + batch_size, len(pairs))))
            src, tgt_in, tgt_out = make_batch(pairs, indices, pad)
            logits = model(src, tgt_in)
            loss_sum += F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=pad,
                                        reduction="sum").item()
            loss_tokens += int((tgt_out != pad).sum())
            decoded = model.greedy_decode(src, data["bos_id"], data["eos_id"],
                                          min(tgt_out.size(1) + 4, seq_len))
            for i, ids in zip(indices, decoded):
                limit = len(pairs[i]["target"]) + 4  # code points: one target id per character
                hypotheses.append(decode_ids(ids[:limit], tokens, data))
    model.train()
    references = [p["target"] for p in pairs]
    exact = sum(h == r for h, r in zip(hypotheses, references)) / len(pairs)
    cer = (sum(edit_distance(h, r) for h, r in zip(hypotheses, references))
           / sum(len(r) for r in references))
    return {"loss": loss_sum / loss_tokens, "exact_match": exact, "cer": cer}, hypotheses


def score(hypotheses, references, tokenize, exporter, keep):
    """BLEU and chrF by dtrain's scorer (bench_translation_data --score), and by sacrebleu when
    it is importable."""
    for text in hypotheses + references:
        if "\n" in text or "\r" in text:
            sys.exit("a hypothesis or reference holds a line break: it cannot be scored "
                     "line by line")
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        hyp_path = keep or os.path.join(tmp, "hypotheses.txt")
        ref_path = os.path.join(tmp, "references.txt")
        for path, lines in ((hyp_path, hypotheses), (ref_path, references)):
            with open(path, "w", encoding="utf-8", newline="\n") as f:
                f.writelines(line + "\n" for line in lines)
        if exporter and os.access(exporter, os.X_OK):
            result = subprocess.run([exporter, "--score", hyp_path, "--ref", ref_path,
                                     "--tokenize", tokenize], check=True, capture_output=True,
                                    text=True)
            dtrain = json.loads(result.stdout)
            scores["dtrain"] = (dtrain["bleu"], dtrain["chrf"])
    try:
        import sacrebleu
        scores["sacrebleu " + sacrebleu.__version__] = (
            sacrebleu.corpus_bleu(hypotheses, [references], tokenize=tokenize).score,
            sacrebleu.corpus_chrf(hypotheses, [references]).score)
    except ImportError:
        pass
    if not scores:
        sys.exit("no scorer: give --dtrain-build or --scorer (bench_translation_data --score), "
                 "or install sacrebleu")
    return scores


# ---------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config",
                        default=os.path.join(REPO, "examples/transformer_gettext_zh.ini"))
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dtrain-build", help="build directory holding bench_translation_data")
    source.add_argument("--data", help="JSON written by bench_translation_data")
    parser.add_argument("--scorer", help="bench_translation_data for --score (default: "
                        "--dtrain-build's, else build/ beside this script)")
    parser.add_argument("--steps", type=int, default=0, help="override the .ini's steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, help="default: the .ini's seed")
    parser.add_argument("--hypotheses", help="keep the valid split's hypotheses in this file")
    args = parser.parse_args()
    if args.steps < 0 or args.threads < 1:
        parser.error("--steps must be >= 0 and --threads >= 1")

    torch.set_num_threads(args.threads)
    recipe = recipe_of(read_ini(args.config), args)
    torch.manual_seed(recipe["seed"])
    data, data_path = load_data(args, recipe)
    train, valid = data["splits"]["train"], data["splits"]["valid"]
    pad = data["pad_id"]
    scorer = args.scorer or os.path.join(args.dtrain_build or os.path.join(REPO, "build"),
                                         "bench_translation_data")

    model = Translator(data["source_vocab"]["size"], data["target_vocab"]["size"],
                       recipe["seq_len"], recipe["dim"], recipe["heads"], recipe["layers"],
                       recipe["mlp_dim"], recipe["dropout"], pad)
    optimizer = torch.optim.AdamW(decay_groups(model, recipe["weight_decay"]), lr=recipe["lr"],
                                  betas=recipe["betas"], eps=1e-8)
    min_ratio = recipe["min_lr"] / recipe["lr"] if recipe["lr"] > 0 else 0.0
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(
        s, recipe["warmup_steps"], recipe["steps"], min_ratio))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; data {data_path}: "
          f"{len(train)} train, {len(valid)} valid pairs; vocab {data['source_vocab']['size']} "
          f"source ({data['bpe_merges_learnt']} merges), {data['target_vocab']['size']} target")
    print(f"model: {sum(p.numel() for p in model.parameters())} parameters, dim {recipe['dim']}, "
          f"{recipe['layers']}+{recipe['layers']} layers, {recipe['heads']} heads, mlp "
          f"{recipe['mlp_dim']}, dropout {recipe['dropout']}")
    print(f"recipe ({args.config}): batch {recipe['batch_size']}, {recipe['steps']} steps, "
          f"AdamW lr {recipe['lr']} betas {recipe['betas']} weight decay {recipe['weight_decay']} "
          f"on matrices, warmup {recipe['warmup_steps']} then cosine to {recipe['min_lr']}, clip "
          f"{recipe['clip_grad_norm']}, label smoothing {recipe['label_smoothing']}",
          flush=True)

    model.train()
    batches = train_batches(len(train), recipe["batch_size"], recipe["seed"])
    window, start = [], time.perf_counter()
    for step in range(1, recipe["steps"] + 1):
        src, tgt_in, tgt_out = make_batch(train, next(batches), pad)
        logits = model(src, tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=pad,
                               label_smoothing=recipe["label_smoothing"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if recipe["clip_grad_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["clip_grad_norm"])
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        schedule.step()
        if not math.isfinite(loss.item()):
            sys.exit(f"the loss is {loss.item()} at step {step}: training diverged")
        window.append(loss.item())
        if step % LOG_EVERY == 0 or step == recipe["steps"]:
            print(f"step {step:5d}  loss {loss.item():.4f}  mean of last {len(window)} "
                  f"{sum(window) / len(window):.4f}  lr {lr:.3e}  "
                  f"{time.perf_counter() - start:7.1f} s", flush=True)
            window = []
    train_s = time.perf_counter() - start

    start = time.perf_counter()
    metrics, hypotheses = evaluate(model, data, valid, recipe["batch_size"], recipe["seq_len"])
    scores = score(hypotheses, [p["target"] for p in valid], data["bleu_tokenize"], scorer,
                   args.hypotheses)
    eval_s = time.perf_counter() - start
    print(f"training {train_s:.1f} s ({train_s / recipe['steps'] * 1000:.1f} ms/step), evaluation "
          f"{eval_s:.1f} s, {torch.get_num_threads()} threads")
    print(f"valid ({len(valid)} pairs, greedy): loss {metrics['loss']:.4f}, exact match "
          f"{metrics['exact_match']:.4f}, CER {metrics['cer']:.4f}")
    for name, (bleu, chrf) in scores.items():
        print(f"BLEU {bleu:.2f}  chrF {chrf:.2f}  ({name}, tokenize {data['bleu_tokenize']})")
    for i in [k * 7 % len(valid) for k in range(min(5, len(valid)))]:
        print(f"  {valid[i]['source']} -> {hypotheses[i]}  (reference: {valid[i]['target']})")


if __name__ == "__main__":
    main()
