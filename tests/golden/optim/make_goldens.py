#!/usr/bin/python3
"""make_goldens.py - writes the optimizer golden files that tests/optim/test_optim_golden.c
reads: random initial parameters, 50 steps of random gradients, and the parameter trajectories
of torch.optim.SGD / Adam / AdamW (PyTorch 1.13, Debian python3-torch) and of plain PyTorch
transcriptions, written here, of AdamP, SGDP, SPAM and Stable-SPAM and of AdamW with eps
inside the square root.

Run with /usr/bin/python3 (the one with torch) from anywhere; it writes next to itself:
  index.json        shapes, configs, snapshot steps, per-step projection / clip records
  *.f32             raw little-endian float32 arrays

Inputs are chosen so the interesting branches run: AdamP/SGDP gradients are made orthogonal to
the current weights per row (tensor A) or only for the whole tensor (tensor C), so both kinds of
projection trigger while tensor B (random gradients) is not projected; SPAM and Stable-SPAM get
huge gradients injected at fixed steps (spikes), and configs with DeltaT = 20 reset within 50
steps, next to the default configs.
"""
import json
import math
import os

import torch
import torch.nn.functional as F

torch.manual_seed(20261129)
torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = 50
SNAP = [1, 2, 5, 13, 21, 31, 41, 50]

# (name, shape): 2-D and 4-D tensors (rows = size(0)) and a vector
SHAPES = [("A", (12, 20)), ("B", (6, 3, 3, 3)), ("C", (4, 40)), ("v", (24,))]
NUMEL = [math.prod(s) for _, s in SHAPES]
TOTAL = sum(NUMEL)


def split(flat):
    out, o = [], 0
    for (_, s), n in zip(SHAPES, NUMEL):
        out.append(flat[o:o + n].view(s).clone())
        o += n
    return out


def flat(ts):
    return torch.cat([t.detach().reshape(-1) for t in ts])


init = torch.randn(TOTAL, dtype=torch.float32)
raw_grads = torch.randn(STEPS, TOTAL, dtype=torch.float32)
# spikes for SPAM / Stable-SPAM: (step (1-based), flat index, value)
SPIKES = [(12, 7, 3000.0), (30, 300, -5000.0), (33, 500, 4000.0), (47, 20, 2500.0)]
spiky_grads = raw_grads.clone()
for st, idx, val in SPIKES:
    spiky_grads[st - 1, idx] = val


def orthogonal_grads(ws, g):
    """Gradients for AdamP/SGDP: A orthogonal to w per row, C orthogonal to w as a whole."""
    gs = split(g)
    a, w = gs[0], ws[0].detach()
    a = a - w * (a * w).sum(dim=1, keepdim=True) / (w * w).sum(dim=1, keepdim=True)
    c, wc = gs[2], ws[2].detach()
    c = c - wc * (c * wc).sum() / (wc * wc).sum()
    return [a, gs[1], c, gs[3]]


def run_torch(make_opt, grads):
    ps = [torch.nn.Parameter(t) for t in split(init.clone())]
    opt = make_opt(ps)
    snaps = []
    for k in range(STEPS):
        for p, g in zip(ps, split(grads[k])):
            p.grad = g.clone()
        opt.step()
        if k + 1 in SNAP:
            snaps.append(flat(ps))
    return torch.stack(snaps), None, grads


# ---------------------------------------------------------------------------------------------
# Transcriptions. Each takes the list of tensors and the 1-based step; each keeps its own state.

