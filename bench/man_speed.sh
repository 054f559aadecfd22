#!/bin/sh
# bench/man_speed.sh - times one ResNet-32 E2E training epoch of `polyak man` against the
# PyTorch CPU peer (bench/man_peer.py): same Fashion-MNIST subset, batch, augmentation,
# optimizer and thread count. Runs the two alternately (contention on a shared machine hits
# both alike) and prints each epoch time and the ratios polyak / PyTorch of the fastest
# epochs (the least disturbed) and of the medians.
# usage: bench/man_speed.sh [BUILD_DIR] [THREADS] [BATCH] [TRAIN_LIMIT] [ROUNDS]
set -e
build=${1:-build}
threads=${2:-2}
batch=${3:-64}
limit=${4:-2048}
rounds=${5:-2}
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
i=0
while [ $i -lt "$rounds" ]; do
  /usr/bin/python3 "$here/man_peer.py" --train-limit "$limit" --batch "$batch" \
    --threads "$threads" --epochs 1 | sed -n 's/.*"epoch_seconds": \[\([0-9.]*\)\].*/\1/p' >> "$out/torch"
  rm -rf "$out/run"
  POLYAK_THREADS=$threads OPENBLAS_NUM_THREADS=${POLYAK_BLAS_THREADS:-$threads} \
    "$build/polyak" man --method e2e --epochs 1 --batch "$batch" --train-limit "$limit" \
    --test-limit "$batch" --threads "$threads" --flip no --out "$out/run" > /dev/null 2>&1
  sed -n 's/.*"epoch_seconds": \([0-9.]*\),/\1/p' "$out/run/metrics.json" >> "$out/polyak"
  i=$((i + 1))
done
med() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mn() { sort -n "$1" | head -1; }
echo "pytorch epoch s: $(tr '\n' ' ' < "$out/torch")"
echo "polyak  epoch s: $(tr '\n' ' ' < "$out/polyak")"
echo "threads $threads, batch $batch, $limit images: polyak/pytorch fastest" \
  "$(echo "$(mn "$out/polyak") $(mn "$out/torch")" | awk '{printf "%.2f", $1/$2}'), median" \
  "$(echo "$(med "$out/polyak") $(med "$out/torch")" | awk '{printf "%.2f", $1/$2}')"
