#!/bin/sh
# gpu-check.sh - runs the training loops, the benchmarks and the Vulkan op tests on a GPU
# machine that has the NVIDIA driver but no Vulkan loader and none of our Debian libraries (the
# lent device machine), printing the per-step Vulkan counters and ms per step. Everything it
# needs travels with the working tree:
#   .gl/        Debian's libvulkan1 (and GL loader) .debs   (the device README's recipe)
#   .gpu/lib    the shared libraries the binaries link            } made here by
#   .gpu/bin    build/polyak and the Vulkan test programs         } `sh tools/gpu-check.sh
#   .gpu/fmnist 5,000 + 2,000 Fashion-MNIST images (gzip IDX)     }  --prepare` (~52 MB)
#   .gpu/emoji  2 emoji tasks x (192 + 48) pairs (ctp)            }
# On the GPU machine (device tool: carry [".gl", ".gpu"]):
#   sh tools/gpu-check.sh      (writes $OUT/gpu-check.log, metrics and benchmark JSON files)
# Order: devices, bundled-scene splat train (1,000 steps on Vulkan, then the CPU backend on the
# same run for the ms/step ratio), 300 Scaffold-GS steps on Vulkan, 200 Momentum-GS steps (4
# blocks, 2 lanes) on Vulkan, one MAN epoch on Vulkan, a short DINO pretraining run on Vulkan
# (20 steps), a short CTP run on Vulkan (12 steps after a text MLM epoch), op and splat
# benchmarks, Vulkan tests. Each
# part has its own timeout and the whole stops starting parts after 7 minutes, so
# one call stays under 8 minutes.
set -eu
cd "$(dirname "$0")/.."

# The Vulkan test programs that travel (each ~1.3 MB: all of them would not fit the 64 MiB).
TESTS="vk_test_vkctx vk_test_vk_resident vk_test_vk_splat_train vk_test_vk_scaffold_train
vk_test_vk_train_loops vk_test_vk_ctp_train ops_test_ops_basic ops_test_ops_nn ops_test_ops_attention
splat_test_splat_vk optim_test_optim_vk"

