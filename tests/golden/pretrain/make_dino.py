#!/usr/bin/python3
"""make_dino.py - golden values for tests/pretrain/test_pretrain.c, written with PyTorch
(Debian's python3-torch, /usr/bin/python3): a transcription of facebookresearch/dino's
DINOLoss.forward / update_center (main_dino.py) and DINOHead (vision_transformer.py, use_bn
False, norm_last_layer True). Writes dino.bin in the PKG1 format of ../goldens.py.

Cases: loss<i> (student (ncrops*B, K), teacher (2B, K), center (K), temperatures) -> loss,
d loss / d student, next centre; head (x (N, D), the head's weights) -> output and the
gradients of x and of every weight for a random upstream gradient."""
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))


def dino_loss(student_output, teacher_output, center, ncrops, student_temp, temp):
    student_out = student_output / student_temp
    student_out = student_out.chunk(ncrops)
    teacher_out = F.softmax((teacher_output - center) / temp, dim=-1)
    teacher_out = teacher_out.detach().chunk(2)
    total_loss = 0
    n_loss_terms = 0
    for iq, q in enumerate(teacher_out):
        for v in range(len(student_out)):
            if v == iq:
                continue
            loss = torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1)
            total_loss += loss.mean()
            n_loss_terms += 1
    total_loss /= n_loss_terms
    batch_center = torch.sum(teacher_output, dim=0, keepdim=True) / len(teacher_output)
    new_center = center * 0.9 + batch_center * (1 - 0.9)
    return total_loss, new_center


class DINOHead(nn.Module):
    def __init__(self, in_dim, out_dim, hidden_dim, bottleneck_dim):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(),
                                 nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
                                 nn.Linear(hidden_dim, bottleneck_dim))
        self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        self.last_layer.weight_g.requires_grad = False

    def forward(self, x):
        x = self.mlp(x)
        x = nn.functional.normalize(x, dim=-1, p=2)
        return self.last_layer(x)


def main():
    gen = torch.Generator().manual_seed(2021)
    arrays = []
    # (ncrops, B, K, tau_s, tau_t): two crops only, and multi-crop at both temperature ends
    for i, (ncrops, b, k, ts, tt) in enumerate([(2, 3, 7, 0.1, 0.04), (5, 4, 11, 0.1, 0.07),
                                                (4, 2, 9, 0.1, 0.055)]):
        s = (torch.randn(ncrops * b, k, generator=gen) * 2).requires_grad_(True)
        t = torch.randn(2 * b, k, generator=gen) * 2
        c = torch.randn(1, k, generator=gen) * 0.5
        loss, nc = dino_loss(s, t, c, ncrops, ts, tt)
        (g,) = torch.autograd.grad(loss, s)
        p = f"loss{i}"
        arrays += [(f"{p}.cfg", torch.tensor([ncrops, b, k, ts, tt])), (f"{p}.student", s),
                   (f"{p}.teacher", t), (f"{p}.center", c.reshape(k)),
                   (f"{p}.loss", loss.reshape(1)), (f"{p}.grad", g), (f"{p}.center_next", nc.reshape(k))]
    n, d, hid, bott, k = 5, 8, 16, 6, 10
    torch.manual_seed(7)
    head = DINOHead(d, k, hid, bott)
    x = torch.randn(n, d, generator=gen).requires_grad_(True)
    out = head(x)
    up = torch.randn(out.shape, generator=gen)
    params = [head.mlp[0].weight, head.mlp[0].bias, head.mlp[2].weight, head.mlp[2].bias,
              head.mlp[4].weight, head.mlp[4].bias, head.last_layer.weight_v]
    grads = torch.autograd.grad(out, [x] + params, up)
    arrays += [("head.cfg", torch.tensor([n, d, hid, bott, k])), ("head.x", x), ("head.up", up),
               ("head.out", out), ("head.grad_x", grads[0])]
    for j, (pp, gg) in enumerate(zip(params, grads[1:])):
        arrays += [(f"head.p{j}", pp), (f"head.g{j}", gg)]
    path = os.path.join(here, "dino.bin")
    with open(path, "wb") as f:
        f.write(b"PKG1")
        f.write(struct.pack("<I", len(arrays)))
        for name, tt in arrays:
            tt = tt.detach().contiguous().float()
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)))
            f.write(nb)
            f.write(struct.pack("<I", tt.dim()))
            for dd in tt.shape:
                f.write(struct.pack("<q", dd))
            f.write(tt.numpy().astype("<f4").tobytes())
    print("wrote", os.path.relpath(path, here))


if __name__ == "__main__":
    main()
