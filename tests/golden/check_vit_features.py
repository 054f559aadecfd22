#!/usr/bin/python3
"""check_vit_features.py - end-to-end check of `polyak features` against PyTorch: runs the CLI on
the first images of Fashion-MNIST's test set with the golden vit_tiny16 backbone at 64x64 (so
the images are resized 28 -> 64 with antialiased bicubic, replicated to 3 channels, and
pos_embed is resampled 3x3 -> 4x4), then recomputes the features with gold_vit.py's
transcription of timm's VisionTransformer and F.interpolate, and prints the max relative error.
Usage: /usr/bin/python3 tests/golden/check_vit_features.py build/polyak [N] [--device D]"""
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import gold_vit  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist"


def load(path):
    """A safetensors file (F32/F16/I32) into float64 / int torch tensors, by hand."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header, base, out = json.loads(b[8:8 + n]), 8 + n, {}
    kinds = {"F32": np.float32, "F16": np.float16, "I32": np.int32}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        a = np.frombuffer(b[base + s:base + e], kinds[v["dtype"]]).copy()
        t = torch.from_numpy(a)
        out[k] = (t.double() if v["dtype"] != "I32" else t).reshape(v["shape"])
    return out


def main():
    polyak, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2][0] != "-" else 200
    extra = sys.argv[sys.argv.index("--device"):][:2] if "--device" in sys.argv else []
    backbone = os.path.join(here, "vit", "vit_tiny16.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "f.safetensors")
        subprocess.run([polyak, "features", "--backbone", backbone, "--data", FMNIST, "--out", out,
                        "--limit", str(n), "--image-size", "64"] + extra, check=True)
        got = load(out)
    w = load(backbone)
    cfg = gold_vit.Cfg("vit_tiny_patch16_48", 48, 16, 3, 48, 2, 3, 192)
    raw = gzip.open(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")).read()[16:]
    imgs = np.frombuffer(raw, np.uint8).reshape(-1, 1, 28, 28)[:n]
    labels = np.frombuffer(gzip.open(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz")).read()[8:],
                           np.uint8)[:n]
    x = torch.from_numpy(imgs.astype(np.float32)) / 255.0
    x = F.interpolate(x, size=(64, 64), mode="bicubic", antialias=True, align_corners=False)
    x = (x.double().repeat(1, 3, 1, 1) - 0.5) / 0.5
    ref = gold_vit.vit_tokens(cfg, w, x)[:, 0]
    err = ((got["features"] - ref).abs().max() / ref.abs().max()).item()
    same_labels = bool((got["labels"].numpy() == labels).all())
    print(f"{n} images: features max rel error {err:.3g} vs PyTorch; labels equal: {same_labels}")
    sys.exit(0 if err <= 1e-5 and same_labels else 1)


if __name__ == "__main__":
    main()
