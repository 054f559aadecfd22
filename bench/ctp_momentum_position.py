#!/usr/bin/python3
"""ctp_momentum_position.py RUN... - where a `polyak ctp` run's momentum model sits between the
frozen reference (the previous task's model) and the trained model at the run's last
checkpoint (the end of the last task): with a = momentum - reference and b = model - reference
over all parameters, position = <a, b> / <b, b> (0: at the reference, 1: at the model) and the
part of a off that line, |a - position b| / |b|. CTP's compatible update (0.9 m + 0.05 model +
0.05 reference) tends to 0.5; an ordinary EMA (m 0.995) copied at the task start to
1 - 0.995^steps. Prints one line per run. Reads the checkpoint's safetensors header itself.
--all: every checkpoint the run kept (the ends of its last tasks), each with its task and that
task's length in steps (from log.csv), and 1 - 0.995^steps beside it."""
import csv
import glob
import json
import os
import struct
import sys

import numpy as np


def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for k, v in head.items():
            if k == "__metadata__" or v["dtype"] != "F32":
                continue
            a, b = v["data_offsets"]
            f.seek(base + a)
            out[k] = np.frombuffer(f.read(b - a), dtype="<f4").astype(np.float64)
        return out


def task_steps(run):
    """{end step: (task, steps)} of the run's tasks, from log.csv."""
    ends, prev = {}, 0
    last = {}
    for row in csv.DictReader(open(os.path.join(run, "log.csv"))):
        last[int(row["task"])] = int(row["step"])
    for t in sorted(last):
        ends[last[t]] = (t, last[t] - prev)
        prev = last[t]
    return ends


every = "--all" in sys.argv[1:]
for run in [a for a in sys.argv[1:] if a != "--all"]:
    cks = sorted(glob.glob(os.path.join(run, "ckpt-*.safetensors")),
                 key=lambda p: int(p.rsplit("-", 1)[1].split(".")[0]))
    if not cks:
        print(f"{run}: no checkpoint")
        continue
    ends = task_steps(run) if every else {}
    for ck in cks if every else cks[-1:]:
        t = read(ck)
        names = [k[len("model."):] for k in t if k.startswith("model.")]
        if not all("reference." + n in t for n in names):
            print(f"{run}: no reference model (a method without one)")
            break
        a = np.concatenate([t["momentum." + n] - t["reference." + n] for n in names])
        b = np.concatenate([t["model." + n] - t["reference." + n] for n in names])
        pos = float(a @ b / (b @ b))
        off = float(np.linalg.norm(a - pos * b) / np.linalg.norm(b))
        extra = ""
        step = int(ck.rsplit("-", 1)[1].split(".")[0])
        if step in ends:
            task, n = ends[step]
            extra = f", task {task} ({n} steps, 1 - 0.995^{n} = {1 - 0.995 ** n:.3f})"
        print(f"{run}: {os.path.basename(ck)}: position {pos:.3f}, off the line {off:.3f}, "
              f"|model - reference| {np.linalg.norm(b):.3f}{extra}")
