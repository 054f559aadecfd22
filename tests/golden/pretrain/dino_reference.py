#!/usr/bin/python3
"""dino_reference.py - a compact PyTorch transcription of DINO's training recipe (main_dino.py:
student/teacher ViT + DINOHead, multi-crop, centring and sharpening, AdamW with the lr / wd
cosine schedules, per-tensor clipping, last layer frozen in epoch 1, EMA teacher) for a
cross-check of `polyak pretrain`'s training dynamics, not run by the tests. Model: D 64,
depth 4, 4 heads, patch 7 on Fashion-MNIST (the first 2000 train / 2000 test images), head
512/256/1024, 2 + 4 crops, batch 64; augmentation without torchvision (bicubic resized crops,
flip, brightness/contrast jitter, blur, solarisation). Prints the teacher's k-NN (k 20,
T 0.07) per epoch. Usage: /usr/bin/python3 dino_reference.py [EPOCHS] [BASE_LR]

The same configuration in Polyak:
  polyak pretrain --dim 64 --depth 4 --heads 4 --patch 7 --local-size 14 --local-crops 4 \
      --hidden 512 --out-dim 1024 --train-limit 2000 --test-limit 2000 --epochs 30 --out DIR
"""
import gzip, math, struct, sys, time
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0); np.random.seed(0)
torch.set_num_threads(1)
def idx(p):
    b = gzip.open(p).read(); n = struct.unpack('>I', b[4:8])[0]
    if b[3] == 3: return np.frombuffer(b, np.uint8, offset=16).reshape(n, 28, 28)
    return np.frombuffer(b, np.uint8, offset=8)
