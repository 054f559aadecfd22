#!/usr/bin/python3
"""peer_ops.py - PyTorch CPU timings of the shapes `polyak bench ops` measures, as JSON on
stdout: {"name": median_ms, ...}. Run by the benchmark with the same thread count."""
import json
import sys
import time

import torch
import torch.nn.functional as F

threads = int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads()
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
torch.set_num_threads(threads)
torch.manual_seed(0)


def median_ms(fn):
    fn()  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return ts[len(ts) // 2]


out = {}
for n in (1024, 2048):
    a, b = torch.rand(n, n), torch.rand(n, n)
    out[f"gemm{n}"] = median_ms(lambda: a @ b)

for name, (N, C, H, K, S) in {
    "conv3x3_64x32x32": (32, 64, 32, 3, 1),
    "conv3x3_128x16x16": (32, 128, 16, 3, 1),
    "conv3x3_s2_64x32x32": (32, 64, 32, 3, 2),
    "conv1x1_256x8x8": (32, 256, 8, 1, 1),
}.items():
    x = torch.rand(N, C, H, H, requires_grad=True)
    w = torch.rand(C, C, K, K, requires_grad=True)

    def conv():
        y = F.conv2d(x, w, stride=S, padding=K // 2)
        y.backward(torch.ones_like(y))

    out[name] = median_ms(conv)

x = torch.rand(4096, 768, requires_grad=True)
g, b = torch.rand(768, requires_grad=True), torch.rand(768, requires_grad=True)


def ln():
    y = F.layer_norm(x, (768,), g, b)
    y.backward(torch.ones_like(y))


out["layernorm_4096x768"] = median_ms(ln)
s = torch.rand(4096, 1024, requires_grad=True)
up = torch.rand(4096, 1024)


def sm():
    y = torch.softmax(s, dim=1)
    y.backward(up)


out["softmax_4096x1024"] = median_ms(sm)
print(json.dumps(out))
