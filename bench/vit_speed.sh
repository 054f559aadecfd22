#!/bin/sh
# bench/vit_speed.sh - times a ViT training step (forward, cross-entropy on a 10-class head,
# backward, AdamW) of `polyak bench vit` against the PyTorch 1.13 CPU peer bench/vit_peer.py,
# for the Fashion-MNIST configuration (vit_nano_patch4_28, 1 channel, batch 64) and
# vit_small_patch16_224 (batch 8). Both run with the same thread count (POLYAK_THREADS,
# OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and torch.set_num_threads), alternately round by round
# (load from other processes on a shared machine hits both alike). Each round is one process
# per side: WARMUP untimed steps, then STEPS timed ones, whose median wall and process CPU time
# are the round's figures. Prints every round and the medians over rounds with the ratios
# polyak / PyTorch (below 1: Polyak is faster).
# usage: bench/vit_speed.sh [BUILD_DIR] [THREADS] [ROUNDS] [STEPS] [CONFIGS]
set -e
build=${1:-build}
threads=${2:-2}
rounds=${3:-3}
steps=${4:-5}
configs=${5:-"nano small"}
warmup=2
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export POLYAK_THREADS=$threads OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
# the median of a JSON line's list `key`
jmed() {
  sed -n "s/.*\"$1\": \[\([^]]*\)\].*/\1/p" | tr ',' '\n' | sort -n |
    awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
}
med() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for cfg in $configs; do
  : > "$out/$cfg.torch.wall"; : > "$out/$cfg.torch.cpu"
  : > "$out/$cfg.polyak.wall"; : > "$out/$cfg.polyak.cpu"
  i=0
  while [ $i -lt "$rounds" ]; do
    /usr/bin/python3 "$here/vit_peer.py" --config "$cfg" --threads "$threads" --steps "$steps" \
      --warmup $warmup > "$out/line"
    jmed step_seconds < "$out/line" >> "$out/$cfg.torch.wall"
    jmed cpu_seconds < "$out/line" >> "$out/$cfg.torch.cpu"
    "$build/polyak" bench vit --config "$cfg" --threads "$threads" --steps "$steps" \
      --warmup $warmup > "$out/line"
    jmed step_seconds < "$out/line" >> "$out/$cfg.polyak.wall"
    jmed cpu_seconds < "$out/line" >> "$out/$cfg.polyak.cpu"
    echo "$cfg round $((i + 1)): pytorch $(tail -1 "$out/$cfg.torch.wall") s" \
      "(cpu $(tail -1 "$out/$cfg.torch.cpu")), polyak $(tail -1 "$out/$cfg.polyak.wall") s" \
      "(cpu $(tail -1 "$out/$cfg.polyak.cpu"))"
    i=$((i + 1))
  done
  pw=$(med "$out/$cfg.polyak.wall"); tw=$(med "$out/$cfg.torch.wall")
  pc=$(med "$out/$cfg.polyak.cpu"); tc=$(med "$out/$cfg.torch.cpu")
  echo "$cfg, $threads thread(s), median of $rounds rounds x $steps steps:" \
    "pytorch $tw s (cpu $tc), polyak $pw s (cpu $pc); polyak/pytorch wall" \
    "$(echo "$pw $tw" | awk '{printf "%.2f", $1/$2}'), cpu $(echo "$pc $tc" | awk '{printf "%.2f", $1/$2}')"
done