class AdamWInside:
    """AdamW with eps inside the square root: denom = sqrt(v / bc2 + eps) (the option Polyak
    offers next to torch's sqrt(v)/sqrt(bc2) + eps). Otherwise torch.optim.AdamW 1.13
    (_single_tensor_adamw): decay, moments, bias corrections."""

    def __init__(self, ps, lr, betas, eps, wd):
        self.ps, self.lr, self.b1, self.b2, self.eps, self.wd = ps, lr, *betas, eps, wd
        self.m = [torch.zeros_like(p) for p in ps]
        self.v = [torch.zeros_like(p) for p in ps]

    def step(self, t, grads):
        for p, g, m, v in zip(self.ps, grads, self.m, self.v):
            p.mul_(1 - self.lr * self.wd)
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            bc1, bc2 = 1 - self.b1 ** t, 1 - self.b2 ** t
            denom = (v / bc2).add_(self.eps).sqrt_()
            p.addcdiv_(m, denom, value=-self.lr / bc1)
        return None


def _cos_abs(x, y, eps, rows):
    # clovaai/AdamP adamp.py _cosine_similarity: F.cosine_similarity over the view, abs
    if rows:
        return F.cosine_similarity(x.view(x.size(0), -1), y.view(y.size(0), -1), dim=1,
                                   eps=eps).abs_()
    return F.cosine_similarity(x.view(1, -1), y.view(1, -1), dim=1, eps=eps).abs_()


def _projection(p, grad, perturb, delta, wd_ratio, eps):
    """clovaai/AdamP adamp.py _projection: channel view first, then the layer view; the first
    view whose max |cos(g, w)| < delta / sqrt(view size(1)) projects and sets wd = wd_ratio.
    Returns (perturb, wd, mode) with mode 1 = per row, 2 = whole tensor, 0 = none."""
    expand = [-1] + [1] * (p.dim() - 1)
    for mode, rows in ((1, True), (2, False)):
        cos = _cos_abs(grad, p, eps, rows)
        size1 = p[0].numel() if rows else p.numel()
        if cos.max() < delta / math.sqrt(size1):
            view = (lambda x: x.view(x.size(0), -1)) if rows else (lambda x: x.view(1, -1))
            p_n = p / view(p).norm(dim=1).view(expand if rows else [1] * p.dim()).add_(eps)
            dot = view(p_n * perturb).sum(dim=1)
            perturb = perturb - p_n * dot.view(expand if rows else [1] * p.dim())
            return perturb, wd_ratio, mode
    return perturb, 1.0, 0


class AdamP:
    """clovaai/AdamP adamp/adamp.py (defaults delta 0.1, wd_ratio 0.1, eps 1e-8)."""

    def __init__(self, ps, lr, betas=(0.9, 0.999), eps=1e-8, wd=0.0, delta=0.1, wd_ratio=0.1,
                 nesterov=False):
        self.ps, self.lr, self.b1, self.b2 = ps, lr, *betas
        self.eps, self.wd, self.delta, self.wd_ratio, self.nesterov = eps, wd, delta, wd_ratio, nesterov
        self.m = [torch.zeros_like(p) for p in ps]
        self.v = [torch.zeros_like(p) for p in ps]

    def step(self, t, grads):
        modes = []
        for p, g, m, v in zip(self.ps, grads, self.m, self.v):
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            bc1, bc2 = 1 - self.b1 ** t, 1 - self.b2 ** t
            denom = (v.sqrt() / math.sqrt(bc2)).add_(self.eps)
            step_size = self.lr / bc1
            if self.nesterov:
                perturb = (self.b1 * m + (1 - self.b1) * g) / denom
            else:
                perturb = m / denom
            wd_ratio, mode = 1.0, 0
            if p.dim() > 1:
                perturb, wd_ratio, mode = _projection(p, g, perturb, self.delta, self.wd_ratio,
                                                      self.eps)
            modes.append(mode)
            if self.wd > 0:
                p.mul_(1 - self.lr * self.wd * wd_ratio)
            p.add_(perturb, alpha=-step_size)
        return modes


