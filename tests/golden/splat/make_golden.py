#!/usr/bin/python3
"""make_golden.py - writes the splat golden files: a dense PyTorch (float64, autograd)
reference of the 3DGS rasterizer that the C backends must match.

Dense: every pixel evaluates every visible Gaussian in depth order (stable sort, ties by
index); no tile lists, no sort keys, no backward formulas (autograd differentiates). Two
details of 3DGS are reproduced because the image depends on them: a Gaussian only reaches
pixels inside the 16x16 tiles of its 3-sigma rectangle (getRect), and a pixel stops at the
first Gaussian that would take its transmittance below 1e-4.

Run with Debian's python3-torch (1.13):  /usr/bin/python3 tests/golden/splat/make_golden.py
Output: one file per scene, <name>.bin: magic b"PKSPLAT1", then records of
(name: 32 bytes NUL padded, count: int64 LE, data: count float32 LE).
"""
import os
import struct

import torch

torch.set_default_dtype(torch.float64)
HERE = os.path.dirname(os.path.abspath(__file__))

# diff-gaussian-rasterization cuda_rasterizer/auxiliary.h
C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = [1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
      0.5462742152960396]
C3 = [-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
      -0.4570457994644658, 1.445305721320277, -0.5900435899266435]


def sh_basis(d, deg):
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    Y = [torch.full_like(x, C0)]
    if deg >= 1:
        Y += [-C1 * y, C1 * z, -C1 * x]
    if deg >= 2:
        xx, yy, zz = x * x, y * y, z * z
        Y += [C2[0] * x * y, C2[1] * y * z, C2[2] * (2 * zz - xx - yy), C2[3] * x * z,
              C2[4] * (xx - yy)]
    if deg >= 3:
        Y += [C3[0] * y * (3 * xx - yy), C3[1] * x * y * z, C3[2] * y * (4 * zz - xx - yy),
              C3[3] * z * (2 * zz - 3 * xx - 3 * yy), C3[4] * x * (4 * zz - xx - yy),
              C3[5] * z * (xx - yy), C3[6] * x * (xx - 3 * yy)]
    return torch.stack(Y, dim=1)  # (n, K)


def quat_to_rot(q):
    q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], 1).view(-1, 3, 3)


def render(p, cam):
    W, H = cam["W"], cam["H"]
    w2c = cam["w2c"].view(4, 4)
    R, t = w2c[:3, :3], w2c[:3, 3]
    fx, fy, cx, cy = cam["fx"], cam["fy"], cam["cx"], cam["cy"]
    near = cam["near"]
    pv = p["means"] @ R.T + t  # (n, 3)
    z = pv[:, 2]
    Rq = quat_to_rot(p["quats"])
    M = Rq * torch.exp(p["log_scales"])[:, None, :]
    Sig = M @ M.transpose(1, 2)
    Sc = R @ Sig @ R.T
    limx, limy = 1.3 * 0.5 * W / fx, 1.3 * 0.5 * H / fy
    u, v = pv[:, 0] / z, pv[:, 1] / z
    uc, vc = u.clamp(-limx, limx), v.clamp(-limy, limy)
    zero = torch.zeros_like(z)
    J = torch.stack([fx / z, zero, -fx * uc / z, zero, fy / z, -fy * vc / z], 1).view(-1, 2, 3)
    cov2 = J @ Sc @ J.transpose(1, 2)
    A, B, Cc = cov2[:, 0, 0] + 0.3, cov2[:, 0, 1], cov2[:, 1, 1] + 0.3
    det = A * Cc - B * B
    conic = torch.stack([Cc / det, -B / det, A / det], 1)
    mean2d = torch.stack([fx * u + cx, fy * v + cy], 1)
    mean2d.retain_grad()
    op = torch.sigmoid(p["opacity"])
    if p["sh"] is not None:
        campos = -R.T @ t
        d = p["means"] - campos
        d = d / d.norm(dim=1, keepdim=True)
        Y = sh_basis(d, p["deg"])  # (n, K)
        col = (torch.einsum("nk,nkc->nc", Y, p["sh"]) + 0.5).clamp(min=0)
    else:
        col = p["colors"]

    with torch.no_grad():
        mid = 0.5 * (A + Cc)
        lam = mid + torch.sqrt(torch.clamp(mid * mid - det, min=0.1))
        rad = torch.ceil(3 * torch.sqrt(lam))
        gx, gy = (W + 15) // 16, (H + 15) // 16
        px, py = mean2d[:, 0] - 0.5, mean2d[:, 1] - 0.5
        x0 = ((px - rad) / 16).clamp(0, gx).floor()
        x1 = ((px + rad + 15) / 16).clamp(0, gx).floor()
        y0 = ((py - rad) / 16).clamp(0, gy).floor()
        y1 = ((py + rad + 15) / 16).clamp(0, gy).floor()
        vis = (z > near) & (det > 0) & ((x1 - x0) * (y1 - y0) > 0)
        radii = torch.where(vis, rad, torch.zeros_like(rad))
        idx = torch.nonzero(vis).flatten()
        order = idx[torch.sort(z[idx], stable=True).indices]

    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    xs, ys = xs.flatten(), ys.flatten()
    pxc, pyc = xs + 0.5, ys + 0.5
    tx, ty = xs // 16, ys // 16
    T = torch.ones(H * W)
    Cimg = torch.zeros(3, H * W)
    D = torch.zeros(H * W)
    active = torch.ones(H * W, dtype=torch.bool)
    for g in order.tolist():
        in_rect = (tx >= x0[g]) & (tx < x1[g]) & (ty >= y0[g]) & (ty < y1[g])
        dx, dy = mean2d[g, 0] - pxc, mean2d[g, 1] - pyc
        power = -0.5 * (conic[g, 0] * dx * dx + conic[g, 2] * dy * dy) - conic[g, 1] * dx * dy
        alpha = (op[g] * torch.exp(power)).clamp(max=0.99)
        with torch.no_grad():
            ok = active & in_rect & (power <= 0) & (alpha >= 1.0 / 255)
            term = ok & (T * (1 - alpha) < 1e-4)
            active = active & ~term
            ok = ok & ~term
        w = torch.where(ok, alpha * T, torch.zeros_like(T))
        Cimg = Cimg + w[None, :] * col[g][:, None]
        D = D + w * z[g]
        T = torch.where(ok, T * (1 - alpha), T)
    rgb = Cimg + T[None, :] * p["bg"][:, None]
    return rgb.view(3, H, W), (1 - T).view(H, W), D.view(H, W), mean2d, radii


