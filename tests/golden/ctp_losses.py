#!/usr/bin/python3
"""ctp_losses.py - golden values for tests/ctp/test_ctp.c, written with PyTorch (Debian's
python3-torch, /usr/bin/python3). Writes ctp/losses.bin in the PKG1 format of goldens.py.

Transcriptions (written from the papers' code as REFERENCE.md describes it, not from Polyak's C):
- ALBEF's ITA (salesforce/ALBEF, models/model_pretrain.py): sim = q @ k.T / temp;
  loss = -sum(log_softmax(sim, 1) * targets, 1).mean(), targets = alpha * softmax(sim_m, 1) +
  (1 - alpha) * positives (rows normalised), sim_m from the momentum features.
- CTP's topology preservation: KL(softmax(ref / T) || softmax(cur / T)), batchmean, for i2t,
  t2i, i2i and t2t, weighted as KevinLight831/CTP's models/clip_pretrain.py (CTP()) adds them:
  (i2t + t2i) / 2 + (i2i + t2t) / 2, i.e. half their sum; in i2i and t2t each row's own entry is left out of the softmax
  (here by dropping it: an independent form of the C code's additive mask).

Cases contrast<i>: q (B, E), k (N, E), targets (B, N) -> loss, d loss/d q, d loss/d k.
targets<i>: qm (B, E), km (N, E), qid (B), kid (N), alpha, temp -> targets (B, N).
topo<i>: img, txt, img_ref, txt_ref (B, E), unit rows -> loss, d/d img, d/d txt."""
import os
import struct

import torch
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))


def unit(*shape, gen):
    return F.normalize(torch.randn(*shape, generator=gen, dtype=torch.float64), dim=1).float()


def soft_targets(qm, km, qid, kid, alpha, temp):
    sim_m = qm.double() @ km.double().t() / temp
    pos = (qid[:, None] == kid[None, :]).double()
    pos = pos / pos.sum(1, keepdim=True).clamp(min=1)
    return (alpha * F.softmax(sim_m, dim=1) + (1 - alpha) * pos).float()


def contrast(q, k, targets, temp):
    sim = q @ k.t() / temp
    return -torch.sum(F.log_softmax(sim, dim=1) * targets, dim=1).mean()


def off_diagonal(m):
    b = m.shape[0]
    keep = ~torch.eye(b, dtype=torch.bool)
    return m[keep].view(b, b - 1)


def topo(img, txt, img_r, txt_r, temp):
    pairs = [(img @ txt.t(), img_r @ txt_r.t(), False), (txt @ img.t(), txt_r @ img_r.t(), False),
             (img @ img.t(), img_r @ img_r.t(), True), (txt @ txt.t(), txt_r @ txt_r.t(), True)]
    total = 0
    for cur, ref, mask in pairs:
        if mask:
            cur, ref = off_diagonal(cur), off_diagonal(ref)
        total = total + F.kl_div(F.log_softmax(cur / temp, dim=1), F.softmax(ref / temp, dim=1),
                                 reduction="batchmean")
    return total / 2


def main():
    gen = torch.Generator().manual_seed(14)
    arrays = []
    temp = 0.07
    for i, (b, n, e, alpha) in enumerate([(4, 4, 8, 0.0), (6, 22, 16, 0.4), (8, 40, 32, 0.4)]):
        qm, km = unit(b, e, gen=gen), unit(n, e, gen=gen)
        qid = torch.randint(0, max(2, n // 3), (b,), generator=gen)
        kid = torch.cat([qid, torch.randint(0, max(2, n // 3), (n - b,), generator=gen)])
        tg = soft_targets(qm, km, qid, kid, alpha, temp)
        arrays += [(f"targets{i}.qm", qm), (f"targets{i}.km", km), (f"targets{i}.qid", qid.float()),
                   (f"targets{i}.kid", kid.float()),
                   (f"targets{i}.cfg", torch.tensor([b, n, e, alpha, temp])),
                   (f"targets{i}.out", tg)]
        q = unit(b, e, gen=gen).requires_grad_(True)
        k = unit(n, e, gen=gen).requires_grad_(True)
        loss = contrast(q, k, tg, temp)
        gq, gk = torch.autograd.grad(loss, [q, k])
        arrays += [(f"contrast{i}.q", q.detach()), (f"contrast{i}.k", k.detach()),
                   (f"contrast{i}.targets", tg), (f"contrast{i}.loss", loss.detach().view(1)),
                   (f"contrast{i}.grad_q", gq), (f"contrast{i}.grad_k", gk),
                   (f"contrast{i}.cfg", torch.tensor([b, n, e, temp]))]
    for i, (b, e) in enumerate([(3, 8), (7, 16), (16, 32)]):
        img, txt = unit(b, e, gen=gen).requires_grad_(True), unit(b, e, gen=gen).requires_grad_(True)
        # the reference model: a perturbation of the current one, as after some training
        img_r = F.normalize(img.detach() + 0.3 * torch.randn(b, e, generator=gen), dim=1)
        txt_r = F.normalize(txt.detach() + 0.3 * torch.randn(b, e, generator=gen), dim=1)
        loss = topo(img, txt, img_r, txt_r, temp)
        gi, gt = torch.autograd.grad(loss, [img, txt])
        arrays += [(f"topo{i}.img", img.detach()), (f"topo{i}.txt", txt.detach()),
                   (f"topo{i}.img_ref", img_r), (f"topo{i}.txt_ref", txt_r),
                   (f"topo{i}.loss", loss.detach().view(1)), (f"topo{i}.grad_img", gi),
                   (f"topo{i}.grad_txt", gt), (f"topo{i}.cfg", torch.tensor([b, e, temp]))]
    os.makedirs(os.path.join(here, "ctp"), exist_ok=True)
    with open(os.path.join(here, "ctp", "losses.bin"), "wb") as f:
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


if __name__ == "__main__":
    main()