class SGDP:
    """clovaai/AdamP adamp/sgdp.py: the buffer starts at zero (no first-step clone) and the
    decay is divided by (1 - momentum)."""

    def __init__(self, ps, lr, momentum=0.0, dampening=0.0, wd=0.0, nesterov=False, eps=1e-8,
                 delta=0.1, wd_ratio=0.1):
        self.ps, self.lr, self.mom, self.damp, self.wd = ps, lr, momentum, dampening, wd
        self.nesterov, self.eps, self.delta, self.wd_ratio = nesterov, eps, delta, wd_ratio
        self.buf = [torch.zeros_like(p) for p in ps]

    def step(self, t, grads):
        modes = []
        for p, g, buf in zip(self.ps, grads, self.buf):
            buf.mul_(self.mom).add_(g, alpha=1 - self.damp)
            d_p = g + self.mom * buf if self.nesterov else buf.clone()
            wd_ratio, mode = 1.0, 0
            if p.dim() > 1:
                d_p, wd_ratio, mode = _projection(p, g, d_p, self.delta, self.wd_ratio, self.eps)
            modes.append(mode)
            if self.wd > 0:
                p.mul_(1 - self.lr * self.wd * wd_ratio / (1 - self.mom))
            p.add_(d_p, alpha=-self.lr)
        return modes


class SPAM:
    """TianjinYellow/SPAM-Optimizer, dense (density 1). Defaults from its code: DeltaT 500,
    threshold 5000, warmup_steps 150, grad_accu_steps 20, eps 1e-6. Read in a mirror of the
    official spam.py ("mirrored from the SPAM-Optimizer repository"), checked against
    REFERENCE.md and kozistr/pytorch_optimizer's port:
    - the step counter (bias correction) is never reset; exp_avg/exp_avg_sq are zeroed on
      steps t with t % DeltaT == 0;
    - a gradient is clipped where g^2 > threshold * v (v before this step's update) to
      sign(g) sqrt(threshold v), only when t >= grad_accu and t % DeltaT >= grad_accu;
    - the step size is lr sqrt(bc2)/bc1 times scale = 1 - CosineDecay(0.99, W): the counter is
      set to 0 at the end of step t with (t+1) % DeltaT == 0 and starts at W+1; CosineDecay is
      CosineAnnealingLR(T_max = W+1) stepped with the epoch argument, i.e. its closed form
      0.99 (1 + cos(pi c/(W+1)))/2 for c < W, 0 for c >= W (kozistr's port steps it once more,
      shifting the ramp by one step);
    - norm_grad = m / (sqrt(v) + eps); p.add_(norm_grad, alpha=-step_size * scale);
      decoupled decay p += -lr wd p after the step (only when wd > 0)."""

    def __init__(self, ps, lr, betas=(0.9, 0.999), eps=1e-6, wd=0.0, threshold=5000,
                 delta_t=500, warmup=150, grad_accu=20):
        self.ps, self.lr, self.b1, self.b2, self.eps, self.wd = ps, lr, *betas, eps, wd
        self.thr, self.dt, self.w, self.ga = threshold, delta_t, warmup, grad_accu
        self.m = [torch.zeros_like(p) for p in ps]
        self.v = [torch.zeros_like(p) for p in ps]
        self.counter = warmup + 1
        self.total = 0

    def death_rate(self, c):
        if c >= self.w:
            return 0.0
        return 0.99 * (1 + math.cos(math.pi * c / (self.w + 1))) / 2

    def step(self, t, grads):
        scale = 1.0 - self.death_rate(self.counter)
        clipped = 0
        for p, g, m, v in zip(self.ps, grads, self.m, self.v):
            g = g.clone()
            if (self.total + 1) % self.dt == 0:
                m.zero_()
                v.zero_()
            cur = self.total + 1
            if cur >= self.ga and cur % self.dt >= self.ga:
                mask = g.pow(2) > self.thr * v
                clipped += int(mask.sum())
                g[mask] = g[mask].sign() * torch.sqrt(v[mask] * self.thr)
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            denom = v.sqrt().add_(self.eps)
            bc1, bc2 = 1 - self.b1 ** t, 1 - self.b2 ** t
            step_size = self.lr * math.sqrt(bc2) / bc1
            norm_grad = m / denom
            p.add_(norm_grad, alpha=-step_size * scale)
            if self.wd > 0:
                p.add_(p, alpha=-self.lr * self.wd)
        self.total += 1
        self.counter += 1
        if self.total != 0 and (self.total + 1) % self.dt == 0:
            self.counter = 0
        return clipped


