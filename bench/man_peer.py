#!/usr/bin/python3
"""bench/man_peer.py - the PyTorch CPU peer of `polyak man --method e2e`: the same CIFAR-style
ResNet-32 (BasicBlocks 16/32/64, conv init normal(0, sqrt(2/(k*k*Cout))) as the official
InfoPro/MAN code), the same Fashion-MNIST subset, batch, augmentation (random crop, padding 4),
SGD Nesterov 0.9 with weight decay 1e-4, and the same number of threads. Prints the seconds of
each training epoch (data preparation included, evaluation excluded) as JSON, so the ratio
polyak / PyTorch can be taken from polyak's metrics.json "epoch_seconds".

usage: /usr/bin/python3 bench/man_peer.py --train-limit 2000 --batch 128 --threads 2 [--epochs 2]
"""
import argparse, gzip, json, math, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (self.down(x) if self.down is not None else x))


class ResNet(nn.Module):
    def __init__(self, n, in_ch, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            for b in range(n):
                layers.append(Block(cin, width, stride if b == 0 else 1))
                cin = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                k = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / k))

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--train-limit", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--depth", type=int, default=32)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    imgs = load_idx(a.data + "/train-images-idx3-ubyte.gz")[: a.train_limit]
    labels = torch.from_numpy(load_idx(a.data + "/train-labels-idx1-ubyte.gz")[: a.train_limit].astype(np.int64))
    x_all = torch.from_numpy(imgs.astype(np.float32) / 255.0).unsqueeze(1)
    model = ResNet((a.depth - 2) // 6, 1, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    model.train()
    n, h, w = x_all.shape[0], x_all.shape[2], x_all.shape[3]
    times = []
    for _ in range(a.epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        for s in range(n // a.batch):
            idx = perm[s * a.batch:(s + 1) * a.batch]
            padded = F.pad(x_all[idx], (4, 4, 4, 4))
            ox, oy = np.random.randint(0, 9, 2)
            x = (padded[:, :, oy:oy + h, ox:ox + w] - 0.5) / 0.5
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "threads": a.threads,
                      "batch": a.batch, "train_limit": a.train_limit, "epoch_seconds": times}))


if __name__ == "__main__":
    main()
