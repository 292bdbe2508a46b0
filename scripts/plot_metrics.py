#!/usr/bin/python3
"""Draws training curves from one or more dtrain metrics files (JSON Lines) into a PNG.

    /usr/bin/python3 scripts/plot_metrics.py runs/a.jsonl [runs/b.jsonl ...] --out curves.png

`dtrain train --metrics-file FILE` writes one JSON object per line: per logged step
{step, epoch, loss, lr, grad_norm, images_per_s | tokens_per_s, elapsed_s}, and per evaluation
{step, split, loss, accuracy | cer + exact_match | bpc}. The left panel shows the training loss (lines)
and the eval loss (dots) against the step; a panel per eval metric follows: accuracy for ViT, character
error rate and exact match for the Transformer, bits per character for GPT.

A resumed run appends to its metrics file; when it resumed from a checkpoint older than the last
logged step, the re-done steps appear twice and the later records (the run that went on) are kept.

Needs matplotlib (Debian python3-matplotlib).
"""
import argparse
import json
import os
import sys

# The eval metrics dtrain writes, in the order their panels appear.
EVAL_METRICS = ("accuracy", "cer", "exact_match", "bpc")


def fail(message):
    print(f"plot_metrics.py: error: {message}", file=sys.stderr)
    sys.exit(1)


def read_metrics(path):
    """Returns ({step: record} for logged steps, {step: record} for evals), later records winning."""
    steps, evals = {}, {}
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    fail(f"{path}:{number}: not a JSON object ({e.msg}); is this a dtrain metrics file?")
                if not isinstance(record, dict) or "step" not in record:
                    fail(f"{path}:{number}: a record without 'step'; is this a dtrain metrics file?")
                (evals if "split" in record else steps)[int(record["step"])] = record
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror}")
    if not steps and not evals:
        fail(f"{path} holds no records (was the run started with --metrics-file?)")
    return steps, evals


def series(records, key):
    """(steps, values) of the records that have `key`, in step order."""
    points = sorted((s, r[key]) for s, r in records.items() if key in r and r[key] is not None)
    return [p[0] for p in points], [p[1] for p in points]


def main():
    parser = argparse.ArgumentParser(description="Plot loss and eval curves from dtrain metrics files.")
    parser.add_argument("files", nargs="+", help="metrics files written by dtrain train --metrics-file")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--labels", help="comma-separated legend names, one per file (default: file names)")
    parser.add_argument("--title", default="", help="a title over both panels")
    parser.add_argument("--log-loss", action="store_true", help="loss axis on a log scale")
    args = parser.parse_args()

    labels = args.labels.split(",") if args.labels else [os.path.basename(f) for f in args.files]
    if len(labels) != len(args.files):
        fail(f"--labels names {len(labels)} runs but {len(args.files)} files were given")
    runs = [(label, *read_metrics(path)) for label, path in zip(labels, args.files)]

    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    # One panel for the losses, then one per eval metric any run has (scales differ: accuracy in
    # [0, 1], bpc in bits), each run in the same colour everywhere.
    metrics = [m for m in EVAL_METRICS if any(series(evals, m)[0] for _, _, evals in runs)]
    panels = 1 + max(1, len(metrics))
    cols = min(3, panels)
    rows = (panels + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4.5 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[panels:]:
        ax.set_axis_off()
    loss_ax, eval_axes = flat[0], flat[1:panels]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, steps, evals) in enumerate(runs):
        color = colors[i % len(colors)]
        x, y = series(steps, "loss")
        if x:
            loss_ax.plot(x, y, color=color, linewidth=1.2, label=f"{label} train")
        x, y = series(evals, "loss")
        if x:
            loss_ax.plot(x, y, "o--", color=color, markersize=4, linewidth=0.8, label=f"{label} eval")
        for ax, metric in zip(eval_axes, metrics):
            x, y = series(evals, metric)
            if x:
                ax.plot(x, y, "o-", color=color, markersize=4, label=label)

    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("cross entropy")
    loss_ax.set_title("loss")
    if args.log_loss:
        loss_ax.set_yscale("log")
    loss_ax.grid(alpha=0.3)
    loss_ax.legend(fontsize=8)
    for ax, metric in zip(eval_axes, metrics):
        ax.set_xlabel("step")
        ax.set_ylabel(metric)
        ax.set_title(f"eval {metric}" + (" (lower is better)" if metric in ("cer", "bpc") else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if not metrics:
        eval_axes[0].text(0.5, 0.5, "no evaluations in these files", ha="center", va="center",
                          transform=eval_axes[0].transAxes)
        eval_axes[0].set_axis_off()

    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    try:
        fig.savefig(args.out, dpi=110)
    except OSError as e:
        fail(f"cannot write {args.out}: {e.strerror}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
