#!/usr/bin/python3
"""attention_torch.py - PyTorch 1.13's CPU time for the attention that bench/roofline/attention.c
times in Polyak: forward + backward at the same sizes and inputs' shapes, both ways in:
  heads: q, k, v (B*H, T, d) each: softmax(q k^T * scale) v (PyTorch 1.13 has no fused
         scaled_dot_product_attention; this is what timm runs there);
  qkv:   timm's Attention.forward after the qkv projection: (B, T, 3*H*d) -> (B, T, H*d).
Median over REPS steps of process CPU time and wall time, in ms.
usage: /usr/bin/python3 bench/roofline/attention_torch.py [THREADS [REPS]]"""
import sys
import time

import torch

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 9
torch.set_num_threads(threads)


def heads(q, k, v, scale):
    return torch.softmax(q @ k.transpose(-2, -1) * scale, -1) @ v


def qkv_attention(x, h, scale):
    b, t, c3 = x.shape
    x = x.reshape(b, t, 3, h, c3 // (3 * h)).permute(2, 0, 3, 1, 4)
    q, k, v = x.unbind(0)
    o = torch.softmax(q @ k.transpose(-2, -1) * scale, -1) @ v
    return o.transpose(1, 2).reshape(b, t, c3 // 3)


def run(variant, b, t, h, d):
    cpu, wall = [], []
    scale = d ** -0.5
    for r in range(reps + 1):
        if variant == "heads":
            ins = [(torch.rand(b * h, t, d) * 2 - 1).requires_grad_() for _ in range(3)]
        else:
            ins = [(torch.rand(b, t, 3 * h * d) * 2 - 1).requires_grad_()]
        c0, w0 = time.process_time(), time.perf_counter()
        out = heads(*ins, scale) if variant == "heads" else qkv_attention(ins[0], h, scale)
        out.backward(torch.full_like(out, 0.01))
        if r:
            cpu.append(1e3 * (time.process_time() - c0))
            wall.append(1e3 * (time.perf_counter() - w0))
    cpu.sort()
    wall.sort()
    return cpu[reps // 2], wall[reps // 2]


sizes = [("vit 28x28/4 (B=64, T=50, H=4, d=32)", 64, 50, 4, 32),
         ("vit_small/16 (B=8, T=197, H=6, d=64)", 8, 197, 6, 64)]
print(f"PyTorch {torch.__version__}, {threads} thread(s), median of {reps} steps, "
      "ms per forward + backward (process CPU / wall)")
for name, b, t, h, d in sizes:
    for variant in ("heads", "qkv"):
        c, w = run(variant, b, t, h, d)
        print(f"{name:38s} {variant:5s} {c:8.2f} / {w:7.2f}")
