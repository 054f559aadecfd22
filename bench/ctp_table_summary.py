#!/usr/bin/python3
"""ctp_table_summary.py OUT DATA "SEEDS" "METHODS" - the summary of bench/ctp_table.sh: per method
and seed the final R_m (held-out pairs of all tasks) and BWT, their means, CPU time, the chance
level of R_m, the checks of CTP's effect; writes OUT/table.md and OUT/table.json.

Chance R_m: i2t R@k = k / texts; t2i R@k = P(one of a caption's m pictures is in the top k of
n pictures) = 1 - C(n - m, k) / C(n, k), averaged over captions; R_m = mean of the six.

BWT_c is CTP's eval.py protocol: the held-out pairs of tasks 1..i pooled into one retrieval set,
R_m of the final model minus R_m right after task i, averaged over i < T (eval.py prints the
negative). From metrics.json's "R_m_seen_final" and log.csv's R_m_seen at each task's last epoch
(the same as metrics.json's "R_m_seen", which the runs made before it lack); "-" without them."""
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
table, cpu_total = {}, 0.0
for m in methods:
    for s in seeds:
        d = f"{out}/{m}-s{s}"
        met = json.load(open(f"{d}/metrics.json"))
        u, sy, w = map(float, open(f"{d}.time").read().split()[-3:])
        cpu_total += u + sy
        mat = met["recall_matrix"]
        # R_m on the tasks seen so far, pooled, right after each task (log.csv: last epoch)
        seen = {}
        for row in csv.DictReader(open(f"{d}/log.csv")):
            seen[int(row["task"])] = float(row["R_m_seen"])
        final = met.get("R_m_seen_final")
        bwt_c = None
        if m != "joint" and final and all(v is not None for v in final) and len(mat) > 1:
            T = len(mat)
            bwt_c = sum(final[i] - seen[i + 1] for i in range(T - 1)) / (T - 1)
            if met.get("BWT_cumulative") is not None:
                assert abs(bwt_c - met["BWT_cumulative"]) < 1e-6, (d, bwt_c, met["BWT_cumulative"])
        table[(m, s)] = dict(R_m=met["R_m"], BWT=met["BWT"], BWT_c=bwt_c, i2t=met["i2t"],
                             t2i=met["t2i"], cpu=u + sy, wall=w, order=met["task_names"],
                             matrix=mat, seen=[seen[k] for k in sorted(seen)], seen_final=final)
# chance on the held-out pairs of the tasks the runs trained on (all nine, or --max-tasks)
run_tasks = set(next(iter(table.values()))["order"])
final_chance = chance([p for p in test if p["task"] in run_tasks])


def fmt(v, sign=False):
    return "-" if v is None else (f"{100 * v:+.2f}" if sign else f"{100 * v:.2f}")


lines = ["| method | " + " | ".join(f"R_m s{s}" for s in seeds) + " | R_m mean | " +
         " | ".join(f"BWT s{s}" for s in seeds) + " | BWT mean | " +
         " | ".join(f"BWT_c s{s}" for s in seeds) + " | BWT_c mean | CPU s per run |",
         "|---|" + "---:|" * (3 * len(seeds) + 4)]
for m in methods:
    r = [table[(m, s)]["R_m"] for s in seeds]
    b = [table[(m, s)]["BWT"] for s in seeds]
    bc = [table[(m, s)]["BWT_c"] for s in seeds]
    bm = None if any(x is None for x in b) else sum(b) / len(b)
    bcm = None if any(x is None for x in bc) else sum(bc) / len(bc)
    cpu = sum(table[(m, s)]["cpu"] for s in seeds) / len(seeds)
    lines.append(f"| {m} | " + " | ".join(fmt(x) for x in r) + f" | {fmt(sum(r) / len(r))} | " +
                 " | ".join(fmt(x, True) for x in b) + f" | {fmt(bm, True)} | " +
                 " | ".join(fmt(x, True) for x in bc) + f" | {fmt(bcm, True)} | {cpu:.0f} |")
lines.append(f"| chance | " + " | ".join(fmt(final_chance) for _ in seeds) +
             f" | {fmt(final_chance)} | " + " | ".join("0" for _ in seeds) + " | 0 | " +
             " | ".join("0" for _ in seeds) + " | 0 | |")
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
    if any(table[(x, s)][key] is None for x in (a, b) for s in seeds):
        return "-"
    return all(table[(a, s)][key] > table[(b, s)][key] for s in seeds)


if "ctp" in methods and "seqf" in methods:
    lines.append(f"CTP ahead of SeqF in final R_m on every seed: {ahead('ctp', 'seqf', 'R_m')}")
    lines.append(f"CTP ahead of SeqF in BWT on every seed: {ahead('ctp', 'seqf', 'BWT')}; "
                 f"in BWT_c: {ahead('ctp', 'seqf', 'BWT_c')}")
for ab, part in (("ctp-no-topo", "topology preservation"), ("ctp-no-cm", "compatible momentum")):
    if ab in methods and "ctp" in methods:
        lines.append(f"{part} helps (CTP > CTP without it on every seed): R_m "
                     f"{ahead('ctp', ab, 'R_m')}, BWT {ahead('ctp', ab, 'BWT')}, "
                     f"BWT_c {ahead('ctp', ab, 'BWT_c')}")
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
