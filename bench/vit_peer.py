#!/usr/bin/python3
"""vit_peer.py - the PyTorch 1.13 CPU peer of `polyak bench vit`: one ViT training step
(forward, cross-entropy on a 10-class head over the class token, backward, AdamW step) timed
after a warm-up, printed as JSON {"config", "batch", "threads", "step_seconds": [...],
"cpu_seconds": [...]} (wall and process CPU time of each timed step).

The model is a transcription of timm's VisionTransformer (not an import of timm): patch
embedding by a Conv2d with kernel = stride = patch, a class token, an absolute position
embedding, pre-norm blocks x += proj(attention(qkv(norm1(x)))), x += fc2(gelu_erf(fc1(
norm2(x)))), the attention written as timm's Attention of the PyTorch 1.13 era
(q k^T * scale, softmax, @ v), a final LayerNorm (eps 1e-6) and a linear head on the class
token.

usage: vit_peer.py --config nano|small [--batch B] [--threads T] [--steps N] [--warmup W]"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {  # img, in_chans, patch, dim, depth, heads, mlp hidden
    "nano": (28, 1, 4, 128, 6, 4, 512),  # vit_nano_patch4_28 on Fashion-MNIST
    "small": (224, 3, 16, 384, 12, 6, 1536),  # vit_small_patch16_224
}


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):  # (B, N, D)
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, H, N, D/H) each
        a = (q @ k.transpose(-2, -1)) * self.scale
        a = a.softmax(dim=-1)
        x = (a @ v).transpose(1, 2).reshape(B, N, D)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))  # GELU(erf), timm's nn.GELU default


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
    def __init__(self, chans, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(chans, dim, patch, stride=patch)

    def forward(self, x):  # (B, C, H, W) -> (B, L, D)
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    def __init__(self, img, chans, patch, dim, depth, heads, hidden, classes):
        super().__init__()
        grid = img // patch
        self.patch_embed = PatchEmbed(chans, patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", choices=sorted(CONFIGS), required=True)
    ap.add_argument("--batch", type=int, default=0, help="0: 64 for nano, 8 for small")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    img, chans, patch, dim, depth, heads, hidden = CONFIGS[a.config]
    batch = a.batch or (64 if a.config == "nano" else 8)
    model = VisionTransformer(img, chans, patch, dim, depth, heads, hidden, 10)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    x = torch.randn(batch, chans, img, img)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    wall, cpu = [], []
    for _ in range(a.steps):
        t0, c0 = time.perf_counter(), cpu_seconds()
        loss = step()
        wall.append(time.perf_counter() - t0)
        cpu.append(cpu_seconds() - c0)
    assert math.isfinite(loss)
    print(json.dumps({"config": a.config, "batch": batch, "threads": a.threads,
                      "step_seconds": [round(t, 6) for t in wall],
                      "cpu_seconds": [round(t, 6) for t in cpu]}))


if __name__ == "__main__":
    main()
