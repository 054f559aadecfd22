#!/usr/bin/python3
"""make_cifar100_synthetic.py - writes a synthetic data set in the CIFAR-100 binary format
(train.bin, test.bin: records of <coarse label u8><fine label u8><3072 bytes: the 32x32 R, G
and B planes>) so that `polyak cl` can run a CIFAR-100-format 10-task split end to end
without the real file (the real cifar-100-binary folder works the same way).

Each of the 100 classes is a random smooth colour pattern (a few random 2-D sinusoids per
channel); its images are the pattern shifted by up to 4 pixels, with a random contrast and
Gaussian noise. Coarse label = fine // 5 (20 superclasses, as CIFAR-100 has).

usage: bench/make_cifar100_synthetic.py OUT_DIR [--train-per-class 50] [--test-per-class 20]
       [--seed 0]"""
import argparse
import os

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--train-per-class", type=int, default=50)
    ap.add_argument("--test-per-class", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    yy, xx = np.mgrid[0:40, 0:40].astype(np.float32) / 40.0
    templates = []
    for _ in range(100):
        t = np.zeros((3, 40, 40), np.float32)
        for ch in range(3):
            for _ in range(3):
                fx, fy = rng.uniform(0.5, 3.0, size=2) * rng.choice([-1, 1], size=2)
                ph = rng.uniform(0, 2 * np.pi)
                t[ch] += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * (fx * xx + fy * yy) + ph)
        templates.append(t)
    os.makedirs(a.out, exist_ok=True)
    for split, n in (("train", a.train_per_class), ("test", a.test_per_class)):
        recs = []
        for c in range(100):
            for _ in range(n):
                dy, dx = rng.integers(0, 9, size=2)
                img = templates[c][:, dy:dy + 32, dx:dx + 32] * rng.uniform(0.7, 1.3)
                img = img + rng.normal(0, 0.25, size=img.shape)
                px = np.clip(127.5 + 50 * img, 0, 255).astype(np.uint8)
                recs.append(bytes([c // 5, c]) + px.tobytes())
        order = rng.permutation(len(recs))
        with open(os.path.join(a.out, f"{split}.bin"), "wb") as f:
            for i in order:
                f.write(recs[i])
        print(f"{split}.bin: {len(recs)} images")


if __name__ == "__main__":
    main()
