#!/bin/bash
# ctp_table.sh - the CTP table on the emoji benchmark: methods ctp, seqf, joint and the two
# ablations (ctp-no-topo, ctp-no-cm), 3 seeds (each seed = its own task order and
# initialisation), CPU backend, one thread per run, JOBS runs at a time under nice -n 5. Each
# run's CPU time (user + sys) and wall time come from /usr/bin/time. Prints the table and the
# checks of the paper's effect; writes OUT/table.md and OUT/table.json.
#
# Usage: bench/ctp_table.sh [DATA (default /work/data/emoji)] [OUT (default /work/runs/ctp-table)]
#   env: EPOCHS (per task, default 8), JOBS (default 4), SEEDS (default "1 2 3"),
#        METHODS (default "ctp seqf joint ctp-no-topo ctp-no-cm"), POLYAK (the binary),
#        CTP_ARGS (extra options, default: the model of BENCHMARKS.md)
# A finished run (metrics.json present) is not run again, so the script resumes a table.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
data=${1:-/work/data/emoji}
out=${2:-/work/runs/ctp-table}
epochs=${EPOCHS:-8}
jobs=${JOBS:-4}
seeds=${SEEDS:-1 2 3}
methods=${METHODS:-ctp seqf joint ctp-no-topo ctp-no-cm}
polyak=${POLYAK:-$here/build/polyak}
args=${CTP_ARGS:---lr 5e-4 --dim 64 --depth 2 --patch 8 --txt-dim 64 --txt-depth 2}
[ -f "$data/pairs.jsonl" ] || { echo "ctp_table: no $data/pairs.jsonl; run tools/get-emoji-pairs.sh $data" >&2; exit 1; }
[ -x "$polyak" ] || { echo "ctp_table: $polyak is not built" >&2; exit 1; }
mkdir -p "$out"
cp "$polyak" "$out/polyak" # the runs use this copy, so a rebuild does not change them midway
list=$out/runs.txt
: > "$list"
for s in $seeds; do
    for m in $methods; do
        echo "$m $s" >> "$list"
    done
done
run_one() {
    m=$1 s=$2
    d=$out/$m-s$s
    [ -f "$d/metrics.json" ] && return 0
    rm -rf "$d"
    mkdir -p "$d"
    cmd="nice -n 5 $out/polyak ctp --data $data --out $d --method $m --epochs $epochs --seed $s --order-seed $s --threads 1 $args"
    echo "$cmd" > "$d.cmd"
    /usr/bin/time -f "%U %S %e" -o "$d.time" $cmd > "$d.log" 2>&1 || { echo "ctp_table: $m seed $s failed (see $d.log)" >&2; return 1; }
    echo "ctp_table: $m seed $s done: $(tail -1 "$d.log")" >&2
}
export -f run_one
export out data epochs args
xargs -P "$jobs" -L 1 bash -c 'run_one $0 $1' < "$list"

/usr/bin/python3 - "$out" "$seeds" "$methods" <<'PY'
import json, os, sys
out, seeds, methods = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
rows, table, cpu_total, wall_max = [], {}, 0.0, 0.0
for m in methods:
    for s in seeds:
        d = f"{out}/{m}-s{s}"
        met = json.load(open(f"{d}/metrics.json"))
        u, sy, w = map(float, open(f"{d}.time").read().split()[-3:])
        cpu_total += u + sy
        table[(m, s)] = dict(R_m=met["R_m"], BWT=met["BWT"], i2t=met["i2t"], t2i=met["t2i"],
                             cpu=u + sy, wall=w, order=met["task_names"])
def fmt(v, sign=False):
    return "-" if v is None else (f"{100*v:+.2f}" if sign else f"{100*v:.2f}")
lines = ["| method | " + " | ".join(f"R_m s{s}" for s in seeds) + " | R_m mean | " +
         " | ".join(f"BWT s{s}" for s in seeds) + " | BWT mean | CPU s (mean) |",
         "|---|" + "---|" * (2 * len(seeds) + 3)]
for m in methods:
    r = [table[(m, s)]["R_m"] for s in seeds]
    b = [table[(m, s)]["BWT"] for s in seeds]
    bm = None if any(x is None for x in b) else sum(b) / len(b)
    cpu = sum(table[(m, s)]["cpu"] for s in seeds) / len(seeds)
    lines.append(f"| {m} | " + " | ".join(fmt(x) for x in r) + f" | {fmt(sum(r)/len(r))} | " +
                 " | ".join(fmt(x, True) for x in b) + f" | {fmt(bm, True)} | {cpu:.0f} |")
checks = []
def ahead(a, b, key):
    return all(table[(a, s)][key] > table[(b, s)][key] for s in seeds)
if "ctp" in methods and "seqf" in methods:
    checks.append(f"CTP ahead of SeqF in final R_m on every seed: {ahead('ctp', 'seqf', 'R_m')}")
    checks.append(f"CTP ahead of SeqF in BWT on every seed: {ahead('ctp', 'seqf', 'BWT')}")
for ab, part in (("ctp-no-topo", "topology preservation"), ("ctp-no-cm", "compatible momentum")):
    if ab in methods and "ctp" in methods:
        checks.append(f"{part} helps (CTP > CTP without it) in R_m on every seed: "
                      f"{ahead('ctp', ab, 'R_m')}; in BWT: {ahead('ctp', ab, 'BWT')}")
lines.append("")
lines.append(f"Total CPU time of the table (user + sys, all runs): {cpu_total:.0f} s "
             f"({cpu_total/3600:.2f} h)")
lines += checks
lines.append("")
lines.append("Task orders: " + "; ".join(f"s{s}: " + ", ".join(table[(methods[0], s)]["order"])
                                          for s in seeds))
text = "\n".join(lines)
print(text)
open(f"{out}/table.md", "w").write(text + "\n")
json.dump({f"{m}-s{s}": v for (m, s), v in table.items()}, open(f"{out}/table.json", "w"),
          indent=1)
PY
