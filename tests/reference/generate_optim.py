"""Reference values for core/optim: optimizer trajectories, LR schedules and gradient clipping.

Run with /usr/bin/python3 (torch 1.13). Writes tests/reference/fixtures/optim.safetensors, read by
tests/core/optim/*.cpp.

Trajectories: two parameters (p0 [3, 4], p1 [5]) start from fixed values and receive a fixed
sequence of 10 gradients. The gradient scale shrinks over the steps so that running maxima (amsgrad,
Adamax) matter, and p1 gets no gradient at step 4 (it must be skipped: no update, no state advance).
For each case the file holds
    <case>.p0, <case>.p1      [10, ...] parameter values after each step
    <case>.state.<i>.<name>   the per-parameter state after the last step (i = flat parameter index)
Cases whose name ends in "_groups" put p0 and p1 in two parameter groups with different settings.
The C++ tests build the same optimizers by hand; keep the two in step.
"""
import math
import os
import warnings

import torch

from common import HERE, save_safetensors

STEPS = 10
SKIP_P1_AT = 4

torch.manual_seed(20240613)
INIT = {"p0": torch.randn(3, 4), "p1": torch.randn(5)}
SCALES = torch.tensor([2.0 - 0.18 * k for k in range(STEPS)])
GRADS = {
    "p0": torch.randn(STEPS, 3, 4) * SCALES.view(-1, 1, 1),
    "p1": torch.randn(STEPS, 5) * SCALES.view(-1, 1),
}

O = torch.optim
# (case, optimizer class, options of group 0, options of group 1 or None for one group of p0 and p1)
CASES = [
    ("sgd", O.SGD, dict(lr=0.1), None),
    ("sgd_momentum", O.SGD, dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01), None),
    ("sgd_nesterov", O.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01), None),
    ("sgd_groups", O.SGD, dict(lr=0.05, momentum=0.9), dict(lr=0.2, momentum=0.5, nesterov=True)),
    ("adam", O.Adam, dict(lr=0.01), None),
    ("adam_wd", O.Adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1), None),
    ("adam_amsgrad", O.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.01), None),
    ("adam_groups", O.Adam, dict(lr=0.01), dict(lr=0.03, betas=(0.5, 0.9), amsgrad=True,
                                                 weight_decay=0.05)),
    ("adamw", O.AdamW, dict(lr=0.01, weight_decay=0.1), None),
    ("adamw_amsgrad", O.AdamW, dict(lr=0.01, weight_decay=0.05, amsgrad=True), None),
    # fine-tuning with a smaller learning rate for the "pretrained" layer p0
    ("adamw_groups", O.AdamW, dict(lr=1e-3, weight_decay=0.05), dict(lr=1e-2, weight_decay=0.0)),
    ("adagrad", O.Adagrad, dict(lr=0.1), None),
    ("adagrad_wd", O.Adagrad, dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.2, eps=1e-6,
                                   weight_decay=0.02), None),
    ("adagrad_groups", O.Adagrad, dict(lr=0.1), dict(lr=0.3, lr_decay=0.1, weight_decay=0.1)),
    ("rmsprop", O.RMSprop, dict(lr=0.01), None),
    ("rmsprop_momentum", O.RMSprop, dict(lr=0.01, alpha=0.9, momentum=0.8, weight_decay=0.01),
     None),
    ("rmsprop_centered", O.RMSprop, dict(lr=0.01, alpha=0.95, eps=1e-6, momentum=0.5, centered=True,
                                         weight_decay=0.01), None),
    ("rmsprop_groups", O.RMSprop, dict(lr=0.01, centered=True), dict(lr=0.002, momentum=0.9)),
    ("adamax", O.Adamax, dict(lr=0.02), None),
    ("adamax_wd", O.Adamax, dict(lr=0.02, betas=(0.8, 0.95), eps=1e-4, weight_decay=0.05), None),
    ("adamax_groups", O.Adamax, dict(lr=0.02), dict(lr=0.05, betas=(0.5, 0.99))),
    ("nadam", O.NAdam, dict(lr=0.01), None),
    ("nadam_wd", O.NAdam, dict(lr=0.02, betas=(0.8, 0.99), momentum_decay=8e-3, weight_decay=0.05),
     None),
    ("nadam_groups", O.NAdam, dict(lr=0.01), dict(lr=0.03, betas=(0.95, 0.9))),
]


def run_case(name, cls, opts0, opts1, out):
    p0 = INIT["p0"].clone().requires_grad_(True)
    p1 = INIT["p1"].clone().requires_grad_(True)
    if opts1 is None:
        opt = cls([p0, p1], **opts0)
    else:
        opt = cls([dict(params=[p0], **opts0), dict(params=[p1], **opts1)])
    traj0, traj1 = [], []
    for k in range(STEPS):
        p0.grad = GRADS["p0"][k].clone()
        p1.grad = None if k == SKIP_P1_AT else GRADS["p1"][k].clone()
        opt.step()
        traj0.append(p0.detach().clone())
        traj1.append(p1.detach().clone())
    out[name + ".p0"] = torch.stack(traj0)
    out[name + ".p1"] = torch.stack(traj1)
    for i, p in enumerate([p0, p1]):
        for key, value in opt.state[p].items():
            if torch.is_tensor(value) and value.dim() > 0:
                out[f"{name}.state.{i}.{key}"] = value.clone()


