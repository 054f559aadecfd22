#!/bin/bash
# ctp_table.sh - the CTP table on the emoji benchmark: methods ctp, seqf, joint and the two
# ablations (ctp-no-topo, ctp-no-cm), 3 seeds (each seed = its own task order and
# initialisation), CPU backend, one thread per run, JOBS runs at a time under nice -n NICE. Each
# run's CPU time (user + sys) and wall time come from /usr/bin/time. Prints the table and the
# checks of the paper's effect (bench/ctp_table_summary.py); writes OUT/table.md and
# OUT/table.json.
#
# Usage: bench/ctp_table.sh [DATA (default /work/data/emoji)] [OUT (default /work/runs/ctp-table)]
#   env: EPOCHS (per task, default 8), JOBS (default 4), SEEDS (default "1 2 3"),
#        METHODS (default "ctp seqf joint ctp-no-topo ctp-no-cm"), POLYAK (the binary),
#        CTP_ARGS (extra options, default: the model of BENCHMARKS.md at polyak's default lr,
#        1e-4; the tables before 2026-12-08 passed --lr 5e-4), NICE (default 5),
#        BACKBONE (a `polyak pretrain` backbone file: the image encoder starts from it; its
#        configuration replaces --patch/--dim/--depth/--heads)
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
args=${CTP_ARGS:---dim 64 --depth 2 --patch 8 --txt-dim 64 --txt-depth 2}
nice=${NICE:-5}
if [ -n "${BACKBONE:-}" ]; then
    [ -f "$BACKBONE" ] || { echo "ctp_table: no backbone $BACKBONE" >&2; exit 1; }
    args="$args --backbone $BACKBONE"
fi
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
    cmd="nice -n $nice $out/polyak ctp --data $data --out $d --method $m --epochs $epochs --seed $s --order-seed $s --threads 1 $args"
    echo "$cmd" > "$d.cmd"
    /usr/bin/time -f "%U %S %e" -o "$d.time" $cmd > "$d.log" 2>&1 || { echo "ctp_table: $m seed $s failed (see $d.log)" >&2; return 1; }
    echo "ctp_table: $m seed $s done: $(tail -1 "$d.log")" >&2
}
export -f run_one
export out data epochs args nice
xargs -P "$jobs" -L 1 bash -c 'run_one $0 $1' < "$list"

/usr/bin/python3 "$here/bench/ctp_table_summary.py" "$out" "$data" "$seeds" "$methods"
