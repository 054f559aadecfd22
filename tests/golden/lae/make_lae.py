#!/usr/bin/python3
"""make_lae.py - golden values for tests/lae/test_lae.c, written with PyTorch (Debian's
python3-torch, /usr/bin/python3): transcriptions of gqk/LAE's KVLoRA.forward
(libml/model/pet/lora.py), and of its Attention.forward with a Prefix attached
(libml/model/backbone/vit.py, libml/model/pet/prefix.py, prompt.py: tokens inserted after
the class token, each scaled by its learnable Scaler, and the prefix attention divided by its
own sum after the softmax). Writes lae.bin in the PKG1 format of ../goldens.py.

Arrays: lora<i>.{cfg,h,W,b,Ak,Bk,Av,Bv,s,up,out,grad_h,grad_Ak,grad_Bk,grad_Av,grad_Bv,grad_s}
with out = the qkv projection (N, T, 3D); prefix<i>.{cfg,qkv,key,val,s,up,out,grad_qkv,
grad_key,grad_val,grad_s} with out the attention before attn.proj (N, T, D)."""
import os
import struct

import torch
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))


def kv_lora(h, W, b, Ak, Bk, Av, Bv, s):
    # KVLoRA.forward: weight = cat([s(B @ A) for k, v]); zeros for the q rows
    weight = torch.cat([s[0] * (Bk @ Ak), s[1] * (Bv @ Av)], dim=0)
    zeros = torch.zeros_like(W)[: -weight.shape[0]]
    weight = torch.cat([zeros, weight], dim=0)
    return F.linear(h, W + weight, b)


def prefix_attention(qkv, key, val, s, heads):
    B, N, C3 = qkv.shape
    C = C3 // 3
    q, k, v = qkv.chunk(3, dim=-1)
    L = key.shape[0]
    # Prompt.forward with position 1: cat([x[:, :1], tokens, x[:, 1:]])
    kt = (key * s[0]).expand(B, -1, -1)
    vt = (val * s[1]).expand(B, -1, -1)
    k = torch.cat([k[:, :1], kt, k[:, 1:]], dim=1)
    v = torch.cat([v[:, :1], vt, v[:, 1:]], dim=1)
    q = q.reshape(B, N, heads, C // heads).permute(0, 2, 1, 3)
    k = k.reshape(B, -1, heads, C // heads).permute(0, 2, 1, 3)
    v = v.reshape(B, -1, heads, C // heads).permute(0, 2, 1, 3)
    attn = (q @ k.transpose(-2, -1)) * (C // heads) ** -0.5
    attn = attn.softmax(dim=-1)
    # Prefix.compensate
    st, t = 1, 1 + L
    lamb = attn[..., st:t].sum(dim=-1, keepdim=True)
    attn = torch.cat([attn[..., :st], attn[..., st:t] / lamb.clamp(min=1e-12), attn[..., t:]], dim=-1)
    return (attn @ v).transpose(1, 2).reshape(B, N, C)


def main():
    gen = torch.Generator().manual_seed(13)
    arrays = []

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).requires_grad_(True)

    for i, (n, t, d, r) in enumerate([(2, 5, 8, 3), (3, 17, 16, 5)]):
        h = rnd(n, t, d)
        W = torch.randn(3 * d, d, generator=gen) * 0.3
        b = torch.randn(3 * d, generator=gen) * 0.1
        Ak, Bk, Av, Bv = rnd(r, d, scale=0.4), rnd(d, r, scale=0.4), rnd(r, d, scale=0.4), rnd(d, r, scale=0.4)
        s = (torch.rand(2, generator=gen) + 0.5).requires_grad_(True)
        out = kv_lora(h, W, b, Ak, Bk, Av, Bv, s)
        up = torch.randn(out.shape, generator=gen)
        gs = torch.autograd.grad(out, [h, Ak, Bk, Av, Bv, s], up)
        p = f"lora{i}"
        arrays += [(f"{p}.cfg", torch.tensor([n, t, d, r])), (f"{p}.h", h), (f"{p}.W", W), (f"{p}.b", b),
                   (f"{p}.Ak", Ak), (f"{p}.Bk", Bk), (f"{p}.Av", Av), (f"{p}.Bv", Bv), (f"{p}.s", s),
                   (f"{p}.up", up), (f"{p}.out", out)]
        arrays += [(f"{p}.grad_{nm}", g) for nm, g in zip(["h", "Ak", "Bk", "Av", "Bv", "s"], gs)]

    for i, (n, t, d, heads, L) in enumerate([(2, 5, 8, 2, 3), (3, 17, 16, 4, 10)]):
        qkv = rnd(n, t, 3 * d)
        key, val = rnd(L, d), rnd(L, d)
        s = (torch.rand(2, generator=gen) + 0.5).requires_grad_(True)
        out = prefix_attention(qkv, key, val, s, heads)
        up = torch.randn(out.shape, generator=gen)
        gs = torch.autograd.grad(out, [qkv, key, val, s], up)
        p = f"prefix{i}"
        arrays += [(f"{p}.cfg", torch.tensor([n, t, d, heads, L])), (f"{p}.qkv", qkv), (f"{p}.key", key),
                   (f"{p}.val", val), (f"{p}.s", s), (f"{p}.up", up), (f"{p}.out", out)]
        arrays += [(f"{p}.grad_{nm}", g) for nm, g in zip(["qkv", "key", "val", "s"], gs)]

    with open(os.path.join(here, "lae.bin"), "wb") as f:
        f.write(b"PKG1")
        f.write(struct.pack("<I", len(arrays)))
        for name, x in arrays:
            x = x.detach().contiguous().float()
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)))
            f.write(nb)
            f.write(struct.pack("<I", x.dim()))
            for dd in x.shape:
                f.write(struct.pack("<q", dd))
            f.write(x.numpy().astype("<f4").tobytes())


if __name__ == "__main__":
    main()
