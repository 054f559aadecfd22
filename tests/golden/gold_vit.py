"""gold_vit.py - golden cases for the ViT (framework/nn/vit.c, tasks/common/backbone.c).

A PyTorch transcription of timm's VisionTransformer (vision_transformer.py: PatchEmbed, Attention
with one qkv linear reshaped (B, N, 3, H, d), pre-norm Block with LayerNorm eps 1e-6 and an
erf-GELU Mlp, class token, learned pos_embed whose grid part is resized by
F.interpolate(mode='bicubic', align_corners=False) when the input's grid differs, final norm,
class-token pooling), written from timm's documented structure (no timm package here).

Random weights (spread wider than timm's init so every part matters) are written with timm's
names to tests/golden/vit/<case>.safetensors as a checkpoint would be (F16 / BF16, to exercise
the loader's conversions; the reference uses the rounded values), with a __metadata__ entry
naming the configuration. The ops/vit.bin cases hold the inputs and the float64 reference
outputs (final-norm tokens; the class-token features are their row 0), plus F.interpolate(bicubic) of random
grids for the bicubic matrix (outputs and input gradients).
make_goldens.py imports this module and calls cases(gen)."""
import json
import os
import struct

import torch
import torch.nn.functional as F

from goldens import rand

here = os.path.dirname(os.path.abspath(__file__))


class Cfg:
    def __init__(self, name, img, patch, chans, dim, depth, heads, mlp):
        self.name, self.img, self.patch, self.chans = name, img, patch, chans
        self.dim, self.depth, self.heads, self.mlp = dim, depth, heads, mlp


def make_weights(cfg, gen):
    """timm's state_dict (names, shapes, order) with random values."""
    D, G = cfg.dim, cfg.img // cfg.patch
    w = {}

    def r(*shape, s=0.2):
        return (torch.rand(*shape, generator=gen, dtype=torch.float64) * 2 - 1) * s

    w["cls_token"] = r(1, 1, D, s=1.0)
    w["pos_embed"] = r(1, 1 + G * G, D, s=1.0)
    fan = cfg.chans * cfg.patch * cfg.patch
    w["patch_embed.proj.weight"] = r(D, cfg.chans, cfg.patch, cfg.patch, s=fan ** -0.5)
    w["patch_embed.proj.bias"] = r(D, s=0.5)
    for i in range(cfg.depth):
        p = f"blocks.{i}."
        w[p + "norm1.weight"] = 1 + r(D, s=0.5)
        w[p + "norm1.bias"] = r(D, s=0.5)
        w[p + "attn.qkv.weight"] = r(3 * D, D, s=2 * D ** -0.5)
        w[p + "attn.qkv.bias"] = r(3 * D, s=0.5)
        w[p + "attn.proj.weight"] = r(D, D, s=D ** -0.5)
        w[p + "attn.proj.bias"] = r(D, s=0.5)
        w[p + "norm2.weight"] = 1 + r(D, s=0.5)
        w[p + "norm2.bias"] = r(D, s=0.5)
        w[p + "mlp.fc1.weight"] = r(cfg.mlp, D, s=2 * D ** -0.5)
        w[p + "mlp.fc1.bias"] = r(cfg.mlp, s=0.5)
        w[p + "mlp.fc2.weight"] = r(D, cfg.mlp, s=cfg.mlp ** -0.5)
        w[p + "mlp.fc2.bias"] = r(D, s=0.5)
    w["norm.weight"] = 1 + r(D, s=0.5)
    w["norm.bias"] = r(D, s=0.5)
    return w


def resample_grid(pos, gh, gw, antialias=False):
    """(1, 1+G*G, D) -> (1, 1+gh*gw, D), class token kept. antialias=False: the forward's
    resampling for another input size (DINO's interpolate_pos_encoding, timm <= 0.6);
    antialias=True: timm >= 0.9's resample_abs_pos_embed default, used when a checkpoint is
    loaded for another image size."""
    D = pos.shape[-1]
    G = int(round((pos.shape[1] - 1) ** 0.5))
    if (gh, gw) == (G, G):
        return pos
    grid = pos[:, 1:].reshape(1, G, G, D).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False,
                         antialias=antialias)
    grid = grid.permute(0, 2, 3, 1).reshape(1, gh * gw, D)
    return torch.cat([pos[:, :1], grid], dim=1)


