#!/bin/bash
# bench/cl_table.sh - the LAE table of BENCHMARKS.md: `polyak cl` on a class-incremental
# split (default Fashion-MNIST, 5 tasks of 2 classes, the DINO backbone of `polyak pretrain`)
# for 3 class orders (natural, and the seeded permutations 1 and 2) x {linear, seqft, lae,
# joint} with the PETs adapter, lora and prefix; lae reports its ensemble, online-only and
# offline-only accuracies from the same run. Runs JOBS runs at once (nice -n NICE, 1 thread
# each), skips runs already finished in OUT, runs that another instance holds (OUT/<run>.lock,
# so several instances may share OUT; remove a stale lock by hand) and resumes interrupted
# ones, then prints the table (A_last, A_avg, forgetting in %, per order and their mean) and
# the CPU time (user + sys) of all runs.
#
# Usage: bench/cl_table.sh            (environment: POLYAK OUT BACKBONE ARCH DATA TASKS
#                                       EPOCHS BATCH PER_CLASS AUGMENT PET_BLOCKS JOBS NICE
#                                       ORDERS PETS METHODS; ARCH empty: the backbone's
#                                       metadata; PET_BLOCKS empty: polyak's default)
set -euo pipefail
POLYAK=${POLYAK:-./build/polyak}
OUT=${OUT:-/tmp/cl_table}
BACKBONE=${BACKBONE:-/work/runs/dino36/backbone.safetensors}
ARCH=${ARCH-vit_pico_patch7_28}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
TASKS=${TASKS:-5}
EPOCHS=${EPOCHS:-5}
BATCH=${BATCH:-24}
PER_CLASS=${PER_CLASS:-2000}   # training images per class (0: all)
AUGMENT=${AUGMENT:-none}      # training augmentation: none or lae
PET_BLOCKS=${PET_BLOCKS-}
JOBS=${JOBS:-3}
NICE=${NICE:-10}
METHODS=${METHODS:-"linear seqft lae joint"}
ORDERS=${ORDERS:-"0 1 2"}
PETS=${PETS:-"adapter lora prefix"}
mkdir -p "$OUT"

has() { [[ " $METHODS " == *" $1 "* ]]; }
runs=()
for o in $ORDERS; do
    has linear && runs+=("linear none $o")
    for p in $PETS; do
        for m in seqft lae joint; do has $m && runs+=("$m $p $o"); done
    done
done

one() {
    local method=$1 pet=$2 order=$3
    local name="order${order}_${method}"
    [ "$pet" != none ] && name="${name}_${pet}"
    local dir="$OUT/$name"
    if [ -f "$dir/metrics.json" ] && grep -q '"A_last": [0-9]' "$dir/metrics.json" &&
        [ -f "$dir/time.txt" ]; then
        return 0
    fi
    mkdir "$OUT/$name.lock" 2>/dev/null || return 0
    mkdir -p "$dir"
    local args=(cl --method "$method" --backbone "$BACKBONE" --data "$DATA"
        --tasks "$TASKS" --epochs "$EPOCHS" --batch "$BATCH" --class-order-seed "$order"
        --augment "$AUGMENT" --threads 1 --out "$dir" --resume)
    [ -n "$ARCH" ] && args+=(--arch "$ARCH")
    [ "$pet" != none ] && args+=(--pet "$pet")
    [ "$pet" != none ] && [ -n "$PET_BLOCKS" ] && args+=(--pet-blocks "$PET_BLOCKS")
    [ "$PER_CLASS" != 0 ] && args+=(--train-per-class "$PER_CLASS")
    echo "cl_table: $name" >&2
    nice -n "$NICE" /usr/bin/time -f "%U %S %e" -o "$dir/time.txt" "$POLYAK" "${args[@]}" \
        >"$dir/stdout.txt" 2>"$dir/stderr.txt" || echo "cl_table: $name failed" >&2
    rmdir "$OUT/$name.lock"
}

for r in "${runs[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
    one $r &
done
wait

/usr/bin/python3 - "$OUT" "$ORDERS" "$PETS" <<'PY'
import json, os, sys
out, orders, pets = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
def load(name):
    p = os.path.join(out, name, "metrics.json")
    return json.load(open(p)) if os.path.exists(p) else None
def cpu(name):
    p = os.path.join(out, name, "time.txt")
    w = open(p).read().split() if os.path.exists(p) else []
    return float(w[-3]) + float(w[-2]) if len(w) >= 3 else 0.0
rows = [("linear", "linear", "")]
for p in pets:
    rows.append((f"seqft/{p}", f"seqft_{p}", ""))
    for v in ("", "_online", "_offline"):
        rows.append((f"lae/{p} " + (v[1:] if v else "ensemble"), f"lae_{p}", v))
for p in pets:
    rows.append((f"joint/{p}", f"joint_{p}", ""))
f = lambda x: "    -" if x is None else f"{100 * x:5.2f}"
print("A_last, A_avg, forgetting (%) per class order (0: natural, 1 and 2: seeded permutations)")
print(f"{'method':21s}" + "".join(f" | order {o}: Alast  Aavg forgt" for o in orders) + " |  mean: Alast  Aavg forgt")
for label, name, v in rows:
    line, acc = f"{label:21s}", {"A_last": [], "A_avg": [], "forgetting": []}
    for o in orders:
        m = load(f"order{o}_{name}")
        vals = [m.get(k + v) if m else None for k in ("A_last", "A_avg", "forgetting")]
        for k, x in zip(acc, vals):
            if x is not None: acc[k].append(x)
        line += " |          " + " ".join(f(x) for x in vals)
    mean = [sum(a) / len(a) if len(a) == len(orders) else None for a in acc.values()]
    print(line + " |        " + " ".join(f(x) for x in mean))
# the paper's effect: ensemble >= each expert, > seqft, < joint (A_last), per order and PET
print("LAE's effect in A_last (ensemble >= online, >= offline, > seqft, < joint):")
for p in pets:
    for o in orders:
        l, s, j = load(f"order{o}_lae_{p}"), load(f"order{o}_seqft_{p}"), load(f"order{o}_joint_{p}")
        if not (l and s and j) or l.get("A_last") is None:
            print(f"  {p} order {o}: incomplete"); continue
        e = l["A_last"]
        c = [e >= l["A_last_online"], e >= l["A_last_offline"], e > s["A_last"], e < j["A_last"]]
        print(f"  {p:7s} order {o}: " + " ".join(("yes" if x else "NO ") for x in c))
total = sum(cpu(d) for d in os.listdir(out) if os.path.isdir(os.path.join(out, d)))
print(f"CPU time (user + sys) of all runs: {total:.0f} s ({total / 60:.1f} min)")
PY