class StableSPAM:
    """TianjinYellow/StableSPAM (paper arXiv 2502.17055) as ported in kozistr/pytorch_optimizer
    spam.py StableSPAM (the official optimizer source was not available offline), without the
    optional beta1 cosine decay (t_max None). Defaults gamma1 0.7, gamma2 0.9, theta 0.999,
    DeltaT (update_proj_gap) 1000, eps 1e-8. Per tensor, per step t (global count):
      p *= 1 - lr wd
      M = lerp(M, max|g|, 1 - theta); M_hat = M / (1 - theta^t)
      g = g / max|g| * M_hat where |g| > M_hat
      n = |g|; skip the tensor if n == 0
      m_n = lerp(m_n, n, 1 - gamma1); v_n = lerp(v_n, n^2, 1 - gamma2)
      g = g / n * (m_n / (1 - gamma1^t)) / (sqrt(v_n / (1 - gamma2^t)) + eps)
      Adam: m = lerp(m, g, 1 - beta1), v = beta2 v + (1 - beta2) g^2,
            p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
    with Adam's own step reset to 1 (and m, v zeroed) when t % DeltaT == 0."""

    def __init__(self, ps, lr, betas=(0.9, 0.999), gamma1=0.7, gamma2=0.9, theta=0.999,
                 eps=1e-8, wd=0.0, delta_t=1000):
        self.ps, self.lr, self.b1, self.b2 = ps, lr, *betas
        self.g1, self.g2, self.theta, self.eps, self.wd, self.dt = gamma1, gamma2, theta, eps, wd, delta_t
        self.m = [torch.zeros_like(p) for p in ps]
        self.v = [torch.zeros_like(p) for p in ps]
        self.mn = [torch.zeros(1) for _ in ps]
        self.vn = [torch.zeros(1) for _ in ps]
        self.mm = [torch.zeros(1) for _ in ps]
        self.astep = 0

    def step(self, t, grads):
        if t % self.dt == 0:
            self.astep = 1
            for m, v in zip(self.m, self.v):
                m.zero_()
                v.zero_()
        else:
            self.astep += 1
        bc1, bc2 = 1 - self.b1 ** self.astep, 1 - self.b2 ** self.astep
        step_size = self.lr / bc1
        theta_t = 1 - self.theta ** t
        clipped = 0
        for i, (p, g) in enumerate(zip(self.ps, grads)):
            g = g.clone()
            p.mul_(1 - self.wd * self.lr)
            max_g = torch.max(g.abs())
            self.mm[i].lerp_(max_g.view(1), 1 - self.theta)
            m_hat = self.mm[i] / theta_t
            mask = g.abs() > m_hat
            clipped += int(mask.sum())
            if mask.sum() > 0:
                g[mask] = g[mask] / max_g * m_hat
            n = torch.linalg.norm(g)
            if n == 0:
                continue
            self.mn[i].lerp_(n.view(1), 1 - self.g1)
            self.vn[i].lerp_(n.pow(2).view(1), 1 - self.g2)
            mnh = self.mn[i] / (1 - self.g1 ** t)
            vnh = self.vn[i] / (1 - self.g2 ** t)
            c = mnh / (vnh.sqrt() + self.eps)
            g = g / n * c
            self.m[i].lerp_(g, 1 - self.b1)
            self.v[i].mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            denom = (self.v[i].sqrt() / math.sqrt(bc2)).add_(self.eps)
            p.addcdiv_(self.m[i], denom, value=-step_size)
        return clipped


