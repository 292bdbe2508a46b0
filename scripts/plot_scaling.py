#!/usr/bin/python3
"""Draws the scaling sweep of `dtrain bench scaling` into a PNG.

    /usr/bin/python3 scripts/plot_scaling.py scaling/scaling.json --out scaling/scaling.png

One row of panels per scaling mode (weak, strong): throughput against ranks with the ideal line
(the smallest world size's throughput per rank, times the ranks) and efficiency against ranks, both with
the scaling model's prediction where the sweep had one; then the step time split into compute and
exposed communication, measured beside predicted.

Needs matplotlib (Debian python3-matplotlib).
"""
import argparse
import json
import os
import sys


def fail(message):
    print(f"plot_scaling.py: error: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="scaling.json written by dtrain bench scaling")
    parser.add_argument("--out", required=True, help="PNG to write")
    args = parser.parse_args()
    try:
        with open(args.json) as f:
            sweep = json.load(f)
        points = sweep["points"]
        unit = sweep["unit"]
    except (OSError, ValueError, KeyError) as e:
        fail(f"cannot read the sweep {args.json}: {e}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        fail("matplotlib is missing: scripts/bootstrap --reference installs python3-matplotlib")

    modes = [m for m in ("weak", "strong") if any(p["mode"] == m for p in points)]
    if not modes:
        fail(f"{args.json} holds no points")
    fig, axes = plt.subplots(len(modes), 3, figsize=(15, 4.2 * len(modes)), squeeze=False)
    for row, mode in zip(axes, modes):
        pts = sorted((p for p in points if p["mode"] == mode), key=lambda p: p["ranks"])
        ranks = [p["ranks"] for p in pts]
        base = pts[0]
        modelled = all("predicted_step_ms" in p for p in pts)

        ax = row[0]
        ax.plot(ranks, [p["throughput"] for p in pts], "o-", label="measured")
        ax.plot(ranks, [base["throughput"] * r / base["ranks"] for r in ranks], "--", color="gray",
                label="ideal")
        if modelled:
            items = [p["throughput"] * p["step_ms"] for p in pts]  # items per step x 1000
            ax.plot(ranks, [i / p["predicted_step_ms"] for i, p in zip(items, pts)], "s:", label="model")
        ax.set_xticks(ranks)
        ax.set_title(f"{mode} scaling: throughput")
        ax.set_xlabel("ranks")
        ax.set_ylabel(f"{unit}/s")
        ax.legend()

        ax = row[1]
        ax.plot(ranks, [p["efficiency"] for p in pts], "o-", label="efficiency vs smallest world")
        ax.plot(ranks, [p["vs_independent"] for p in pts], "^-", label="independent step / DDP step")
        if modelled:
            ax.plot(ranks, [p["compute_ms"] / p["predicted_step_ms"] for p in pts], "s:",
                    label="model: compute / step")
        ax.set_xticks(ranks)
        ax.set_ylim(0, 1.15)
        ax.set_title(f"{mode} scaling: efficiency")
        ax.set_xlabel("ranks")
        ax.legend()

        ax = row[2]
        x = list(range(len(pts)))
        width = 0.38 if modelled else 0.7
        compute = [p["compute_ms"] for p in pts]
        exposed = [max(0.0, p["exposed_ms"]) for p in pts]
        ax.bar([i - (width / 2 if modelled else 0) for i in x], compute, width, label="compute (measured)")
        ax.bar([i - (width / 2 if modelled else 0) for i in x], exposed, width, bottom=compute,
               label="exposed communication (measured)")
        if modelled:
            ax.bar([i + width / 2 for i in x], [p["predicted_step_ms"] for p in pts], width, color="none",
                   edgecolor="black", hatch="//", label="model: step")
        ax.set_xticks(x, [str(r) for r in ranks])
        ax.set_title(f"{mode} scaling: step time")
        ax.set_xlabel("ranks")
        ax.set_ylabel("ms")
        ax.legend()

    fig.suptitle(f"dtrain bench scaling: {sweep.get('model', '?')}, {sweep.get('parameters', '?')} parameters, "
                 f"{sweep.get('device', '?')}")
    fig.tight_layout()
    tmp = args.out + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
