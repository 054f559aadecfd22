#!/usr/bin/python3
"""ctp_table_summary.py OUT DATA "SEEDS" "METHODS" - the summary of bench/ctp_table.sh: per method
and seed the final R_m (held-out pairs of all tasks) and BWT, their means, CPU time, the chance
level of R_m, the checks of CTP's effect; writes OUT/table.md and OUT/table.json.

Chance R_m: i2t R@k = k / texts; t2i R@k = P(one of a caption's m pictures is in the top k of
n pictures) = 1 - C(n - m, k) / C(n, k), averaged over captions; R_m = mean of the six."""
import collections
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
table, cpu_total = {}, 0.0
for m in methods:
    for s in seeds:
        d = f"{out}/{m}-s{s}"
        met = json.load(open(f"{d}/metrics.json"))
        u, sy, w = map(float, open(f"{d}.time").read().split()[-3:])
        cpu_total += u + sy
        mat = met["recall_matrix"]
        table[(m, s)] = dict(R_m=met["R_m"], BWT=met["BWT"], i2t=met["i2t"], t2i=met["t2i"],
                             cpu=u + sy, wall=w, order=met["task_names"], matrix=mat)
# chance on the held-out pairs of the tasks the runs trained on (all nine, or --max-tasks)
run_tasks = set(next(iter(table.values()))["order"])
final_chance = chance([p for p in test if p["task"] in run_tasks])


def fmt(v, sign=False):
    return "-" if v is None else (f"{100 * v:+.2f}" if sign else f"{100 * v:.2f}")


lines = ["| method | " + " | ".join(f"R_m s{s}" for s in seeds) + " | R_m mean | " +
         " | ".join(f"BWT s{s}" for s in seeds) + " | BWT mean | CPU s per run |",
         "|---|" + "---:|" * (2 * len(seeds) + 3)]
for m in methods:
    r = [table[(m, s)]["R_m"] for s in seeds]
    b = [table[(m, s)]["BWT"] for s in seeds]
    bm = None if any(x is None for x in b) else sum(b) / len(b)
    cpu = sum(table[(m, s)]["cpu"] for s in seeds) / len(seeds)
    lines.append(f"| {m} | " + " | ".join(fmt(x) for x in r) + f" | {fmt(sum(r) / len(r))} | " +
                 " | ".join(fmt(x, True) for x in b) + f" | {fmt(bm, True)} | {cpu:.0f} |")
lines.append(f"| chance | " + " | ".join(fmt(final_chance) for _ in seeds) +
             f" | {fmt(final_chance)} | " + " | ".join("0" for _ in seeds) + " | 0 | |")
lines.append("")
# the diagonal (each task right after training it) against chance: did the model learn?
for m in methods:
    if m == "joint":
        continue
    for s in seeds:
        mat, order = table[(m, s)]["matrix"], table[(m, s)]["order"]
        diag = [mat[i][i] for i in range(len(order))]
        ch = [chance([p for p in test if p["task"] == t]) for t in order]
        last = mat[-1]
        lines.append(f"{m} s{s}: R_m of each task right after it (chance): " +
                     ", ".join(f"{100 * d:.1f} ({100 * c:.1f})" for d, c in zip(diag, ch)) +
                     "; after the last task: " + ", ".join(f"{100 * v:.1f}" for v in last))
lines.append("")


def ahead(a, b, key):
    return all(table[(a, s)][key] > table[(b, s)][key] for s in seeds)


if "ctp" in methods and "seqf" in methods:
    lines.append(f"CTP ahead of SeqF in final R_m on every seed: {ahead('ctp', 'seqf', 'R_m')}")
    lines.append(f"CTP ahead of SeqF in BWT on every seed: {ahead('ctp', 'seqf', 'BWT')}")
for ab, part in (("ctp-no-topo", "topology preservation"), ("ctp-no-cm", "compatible momentum")):
    if ab in methods and "ctp" in methods:
        lines.append(f"{part} helps (CTP > CTP without it on every seed): R_m "
                     f"{ahead('ctp', ab, 'R_m')}, BWT {ahead('ctp', ab, 'BWT')}")
lines.append(f"Total CPU time of the table (user + sys, all {len(table)} runs): "
             f"{cpu_total:.0f} s ({cpu_total / 3600:.2f} h); longest wall time of a run "
             f"{max(v['wall'] for v in table.values()):.0f} s")
lines.append("Task orders: " + "; ".join(f"s{s}: " + ", ".join(table[(methods[0], s)]["order"])
                                          for s in seeds))
text = "\n".join(lines)
print(text)
open(f"{out}/table.md", "w").write(text + "\n")
json.dump({f"{m}-s{s}": v for (m, s), v in table.items()}, open(f"{out}/table.json", "w"),
          indent=1)