def run_transcription(make_opt, grads, grad_fn=None):
    ps = [t.clone() for t in split(init.clone())]
    opt = make_opt(ps)
    snaps, records, used = [], [], []
    for k in range(STEPS):
        gs = grad_fn(ps, grads[k]) if grad_fn else split(grads[k])
        used.append(flat(gs))
        records.append(opt.step(k + 1, gs))
        if k + 1 in SNAP:
            snaps.append(flat(ps))
    return torch.stack(snaps), records, torch.stack(used)


CONFIGS = []


def add(name, kind, hp, runner, grads_name):
    snaps, records, used = runner
    CONFIGS.append(dict(name=name, kind=kind, hp=hp, grads=grads_name, snaps=snaps,
                        records=records, used=used))


O = torch.optim
# torch.optim.SGD: plain, momentum, momentum + dampening + wd, Nesterov + wd
for name, hp in [("sgd_plain", dict(lr=0.05)),
                 ("sgd_momentum", dict(lr=0.05, momentum=0.9)),
                 ("sgd_damp_wd", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=1e-2)),
                 ("sgd_nesterov_wd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-3))]:
    add(name, "sgd", hp, run_torch(lambda ps, hp=hp: O.SGD(ps, **hp), raw_grads), "raw")
# torch.optim.AdamW / Adam (amsgrad off)
for name, hp in [("adamw_default", dict(lr=1e-2, weight_decay=1e-2)),
                 ("adamw_eps15", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-15, weight_decay=0.0)),
                 ("adamw_eps15_wd", dict(lr=1e-3, eps=1e-15, weight_decay=0.1))]:
    add(name, "adamw", hp, run_torch(lambda ps, hp=hp: O.AdamW(ps, amsgrad=False, **hp),
                                     raw_grads), "raw")
add("adam_l2", "adam", dict(lr=1e-2, weight_decay=1e-2),
    run_torch(lambda ps: O.Adam(ps, lr=1e-2, weight_decay=1e-2), raw_grads), "raw")
add("adamw_eps_inside", "adamw_inside", dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2),
    run_transcription(lambda ps: AdamWInside(ps, 1e-2, (0.9, 0.999), 1e-8, 1e-2), raw_grads), "raw")
# AdamP / SGDP with orthogonalised gradients (their own per-config gradients are stored).
# SGDP uses lr 0.01 with momentum 0.9 (effective 0.1): at 0.05 the weights grow 8x in 50 steps
# and the test would measure rounding amplification rather than the algorithm.
add("adamp", "adamp", dict(lr=1e-2, weight_decay=1e-2),
    run_transcription(lambda ps: AdamP(ps, 1e-2, wd=1e-2), raw_grads, orthogonal_grads), "own")
add("adamp_nesterov", "adamp", dict(lr=1e-2, weight_decay=5e-2, nesterov=True),
    run_transcription(lambda ps: AdamP(ps, 1e-2, wd=5e-2, nesterov=True), raw_grads,
                      orthogonal_grads), "own")
add("sgdp", "sgdp", dict(lr=0.01, momentum=0.9, weight_decay=1e-2),
    run_transcription(lambda ps: SGDP(ps, 0.01, momentum=0.9, wd=1e-2), raw_grads,
                      orthogonal_grads), "own")
add("sgdp_nesterov_damp", "sgdp", dict(lr=0.01, momentum=0.9, dampening=0.0, nesterov=True,
                                       weight_decay=1e-3),
    run_transcription(lambda ps: SGDP(ps, 0.01, momentum=0.9, wd=1e-3, nesterov=True), raw_grads,
                      orthogonal_grads), "own")
add("sgdp_damp", "sgdp", dict(lr=0.01, momentum=0.8, dampening=0.2, weight_decay=1e-2),
    run_transcription(lambda ps: SGDP(ps, 0.01, momentum=0.8, dampening=0.2, wd=1e-2), raw_grads,
                      orthogonal_grads), "own")
