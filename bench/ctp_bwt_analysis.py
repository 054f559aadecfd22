#!/usr/bin/python3
"""ctp_bwt_analysis.py OUT DATA "SEEDS" "METHODS" - what BWT measures in a CTP table
(bench/ctp_table.sh's folder): per method, over the tasks 1..T-1 of every seed, how far each
task rose above its own chance level right after training it (learned), how far it stays above
after the last task (kept), the drop (learned - kept = -BWT's terms), the correlation between
learned and drop, BWT over the tasks that were learned (above chance by more than 2 points)
and over the others, and how many tasks ended on the collapsed point (mean cosine between
different pairs' momentum embeddings > 0.99 for images or texts at the task's last epoch,
log.csv img_cos / txt_cos). Chance as bench/ctp_table_summary.py computes it (R_m of a random
ranking on that task's held-out pairs). Prints a markdown table."""
import collections
import csv
import json
import sys
from math import comb

out, data, seeds, methods = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()


def chance(pairs):
    texts = collections.Counter(p["caption"] for p in pairs)
    nt, ni = len(texts), len(pairs)
    i2t = [min(1.0, k / nt) for k in (1, 5, 10)]
    t2i = [sum(1 - comb(ni - m, k) / comb(ni, k) for m in texts.values()) / nt for k in (1, 5, 10)]
    return (sum(i2t) + sum(t2i)) / 6


test = [json.loads(l) for l in open(f"{data}/pairs.jsonl")]
test = [p for p in test if p["split"] == "test"]
ch = {}


def corr(a, b):
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    return sum((x - ma) * (y - mb) for x, y in zip(a, b)) / (va * vb) ** 0.5 if va and vb else 0.0


print("| method | tasks | learned (pts) | kept (pts) | drop (pts) | corr(learned, drop) | "
      "BWT learned tasks (n) | BWT other tasks (n) | tasks ending collapsed |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for m in methods:
    learned, kept, drop, collapsed, ntasks = [], [], [], 0, 0
    for s in seeds:
        d = f"{out}/{m}-s{s}"
        met = json.load(open(f"{d}/metrics.json"))
        mat, order = met["recall_matrix"], met["task_names"]
        T = len(order)
        last = {}
        for row in csv.DictReader(open(f"{d}/log.csv")):
            last[int(row["task"])] = row
        for t in range(1, T + 1):
            r = last[t]
            collapsed += float(r["img_cos"]) > 0.99 or float(r["txt_cos"]) > 0.99
        ntasks += T
        for j in range(T - 1):
            if order[j] not in ch:
                ch[order[j]] = chance([p for p in test if p["task"] == order[j]])
            c = ch[order[j]]
            learned.append(100 * (mat[j][j] - c))
            kept.append(100 * (mat[T - 1][j] - c))
            drop.append(100 * (mat[j][j] - mat[T - 1][j]))
    n = len(drop)
    hi = [d for e, d in zip(learned, drop) if e > 2]
    lo = [d for e, d in zip(learned, drop) if e <= 2]
    print(f"| {m} | {n} | {sum(learned) / n:+.2f} | {sum(kept) / n:+.2f} | {sum(drop) / n:.2f} | "
          f"{corr(learned, drop):+.2f} | "
          f"{(-sum(hi) / len(hi) if hi else float('nan')):+.2f} ({len(hi)}) | "
          f"{(-sum(lo) / len(lo) if lo else float('nan')):+.2f} ({len(lo)}) | "
          f"{collapsed} of {ntasks} |")
