#!/usr/bin/python3
"""make_scaffold_golden.py - writes tests/golden/gs/scaffold.bin: a PyTorch transcription of
Scaffold-GS's generate_neural_gaussians (city-super/Scaffold-GS gaussian_renderer/__init__.py)
and of its training loss's volume term, with autograd gradients, for tests/gs/test_gs_scaffold.c.

Inputs (random, float32): anchors (N, 3) in [-1, 1]^3, anchor features (N, 32), offsets
(N, 10, 3), log-scalings (N, 6), the three MLPs (Linear(35, 32), ReLU, Linear(32, out)) and a
camera centre. Outputs: the neural Gaussians with opacity > 0 in (anchor, offset) order:
means (M, 3), log-scales (M, 3), raw quaternions (M, 4), opacity logits (M), colours (M, 3), the
term 0.01 * mean(prod(scale)); and the gradients of
L = sum(u_means * means) + sum(u_ls * log_scales) + sum(u_q * quats) + sum(u_o * logits)
    + sum(u_c * colours) + volume term
with respect to features, offsets, scalings and every MLP parameter (u_* random).

Run with Debian's python3-torch (1.13):  /usr/bin/python3 tests/golden/gs/make_scaffold_golden.py
Format: tests/golden/goldens.py's PKG1 (name, shape, float32 data per array).
"""
import os
import struct

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
N, K, F = 23, 10, 32


def write(path, arrays):
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


def main():
    gen = torch.Generator().manual_seed(15)

    def U(*shape, lo=-1.0, hi=1.0):
        return torch.rand(*shape, generator=gen) * (hi - lo) + lo

    for attempt in range(100):
        anchor = U(N, 3)
        feat = U(N, F).requires_grad_(True)
        offset = U(N, K, 3, lo=-0.5, hi=0.5).requires_grad_(True)
        scaling = U(N, 6, lo=-3.0, hi=-1.5).requires_grad_(True)
        campos = torch.tensor([0.1, -0.2, -6.0])
        mlps = {}
        for name, out in (("opacity", K), ("cov", 7 * K), ("color", 3 * K)):
            b1 = 1 / 35 ** 0.5
            b2 = 1 / 32 ** 0.5
            mlps[name] = [U(32, 35, lo=-b1, hi=b1).requires_grad_(True),
                          U(32, lo=-b1, hi=b1).requires_grad_(True),
                          U(out, 32, lo=-b2, hi=b2).requires_grad_(True),
                          U(out, lo=-b2, hi=b2).requires_grad_(True)]

        def mlp(name, x):
            w1, b1, w2, b2 = mlps[name]
            return torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(x, w1, b1)),
                                              w2, b2)

        # generate_neural_gaussians (visible_mask: all anchors)
        ob_view = anchor - campos
        ob_dist = ob_view.norm(dim=1, keepdim=True)
        ob_view = ob_view / ob_dist
        cat_local_view = torch.cat([feat, ob_view], dim=1)
        neural_opacity = torch.tanh(mlp("opacity", cat_local_view)).reshape([-1, 1])
        if (neural_opacity.abs() < 1e-3).any():
            continue  # keep the selection unambiguous in float32
        mask = (neural_opacity > 0.0).view(-1)
        opacity = neural_opacity[mask]
        color = torch.sigmoid(mlp("color", cat_local_view)).reshape([N * K, 3])
        scale_rot = mlp("cov", cat_local_view).reshape([N * K, 7])
        offsets = offset.view([-1, 3])
        concatenated = torch.cat([scaling.exp(), anchor], dim=-1)
        concatenated_repeated = concatenated.unsqueeze(1).repeat(1, K, 1).view(-1, 9)
        concatenated_all = torch.cat([concatenated_repeated, color, scale_rot, offsets], dim=-1)
        masked = concatenated_all[mask]
        scaling_repeat, repeat_anchor, color, scale_rot, offsets = masked.split(
            [6, 3, 3, 7, 3], dim=-1)
        scales = scaling_repeat[:, 3:] * torch.sigmoid(scale_rot[:, :3])
        rot = scale_rot[:, 3:7]  # Scaffold-GS normalises; the rasterizer's input is raw here
        offsets = offsets * scaling_repeat[:, :3]
        xyz = repeat_anchor + offsets
        o = opacity.view(-1)
        logits = torch.log(o) - torch.log(1 - o)
        log_scales = torch.log(scales)
        reg = 0.01 * scales.prod(dim=1).mean()
        M = xyz.shape[0]
        ups = {"means": U(M, 3), "log_scales": U(M, 3), "quats": U(M, 4), "logits": U(M),
               "colors": U(M, 3)}
        outs = {"means": xyz, "log_scales": log_scales, "quats": rot, "logits": logits,
                "colors": color}
        L = reg + sum((ups[k] * outs[k]).sum() for k in outs)
        params = [feat, offset, scaling] + [p for k in ("opacity", "cov", "color") for p in mlps[k]]
        grads = torch.autograd.grad(L, params)
        arrays = [("anchor", anchor), ("feat", feat), ("offset", offset), ("scaling", scaling),
                  ("campos", campos), ("reg", reg.reshape(1)), ("mask", mask.float())]
        for k in ("opacity", "cov", "color"):
            for i, nm in enumerate(("w1", "b1", "w2", "b2")):
                arrays.append(("%s.%s" % (k, nm), mlps[k][i]))
        for k in outs:
            arrays.append(("out." + k, outs[k]))
            arrays.append(("up." + k, ups[k]))
        names = ["feat", "offset", "scaling"] + ["%s.%s" % (k, nm)
                                                 for k in ("opacity", "cov", "color")
                                                 for nm in ("w1", "b1", "w2", "b2")]
        for nm, g in zip(names, grads):
            arrays.append(("grad." + nm, g))
        write(os.path.join(HERE, "scaffold.bin"), arrays)
        print("scaffold.bin: %d anchors, %d neural Gaussians kept (attempt %d)" % (N, M, attempt))
        return
    raise SystemExit("no draw without an ambiguous opacity")


if __name__ == "__main__":
    main()