# SPAM: small DeltaT (resets at 20 and 40, warmup 10, clipping from 5 steps after a reset)
# and the defaults (no reset within 50 steps, clipping from step 20)
add("spam_dt20", "spam", dict(lr=1e-2, weight_decay=1e-2, delta_t=20, warmup=10, grad_accu=5),
    run_transcription(lambda ps: SPAM(ps, 1e-2, wd=1e-2, delta_t=20, warmup=10, grad_accu=5),
                      spiky_grads), "spiky")
add("spam_default", "spam", dict(lr=1e-2),
    run_transcription(lambda ps: SPAM(ps, 1e-2), spiky_grads), "spiky")
add("stable_spam_dt20", "stable_spam", dict(lr=1e-2, weight_decay=1e-2, delta_t=20),
    run_transcription(lambda ps: StableSPAM(ps, 1e-2, wd=1e-2, delta_t=20), spiky_grads), "spiky")
add("stable_spam_default", "stable_spam", dict(lr=1e-2),
    run_transcription(lambda ps: StableSPAM(ps, 1e-2), spiky_grads), "spiky")


def write(name, t):
    t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tofile(os.path.join(HERE, name))
    return name


# EMA teacher: torch's own lerp_ (both weight branches) and mul_ + add_(alpha) per source
TEACHER_N = 4099
teacher_t = torch.randn(TEACHER_N) * 3
teacher_s = [torch.randn(TEACHER_N) * 3 for _ in range(2)]
teacher_cases = []
for m in (0.996, 0.2):
    out = teacher_t.clone().lerp_(teacher_s[0], 1 - m)
    teacher_cases.append(dict(kind="lerp", m=m, weights=[1 - m], out=out))
out = teacher_t.clone().mul_(0.9).add_(teacher_s[0], alpha=0.05).add_(teacher_s[1], alpha=0.05)
teacher_cases.append(dict(kind="mul_add", m=0.9, weights=[0.05, 0.05], out=out))

index = dict(
    generator="tests/golden/optim/make_goldens.py",
    torch=torch.__version__,
    steps=STEPS,
    snapshot_steps=SNAP,
    tensors=[dict(name=n, shape=list(s), numel=k) for (n, s), k in zip(SHAPES, NUMEL)],
    total=TOTAL,
    spikes=SPIKES,
    init=write("init.f32", init),
    raw_grads=write("grads_raw.f32", raw_grads),
    spiky_grads=write("grads_spiky.f32", spiky_grads),
    configs=[],
)
index["teacher"] = dict(n=TEACHER_N, t=write("teacher_t.f32", teacher_t),
                        s=[write("teacher_s%d.f32" % i, x) for i, x in enumerate(teacher_s)],
                        cases=[dict(kind=c["kind"], m=c["m"], weights=c["weights"],
                                    out=write("teacher_out%d.f32" % i, c["out"]))
                               for i, c in enumerate(teacher_cases)])
for c in CONFIGS:
    e = dict(name=c["name"], kind=c["kind"], hp=c["hp"],
             snapshots=write("traj_%s.f32" % c["name"], c["snaps"]))
    if c["grads"] == "own":
        e["grads"] = write("grads_%s.f32" % c["name"], c["used"])
    else:
        e["grads"] = index[c["grads"] + "_grads"]
    if c["records"] is not None and c["records"][0] is not None:
        e["records"] = c["records"]
    index["configs"].append(e)
with open(os.path.join(HERE, "index.json"), "w") as f:
    json.dump(index, f, indent=1)
    f.write("\n")
for c in CONFIGS:
    if c["records"] and c["records"][0] is not None:
        r = c["records"]
        print(c["name"], "records:", [(k + 1, x) for k, x in enumerate(r) if x and (not isinstance(x, list) or any(x))][:12])