D = '/usr/share/datasets/fashion-mnist/'
xtr = torch.tensor(idx(D + 'train-images-idx3-ubyte.gz')[:2000]).float() / 255
ytr = torch.tensor(idx(D + 'train-labels-idx1-ubyte.gz')[:2000]).long()
xte = torch.tensor(idx(D + 't10k-images-idx3-ubyte.gz')[:2000]).float() / 255
yte = torch.tensor(idx(D + 't10k-labels-idx1-ubyte.gz')[:2000]).long()
DIM, DEPTH, HEADS, P = 64, 4, 4, 7
class Block(nn.Module):
    def __init__(s):
        super().__init__(); s.n1 = nn.LayerNorm(DIM, eps=1e-6); s.qkv = nn.Linear(DIM, 3 * DIM); s.proj = nn.Linear(DIM, DIM)
        s.n2 = nn.LayerNorm(DIM, eps=1e-6); s.fc1 = nn.Linear(DIM, 4 * DIM); s.fc2 = nn.Linear(4 * DIM, DIM)
    def forward(s, x):
        B, T, C = x.shape
        q, k, v = s.qkv(s.n1(x)).reshape(B, T, 3, HEADS, C // HEADS).permute(2, 0, 3, 1, 4)
        a = (q @ k.transpose(-2, -1) * (C // HEADS) ** -0.5).softmax(-1)
        x = x + s.proj((a @ v).transpose(1, 2).reshape(B, T, C))
        return x + s.fc2(F.gelu(s.fc1(s.n2(x))))
class ViT(nn.Module):
    def __init__(s):
        super().__init__(); s.pe = nn.Conv2d(1, DIM, P, P); s.cls = nn.Parameter(torch.zeros(1, 1, DIM))
        s.pos = nn.Parameter(torch.zeros(1, 1 + 16, DIM)); s.blocks = nn.ModuleList([Block() for _ in range(DEPTH)]); s.norm = nn.LayerNorm(DIM, eps=1e-6)
        nn.init.trunc_normal_(s.pos, std=.02); nn.init.normal_(s.cls, std=1e-6)
        for m in s.modules():
            if isinstance(m, nn.Linear): nn.init.trunc_normal_(m.weight, std=.02); nn.init.zeros_(m.bias)
    def forward(s, x):
        B = x.shape[0]; x = s.pe(x); g = x.shape[-1]; x = x.flatten(2).transpose(1, 2)
        pos = s.pos[:, 1:]
        if g != 4: pos = F.interpolate(pos.reshape(1, 4, 4, DIM).permute(0, 3, 1, 2), size=(g, g), mode='bicubic', align_corners=False).permute(0, 2, 3, 1).reshape(1, g * g, DIM)
        x = torch.cat([s.cls.expand(B, -1, -1) + s.pos[:, :1], x + pos], 1)
        for b in s.blocks: x = b(x)
        return s.norm(x)[:, 0]
class Head(nn.Module):
    def __init__(s, K=1024, H=512, Bn=256):
        super().__init__(); s.mlp = nn.Sequential(nn.Linear(DIM, H), nn.GELU(), nn.Linear(H, H), nn.GELU(), nn.Linear(H, Bn))
        for m in s.mlp:
            if isinstance(m, nn.Linear): nn.init.trunc_normal_(m.weight, std=.02); nn.init.zeros_(m.bias)
        s.last = nn.utils.weight_norm(nn.Linear(Bn, K, bias=False)); s.last.weight_g.data.fill_(1); s.last.weight_g.requires_grad = False
    def forward(s, x): return s.last(F.normalize(s.mlp(x), dim=-1))
def rrc(img, size, scale):
    H = W = 28
    for _ in range(10):
        area = H * W * np.random.uniform(*scale); ar = math.exp(np.random.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = int(round(math.sqrt(area * ar))); h = int(round(math.sqrt(area / ar)))
        if 0 < w <= W and 0 < h <= H:
            i = np.random.randint(0, H - h + 1); j = np.random.randint(0, W - w + 1); break
    else: i, j, h, w = 0, 0, H, W
    c = img[i:i + h, j:j + w][None, None]
    return F.interpolate(c, size=(size, size), mode='bicubic', align_corners=False, antialias=True)[0].clamp(0, 1)
def view(img, size, scale, blur_p, sol_p):
    x = rrc(img, size, scale)
    if np.random.rand() < 0.5: x = x.flip(-1)
    if np.random.rand() < 0.8:
        for o in np.random.permutation(4):
            if o == 0: x = (x * np.random.uniform(0.6, 1.4)).clamp(0, 1)
            if o == 1: f = np.random.uniform(0.6, 1.4); x = (f * x + (1 - f) * x.mean()).clamp(0, 1)
    if np.random.rand() < blur_p:
        s = np.random.uniform(0.1, 2.0) * 28 / 224; r = max(1, math.ceil(3 * s)); k = torch.exp(-0.5 * (torch.arange(-r, r + 1) / s) ** 2); k = k / k.sum()
        x = F.conv2d(F.pad(x[None], (r, r, 0, 0), mode='replicate'), k.view(1, 1, 1, -1)); x = F.conv2d(F.pad(x, (0, 0, r, r), mode='replicate'), k.view(1, 1, -1, 1))[0]
    if np.random.rand() < sol_p: x = torch.where(x >= 0.5, 1 - x, x)
    return (x - 0.5) / 0.5
NL, B, EP = 4, 64, int(sys.argv[1]) if len(sys.argv) > 1 else 30
LR = float(sys.argv[2]) if len(sys.argv) > 2 else 5e-4
student, teacher = nn.Sequential(ViT(), Head()), nn.Sequential(ViT(), Head())
teacher.load_state_dict(student.state_dict())
for p in teacher.parameters(): p.requires_grad = False
reg = [p for n, p in student.named_parameters() if p.requires_grad and not (n.endswith('.bias') or p.ndim == 1)]
noreg = [p for n, p in student.named_parameters() if p.requires_grad and (n.endswith('.bias') or p.ndim == 1)]
opt = torch.optim.AdamW([{'params': reg}, {'params': noreg, 'weight_decay': 0.}])
niter = 2000 // B; total = EP * niter; warm = round(0.1 * EP * niter)
def cos(base, final, it, w):
    if it < w: return base * it / max(w - 1, 1)
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * (it - w) / (total - w)))
center = torch.zeros(1, 1024); wtemp = round(0.3 * EP)
temps = np.concatenate((np.linspace(0.04, 0.07, wtemp), np.ones(EP - wtemp) * 0.07))
@torch.no_grad()
def knn(model):
    ftr = F.normalize(torch.cat([model(((xtr[i:i + 500] - .5) / .5)[:, None]) for i in range(0, 2000, 500)]), dim=1)
    fte = F.normalize(torch.cat([model(((xte[i:i + 500] - .5) / .5)[:, None]) for i in range(0, 2000, 500)]), dim=1)
    sim = fte @ ftr.T; d, ix = sim.topk(20); votes = torch.zeros(2000, 10).scatter_add_(1, ytr[ix], (d / 0.07).exp())
    return (votes.argmax(1) == yte).float().mean().item()
print('random knn', knn(teacher[0]), flush=True)
it = 0
for ep in range(EP):
    perm = torch.randperm(2000); tl = 0; t0 = time.time()
    for s in range(niter):
        ims = xtr[perm[s * B:(s + 1) * B]]
        g0 = torch.stack([view(im, 28, (0.4, 1), 1.0, 0) for im in ims]); g1 = torch.stack([view(im, 28, (0.4, 1), 0.1, 0.2) for im in ims])
        loc = [torch.stack([view(im, 14, (0.05, 0.4), 0.5, 0) for im in ims]) for _ in range(NL)]
        lr = cos(5e-4 * 0 + LR * B / 256, 1e-6, it, warm); wd = cos(0.04, 0.4, it, 0)
        for i, pg in enumerate(opt.param_groups):
            pg['lr'] = lr
            if i == 0: pg['weight_decay'] = wd
        with torch.no_grad(): to = teacher(torch.cat([g0, g1]))
        so = student[1](torch.cat([student[0](torch.cat([g0, g1])), student[0](torch.cat(loc))]))
        q = F.softmax((to - center) / temps[ep], -1).chunk(2); ss = (so / 0.1).chunk(2 + NL)
        loss = 0; n = 0
        for a in range(2):
            for v in range(2 + NL):
                if v == a: continue
                loss = loss + torch.sum(-q[a] * F.log_softmax(ss[v], -1), -1).mean(); n += 1
        loss = loss / n
        center = center * 0.9 + to.sum(0, keepdim=True) / len(to) * 0.1
        opt.zero_grad(); loss.backward()
        for p in student.parameters():
            if p.grad is not None:
                c = 3.0 / (p.grad.norm() + 1e-6)
                if c < 1: p.grad.mul_(c)
        if ep < 1: student[1].last.weight_v.grad = None
        opt.step()
        m = 1 + 0.5 * (0.996 - 1) * (1 + math.cos(math.pi * it / total))
        with torch.no_grad():
            for ps, pt in zip(student.parameters(), teacher.parameters()): pt.mul_(m).add_((1 - m) * ps.detach())
        tl += loss.item(); it += 1
    print(f'epoch {ep + 1} loss {tl / niter:.4f} knn {knn(teacher[0]):.4f} ({time.time() - t0:.0f} s)', flush=True)