def make_scene(seed, n, W, H, use_sh, deg):
    g = torch.Generator().manual_seed(seed)

    def rnd(*s):
        return torch.rand(*s, generator=g)

    def nrm(*s):
        return torch.randn(*s, generator=g)

    a, b = 0.1 * nrm(1).item(), 0.1 * nrm(1).item()
    import math
    ca, sa, cb, sb = math.cos(a), math.sin(a), math.cos(b), math.sin(b)
    R = torch.tensor([[ca, sa * sb, sa * cb], [0, cb, -sb], [-sa, ca * sb, ca * cb]])
    w2c = torch.eye(4)
    w2c[:3, :3] = R
    w2c[:3, 3] = 0.1 * nrm(3)
    f = 0.9 * W
    cam = dict(w2c=w2c.flatten(), fx=f, fy=1.05 * f, cx=0.5 * W + 0.3, cy=0.5 * H - 0.2,
               W=W, H=H, near=0.2)
    zc = 2 + 6 * rnd(n)
    means = torch.stack([(2 * rnd(n) - 1) * 0.75 * zc, (2 * rnd(n) - 1) * 0.55 * zc, zc], 1)
    means[:5, 2] = -means[:5, 2]  # behind the camera: culled
    log_scales = torch.log(0.03 + 0.3 * rnd(n, 3))
    quats = nrm(n, 4)
    opacity = 0.5 + 1.5 * nrm(n)
    opacity[5::7] = 6.0  # alpha hits the 0.99 clamp
    K = (deg + 1) ** 2
    sh = nrm(n, K, 3) * 0.3 if use_sh else None
    if use_sh:
        sh[:, 0, :] = 0.8 * nrm(n, 3)
    colors = None if use_sh else rnd(n, 3)
    p = dict(means=means, log_scales=log_scales, quats=quats, opacity=opacity, sh=sh,
             colors=colors, deg=deg, bg=rnd(3))
    # cast the inputs to float32 and back, so that the C side gets exactly these values
    for k in ("means", "log_scales", "quats", "opacity", "sh", "colors", "bg"):
        if p[k] is not None:
            p[k] = p[k].float().double()
    for k in ("w2c",):
        cam[k] = cam[k].float().double()
    for k in ("fx", "fy", "cx", "cy"):
        cam[k] = float(torch.tensor(cam[k]).float())
    wr, wa, wd = nrm(3, H, W).float().double(), nrm(H, W).float().double(), \
        nrm(H, W).float().double()
    return p, cam, (wr, wa, wd)


def write(path, records):
    with open(path, "wb") as fh:
        fh.write(b"PKSPLAT1")
        for name, t in records:
            data = t.detach().flatten().to(torch.float32).numpy().astype("<f4").tobytes()
            fh.write(name.encode().ljust(32, b"\0"))
            fh.write(struct.pack("<q", t.numel()))
            fh.write(data)


def main():
    scenes = [("sh3_67x45", 1, 300, 67, 45, True, 3), ("colors_67x45", 2, 300, 67, 45, False, 0),
              ("sh1_33x50", 3, 200, 33, 50, True, 1)]
    for name, seed, n, W, H, use_sh, deg in scenes:
        p, cam, (wr, wa, wd) = make_scene(seed, n, W, H, use_sh, deg)
        leaves = ["means", "log_scales", "quats", "opacity", "sh" if use_sh else "colors"]
        for k in leaves:
            p[k].requires_grad_(True)
        rgb, alpha, depth, mean2d, radii = render(p, cam)
        loss = (wr * rgb).sum() + (wa * alpha).sum() + (wd * depth).sum()
        loss.backward()
        camrec = torch.cat([cam["w2c"], torch.tensor([cam["fx"], cam["fy"], cam["cx"], cam["cy"],
                                                      W, H, cam["near"], n, deg, int(use_sh)])])
        recs = [("camera", camrec), ("bg", p["bg"])]
        recs += [("in_" + k, p[k]) for k in leaves]
        recs += [("w_rgb", wr), ("w_alpha", wa), ("w_depth", wd)]
        recs += [("rgb", rgb), ("alpha", alpha), ("depth", depth), ("radii", radii)]
        recs += [("grad_" + k, p[k].grad) for k in leaves]
        recs += [("grad_means2d", mean2d.grad)]
        write(os.path.join(HERE, name + ".bin"), recs)
        print(f"{name}: {int((radii > 0).sum())}/{n} visible, mean alpha "
              f"{float(alpha.mean()):.3f}")


if __name__ == "__main__":
    main()
