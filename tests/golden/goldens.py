"""goldens.py - shared writer for Polyak's golden files (run with Debian's /usr/bin/python3).

Format (little-endian): b"PKG1", u32 count, then per array: u32 name length, name bytes,
u32 ndim, i64 dims[ndim], f32 data[numel]. Index tensors are stored as floats (exact for the
small integers used) under "<case>.idx<i>".

A case is (prefix, inputs, fn): inputs is a list of torch tensors; float tensors with
requires_grad get a "<prefix>.grad<i>" array; fn(*inputs) returns the output tensor. The
upstream gradient "<prefix>.up" is random, so every element of every gradient is exercised.
"""
import struct

import torch


def rand(*shape, lo=-1.0, hi=1.0, grad=True, gen=None):
    """Uniform random float tensor kept away from zero (|x| >= 0.05 when the range straddles 0)."""
    x = torch.rand(*shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo
    if lo < -0.1 and hi > 0.1:
        small = x.abs() < 0.05
        x = torch.where(small, torch.sign(x) * 0.05 + x, x)
    x = x.float()
    if grad:
        x.requires_grad_(True)
    return x


def write(path, cases, seed=0):
    gen = torch.Generator().manual_seed(seed)
    arrays = []
    for prefix, inputs, fn in cases:
        out = fn(*inputs)
        up = torch.rand(out.shape, generator=gen) * 2 - 1
        grads = [x for x in inputs if x.dtype == torch.float32 and x.requires_grad]
        gs = torch.autograd.grad(out, grads, up, allow_unused=True) if grads else []
        gi = iter(gs)
        for i, x in enumerate(inputs):
            if x.dtype == torch.float32:
                arrays.append((f"{prefix}.in{i}", x.detach()))
                if x.requires_grad:
                    g = next(gi)
                    arrays.append((f"{prefix}.grad{i}", torch.zeros_like(x) if g is None else g))
            else:
                arrays.append((f"{prefix}.idx{i}", x.float()))
        arrays.append((f"{prefix}.up", up))
        arrays.append((f"{prefix}.out", out.detach()))
    with open(path, "wb") as f:
        f.write(b"PKG1")
        f.write(struct.pack("<I", len(arrays)))
        for name, t in arrays:
            t = t.detach().contiguous().float()
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)))
            f.write(nb)
            f.write(struct.pack("<I", t.dim()))
            for d in t.shape:
                f.write(struct.pack("<q", d))
            f.write(t.numpy().astype("<f4").tobytes())