# ---- LR schedules: 30 steps, warmup 5, total 25 (the last 5 steps sit at the minimum), two groups
SCHED_STEPS, WARMUP, TOTAL, MIN_RATIO = 30, 5, 25, 0.1
BASE_LRS = (0.1, 0.01)


def schedule_lrs(make):
    """lr of each group at steps 0..SCHED_STEPS-1 (the lr the optimizer step at that index uses)."""
    p, q = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = O.SGD([dict(params=[p], lr=BASE_LRS[0]), dict(params=[q], lr=BASE_LRS[1])])
    sched = make(opt)
    lrs = []
    for _ in range(SCHED_STEPS):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return torch.tensor(lrs, dtype=torch.float64)


def warmup(opt):
    # factor (s + 1) / WARMUP for s < WARMUP, reaching 1 at s = WARMUP - 1
    return O.lr_scheduler.LinearLR(opt, start_factor=1.0 / WARMUP, end_factor=1.0,
                                   total_iters=WARMUP - 1)


def with_warmup(decay):
    def make(opt):
        # SequentialLR passes an epoch to step() at the milestone, which torch warns about.
        warnings.filterwarnings("ignore", message="The epoch parameter")
        first = warmup(opt)
        return O.lr_scheduler.SequentialLR(opt, [first, decay(opt)], milestones=[WARMUP])
    return make


def cosine_closed_form(s):
    if s < WARMUP:
        return (s + 1) / WARMUP
    t = min(s - WARMUP, TOTAL - WARMUP) / (TOTAL - WARMUP)
    return MIN_RATIO + (1 - MIN_RATIO) * 0.5 * (1 + math.cos(math.pi * t))


def linear_closed_form(s):
    if s < WARMUP:
        return (s + 1) / WARMUP
    t = min(s - WARMUP, TOTAL - WARMUP) / (TOTAL - WARMUP)
    return 1 - (1 - MIN_RATIO) * t


def schedules(out):
    cosine = schedule_lrs(lambda opt: O.lr_scheduler.LambdaLR(opt, cosine_closed_form))
    linear = schedule_lrs(lambda opt: O.lr_scheduler.LambdaLR(opt, linear_closed_form))
    # The closed forms agree with torch's own building blocks (warmup by LinearLR, then
    # CosineAnnealingLR or LinearLR). CosineAnnealingLR takes an absolute eta_min and is periodic
    # past T_max, so it is compared on group 0 up to TOTAL.
    cosine_torch = schedule_lrs(with_warmup(lambda opt: O.lr_scheduler.CosineAnnealingLR(
        opt, T_max=TOTAL - WARMUP, eta_min=BASE_LRS[0] * MIN_RATIO)))
    linear_torch = schedule_lrs(with_warmup(lambda opt: O.lr_scheduler.LinearLR(
        opt, start_factor=1.0, end_factor=MIN_RATIO, total_iters=TOTAL - WARMUP)))
    assert torch.allclose(cosine[:TOTAL + 1, 0], cosine_torch[:TOTAL + 1, 0], rtol=1e-14, atol=0)
    assert torch.allclose(linear, linear_torch, rtol=1e-14, atol=0)
    out["sched.warmup_cosine"] = cosine
    out["sched.warmup_linear"] = linear
    out["sched.warmup_constant"] = schedule_lrs(warmup)
    out["sched.step"] = schedule_lrs(lambda opt: O.lr_scheduler.StepLR(opt, step_size=7, gamma=0.3))
    # No warmup: torch's CosineAnnealingLR (group 0, up to TOTAL) and LinearLR.
    out["sched.cosine"] = schedule_lrs(lambda opt: O.lr_scheduler.CosineAnnealingLR(
        opt, T_max=TOTAL, eta_min=BASE_LRS[0] * MIN_RATIO))[:TOTAL + 1, 0].contiguous()
    out["sched.linear"] = schedule_lrs(lambda opt: O.lr_scheduler.LinearLR(
        opt, start_factor=1.0, end_factor=MIN_RATIO, total_iters=TOTAL))


# ---- gradient clipping: three gradients, one max_norm that clips and one that does not
def clipping(out):
    torch.manual_seed(7)
    grads = [torch.randn(4, 3), torch.randn(6), torch.randn(2, 2, 2) * 3]
    for i, g in enumerate(grads):
        out[f"clip.grad{i}"] = g.clone()
    for tag, max_norm in (("small", 1.5), ("large", 100.0)):
        ps = [torch.zeros_like(g, requires_grad=True) for g in grads]
        for p, g in zip(ps, grads):
            p.grad = g.clone()
        norm = torch.nn.utils.clip_grad_norm_(ps, max_norm)
        out[f"clip.norm_{tag}.total"] = norm.reshape(1)
        for i, p in enumerate(ps):
            out[f"clip.norm_{tag}.grad{i}"] = p.grad.clone()
    ps = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for p, g in zip(ps, grads):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_value_(ps, 0.75)
    for i, p in enumerate(ps):
        out[f"clip.value.grad{i}"] = p.grad.clone()


def main():
    out = {"init.p0": INIT["p0"], "init.p1": INIT["p1"], "grads.p0": GRADS["p0"],
           "grads.p1": GRADS["p1"]}
    for case in CASES:
        run_case(*case, out)
    schedules(out)
    clipping(out)
    path = os.path.join(HERE, "fixtures", "optim.safetensors")
    save_safetensors(path, out, metadata={"generator": "tests/reference/generate_optim.py",
                                          "torch": torch.__version__})
    print(f"wrote {path}: {len(out)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