if [ "${1:-}" = "--prepare" ]; then
    # Here (the build machine): the loader .debs, the libraries the binaries link, the binaries
    # and a Fashion-MNIST subset, all under .gl/ and .gpu/ (both ignored by git).
    cmake --build build -j2 --target polyak $TESTS
    rm -rf .gpu
    mkdir -p .gl .gpu/debs .gpu/lib .gpu/bin .gpu/fmnist
    ex=$(git rev-parse --git-path info/exclude) # a worktree's .git is a file
    mkdir -p "$(dirname "$ex")"
    grep -qx '/.gl/' "$ex" 2>/dev/null || echo /.gl/ >> "$ex"
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    mkdir -p /tmp/amd64/partial
    apt-get $o update -qq
    (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
    (cd .gpu/debs && apt-get $o download libopenblas0-pthread libgfortran5 libquadmath0 \
        libcjson1 libpng16-16 libturbojpeg0 libsubunit0)
    for f in .gpu/debs/*.deb; do dpkg -x "$f" .gpu/root; done
    find .gpu/root -name '*.so*' ! -name 'liblapack*' ! -name 'libblas*' -exec cp -P {} .gpu/lib/ \;
    rm -rf .gpu/debs .gpu/root
    cp build/polyak .gpu/bin/
    for t in $TESTS; do cp "build/tests/$t" .gpu/bin/; done
    pwd > .gpu/srcdir # the tests read goldens under the source folder they were built in
    # one MAN epoch's data: the first 5,000 training and 2,000 test images (the full set would
    # not fit), as gzip IDX files
    /usr/bin/python3 - "${FMNIST:-/usr/share/datasets/fashion-mnist}" .gpu/fmnist <<'PY'
import gzip, struct, sys
src, dst = sys.argv[1], sys.argv[2]
for prefix, keep in (("train", 5000), ("t10k", 2000)):
    for kind, head in (("images-idx3", 16), ("labels-idx1", 8)):
        name = f"{prefix}-{kind}-ubyte.gz"
        raw = gzip.open(f"{src}/{name}").read()
        fields = list(struct.unpack(">%dI" % (head // 4), raw[:head]))
        per = 1
        for d in fields[2:]:
            per *= d
        fields[1] = keep
        with gzip.open(f"{dst}/{name}", "wb") as f:
            f.write(struct.pack(">%dI" % (head // 4), *fields) + raw[head:head + keep * per])
PY
    # ctp's data: the first two tasks of the emoji benchmark (file order), 192 training and 48
    # held-out pairs each, with their pictures
    /usr/bin/python3 - "${EMOJI:-/work/data/emoji}" .gpu/emoji <<'PY'
import json, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
tasks, count = [], {}
os.makedirs(dst, exist_ok=True)
with open(f"{dst}/pairs.jsonl", "w") as out:
    for line in open(f"{src}/pairs.jsonl"):
        p = json.loads(line)
        if p["task"] not in tasks:
            if len(tasks) == 2:
                continue
            tasks.append(p["task"])
        key = (p["task"], p["split"])
        if count.get(key, 0) >= (192 if p["split"] == "train" else 48):
            continue
        count[key] = count.get(key, 0) + 1
        os.makedirs(os.path.dirname(f"{dst}/{p['image']}"), exist_ok=True)
        shutil.copyfile(f"{src}/{p['image']}", f"{dst}/{p['image']}")
        out.write(line)
PY
    du -sh .gl .gpu
    echo "prepared: carry .gl and .gpu"
    exit 0
fi

OUT=${OUT:-/tmp/gpu-check-out}
mkdir -p "$OUT"
log="$OUT/gpu-check.log"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export LD_LIBRARY_PATH="$PWD/.gpu/lib:${LD_LIBRARY_PATH:-}"
src=$(cat .gpu/srcdir)
if [ "$src" != "$PWD" ] && [ ! -e "$src" ]; then mkdir -p "$(dirname "$src")"; ln -s "$PWD" "$src"; fi
bin=.gpu/bin
if [ ! -e /usr/share/vulkan/icd.d/nvidia_icd.json ] && [ -e /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
start=$(date +%s)
# Runs "$@" unless 7 minutes have passed; says so when it skips.
part() {
    if [ $(( $(date +%s) - start )) -gt 420 ]; then echo "SKIPPED (time budget): $*"; return 0; fi
    "$@" || echo "FAILED ($?): $*"
}
# Prints a run's per-step Vulkan counters and ms per step from its metrics.json.
counters() {
    echo "-- $1/metrics.json"
    grep -E '^  "(device|vulkan|vulkan_text_mlm|ms_per_step|cpu_ms_per_step|seconds_per_step|cpu_seconds_per_step|epoch_seconds|psnr|ssim|test_accuracy|knn_top1|gaussians)":' "$1/metrics.json" 2>/dev/null || echo "(no metrics)"
}
# Copies a run's metrics.json to $OUT/$2 when it exists.
keep() { [ -f "$1/metrics.json" ] && cp "$1/metrics.json" "$OUT/$2" || true; }
run=/tmp/gpu-check-runs
rm -rf "$run"; mkdir -p "$run"
{
    echo "== devices"; part "$bin/polyak" devices
    echo "== splat train: bundled scene, 1000 steps, Vulkan"
    part timeout 150 "$bin/polyak" splat train --data assets/scene --out "$run/splat-vk" --iters 1000 --device vk
    counters "$run/splat-vk"; keep "$run/splat-vk" splat-vk-metrics.json
    echo "== splat train: same run on the CPU backend"
    part timeout 150 "$bin/polyak" splat train --data assets/scene --out "$run/splat-cpu" --iters 1000 --device cpu
    counters "$run/splat-cpu"; keep "$run/splat-cpu" splat-cpu-metrics.json
    echo "== splat train --model scaffold: bundled scene, 300 steps, Vulkan (resident decoder source)"
    part timeout 45 "$bin/polyak" splat train --data assets/scene --out "$run/scaffold-vk" --model scaffold --iters 300 --device vk
    counters "$run/scaffold-vk"; keep "$run/scaffold-vk" scaffold-vk-metrics.json
    echo "== splat train --model momentum-gs: bundled scene, 4 blocks, 2 in parallel, 200 steps, Vulkan (resident blocks)"
    part timeout 45 "$bin/polyak" splat train --data assets/scene --out "$run/mgs-vk" --model momentum-gs --blocks 4 --parallel-blocks 2 --block-steps 50 --iters 200 --device vk
    counters "$run/mgs-vk"; keep "$run/mgs-vk" mgs-vk-metrics.json
    echo "== man: one epoch (5,000 Fashion-MNIST images, resnet32, dgl+man K=4), Vulkan"
    part timeout 120 "$bin/polyak" man --data .gpu/fmnist --out "$run/man-vk" --epochs 1 --blocks 4 --method dgl+man --batch 128 --test-limit 2000 --device vk
    counters "$run/man-vk"; keep "$run/man-vk" man-vk-metrics.json
    echo "== pretrain: DINO, vit_pico_patch7_28, 20 steps of 64 images (2 global + 6 local crops), Vulkan"
    part timeout 60 "$bin/polyak" pretrain --data .gpu/fmnist --out "$run/pretrain-vk" --method dino --arch vit_pico_patch7_28 --epochs 1 --batch 64 --train-limit 1280 --test-limit 500 --knn-train 1000 --local-crops 6 --probe adamw --probe-blocks 1 --probe-epochs 5 --device vk
    counters "$run/pretrain-vk"; keep "$run/pretrain-vk" pretrain-vk-metrics.json
    echo "== ctp: CTP on 2 emoji tasks (192 + 48 pairs each), 32x32, batch 32, a text MLM epoch, Vulkan"
    part timeout 90 "$bin/polyak" ctp --data .gpu/emoji --out "$run/ctp-vk" --method ctp --epochs 1 --batch 32 --img-size 32 --text-mlm-epochs 1 --device vk
    counters "$run/ctp-vk"; keep "$run/ctp-vk" ctp-vk-metrics.json
    echo "== benchmarks"
    part timeout 90 "$bin/polyak" bench ops --device vk --no-peer --json "$OUT/bench-ops-vk.json"
    part timeout 60 "$bin/polyak" bench splat --device vk --json "$OUT/bench-splat-vk.json"
    echo "== Vulkan tests"
    export POLYAK_DEVICE=vk
    for t in "$bin"/vk_test_*; do # every case of these is a Vulkan one
        echo "-- $t"; part timeout 90 "$t"
    done
    for t in "$bin"/splat_test_* "$bin"/optim_test_*; do # Vulkan suites (their case is "vk")
        echo "-- $t"; part timeout 60 "$t"
    done
    export CK_RUN_CASE=vulkan # the op suites: their Vulkan case only
    for t in "$bin"/ops_test_*; do
        echo "-- $t"; part timeout 60 "$t"
    done
    echo "== done in $(( $(date +%s) - start )) s"
} 2>&1 | tee "$log"