def vit_tokens(cfg, w, x):
    """timm VisionTransformer.forward_features: x (B, C, H, W) -> (B, 1 + L, D)."""
    B, D, H = x.shape[0], cfg.dim, cfg.heads
    d = D // H
    x = F.conv2d(x, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], stride=cfg.patch)
    gh, gw = x.shape[2], x.shape[3]
    x = x.flatten(2).transpose(1, 2)  # (B, L, D)
    x = torch.cat([w["cls_token"].expand(B, -1, -1), x], dim=1)
    x = x + resample_grid(w["pos_embed"], gh, gw)
    T = x.shape[1]
    for i in range(cfg.depth):
        p = f"blocks.{i}."
        h = F.layer_norm(x, (D,), w[p + "norm1.weight"], w[p + "norm1.bias"], eps=1e-6)
        qkv = F.linear(h, w[p + "attn.qkv.weight"], w[p + "attn.qkv.bias"])
        qkv = qkv.reshape(B, T, 3, H, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, H, T, d)
        a = ((q * d ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        h = (a @ v).transpose(1, 2).reshape(B, T, D)
        x = x + F.linear(h, w[p + "attn.proj.weight"], w[p + "attn.proj.bias"])
        h = F.layer_norm(x, (D,), w[p + "norm2.weight"], w[p + "norm2.bias"], eps=1e-6)
        h = F.gelu(F.linear(h, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"]))
        x = x + F.linear(h, w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"])
    return F.layer_norm(x, (D,), w["norm.weight"], w["norm.bias"], eps=1e-6)


def write_safetensors(path, tensors, dtype, meta):
    """The safetensors layout by hand (the python package is not installed)."""
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
    header, blobs, off = {"__metadata__": meta}, [], 0
    for k, t in tensors.items():
        t = t.to(dtype).contiguous()
        b = t.view(torch.int16).numpy().tobytes() if dtype != torch.float32 else \
            t.numpy().tobytes()
        header[k] = {"dtype": names[dtype], "shape": list(t.shape),
                     "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def vit_cases(prefix, cfg, dtype, batch, size, gen, load_grid=None):
    w = make_weights(cfg, gen)
    # the checkpoint holds rounded values: the reference computes with exactly those
    w = {k: v.to(dtype).double() for k, v in w.items()}
    # the metadata backbone_save writes, so the file describes its (hand-made) configuration
    meta = {"format": "pt", "arch": cfg.name, "img_size": str(cfg.img), "patch": str(cfg.patch),
            "in_chans": str(cfg.chans), "embed_dim": str(cfg.dim), "depth": str(cfg.depth),
            "num_heads": str(cfg.heads), "mlp_hidden": str(cfg.mlp), "num_classes": "0",
            "ln_eps": "1e-06"}
    write_safetensors(os.path.join(here, "vit", prefix + ".safetensors"), w, dtype, meta)
    x = rand(batch, cfg.chans, size, size, grad=False, gen=gen)
    # the class-token features are row 0 of the tokens (the C test compares both)
    out = [(prefix + "_tokens", [x], lambda x: vit_tokens(cfg, w, x.double()).float())]
    if load_grid:
        # the checkpoint loaded into a model laid out for load_grid: timm resamples pos_embed
        # once (antialias=True); then the forward at that grid
        g = load_grid
        w2 = dict(w, pos_embed=resample_grid(w["pos_embed"].float(), g, g, True).double())
        cfg2 = Cfg(cfg.name, g * cfg.patch, cfg.patch, cfg.chans, cfg.dim, cfg.depth, cfg.heads,
                   cfg.mlp)
        out.append((prefix + "_pos_load", [w["pos_embed"].float()],
                    lambda p: resample_grid(p, g, g, True)))
        # (no input stored: the C test feeds <prefix>_tokens.in0)
        out.append((prefix + "_load_tokens", [], lambda: vit_tokens(cfg2, w2, x.double()).float()))
    return out


def bicubic(oh, ow):
    return lambda x: F.interpolate(x, size=(oh, ow), mode="bicubic", align_corners=False)


def timm_eval(size, crop_pct, mean, std):
    """timm's default evaluation transform on a (1, C, H, W) image of 0..255 values, as
    torchvision does it on tensors: Resize(floor(size / crop_pct)) of the shorter side (bicubic,
    antialias), CenterCrop(size) (top = int(round((h - size) / 2))), ToTensor's / 255,
    Normalize(mean, std)."""
    def fn(x):
        x = x / 255.0
        h, w = x.shape[-2:]
        scale = int(size / crop_pct)
        nh, nw = (scale, int(scale * w / h)) if h <= w else (int(scale * h / w), scale)
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True,
                              align_corners=False)
        top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
        x = x[:, :, top:top + size, left:left + size]
        m = torch.tensor(mean).reshape(1, -1, 1, 1)
        s = torch.tensor(std).reshape(1, -1, 1, 1)
        return (x - m) / s
    return fn


def image(c, h, w, gen):
    """Random 8-bit pixel values (as floats) with smooth structure plus noise."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    base = 127 + 100 * torch.sin(xx / 3.0 + yy / 5.0)
    noise = torch.randint(-27, 28, (1, c, h, w), generator=gen)
    return (base.round() + noise).clamp(0, 255).float()


def cases(gen):
    out = []
    # F.interpolate(bicubic) of one random grid: up, down, non-square, identity, from 2x2
    for ih, iw, oh, ow in [(3, 3, 4, 4), (4, 4, 7, 7), (7, 5, 3, 6), (14, 14, 16, 16),
                           (2, 2, 5, 5), (5, 5, 5, 5), (14, 14, 8, 8)]:
        out.append((f"bicubic_{ih}x{iw}_{oh}x{ow}", [rand(1, 1, ih, iw, gen=gen)],
                    bicubic(oh, ow)))
    # F.interpolate(bicubic, antialias=True): the resize of `polyak features` (down and up)
    for ih, iw, oh, ow in [(28, 28, 32, 32), (32, 32, 28, 28), (37, 23, 16, 11), (9, 12, 20, 26)]:
        out.append((f"resize_aa_{ih}x{iw}_{oh}x{ow}", [rand(1, 1, ih, iw, grad=False, gen=gen)],
                    lambda x, oh=oh, ow=ow: F.interpolate(x, size=(oh, ow), mode="bicubic",
                                                          antialias=True, align_corners=False)))
    # the whole evaluation transform: C, H, W, size, crop_pct, mean, std
    for c, h, w, size, crop, mean, std in [
            (1, 28, 28, 24, 0.875, [0.5], [0.5]),
            (3, 40, 52, 32, 0.9, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            (3, 31, 31, 28, 1.0, [0.5, 0.4, 0.3], [0.2, 0.3, 0.4])]:
        out.append((f"preproc_{c}x{h}x{w}_{size}_{crop}", [image(c, h, w, gen)],
                    timm_eval(size, crop, mean, std)))
    # vit_nano_patch4_28's layout (28x28, patch 4, 4 heads) on 1-channel images, narrowed to
    # D 64, MLP 256 and depth 2 to keep the file small (the metadata's fields override the
    # name's), BF16
    nano = Cfg("vit_nano_patch4_28", 28, 4, 1, 64, 2, 4, 256)
    out += vit_cases("vit_nano28", nano, torch.bfloat16, 2, 28, gen)
    # a small vit_tiny_patch16 variant (D 48, 3 heads, depth 2) laid out for 48x48, run at
    # 64x64: pos_embed's 3x3 grid is resampled to 4x4 by the forward (plain bicubic) or, for a
    # model laid out for 64x64, by the loader (timm's antialiased bicubic); F16
    tiny = Cfg("vit_tiny_patch16_48", 48, 16, 3, 48, 2, 3, 192)
    out += vit_cases("vit_tiny16", tiny, torch.float16, 1, 64, gen, load_grid=4)
    return out
