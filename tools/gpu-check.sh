#!/bin/sh
# gpu-check.sh - runs the Vulkan op tests and the benchmarks on a GPU machine that has the
# NVIDIA driver but no Vulkan loader and none of our Debian libraries (the lent device
# machine). Everything it needs travels with the working tree:
#   .gl/      Debian's libvulkan1 (and GL loader) .debs   (see the device README's recipe)
#   .gpu/lib  the shared libraries `build/polyak` links, made by `tools/gpu-check.sh --prepare`
#   build/    this machine's Release build
# On the GPU machine:  sh tools/gpu-check.sh      (writes $OUT/gpu-check.log and JSON files)
# Budget: under 8 minutes in all.
set -eu
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
    # Here (the build machine): collect the .debs of every library the binaries need.
    mkdir -p .gl .gpu/debs .gpu/lib
    grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >> .git/info/exclude
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    mkdir -p /tmp/amd64/partial
    apt-get $o update -qq
    (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
    (cd .gpu/debs && apt-get $o download libopenblas0-pthread libopenblas0 libgfortran5 \
        libcjson1 libpng16-16 libturbojpeg0 libcheck0 libsubunit0 2>/dev/null || true)
    for f in .gpu/debs/*.deb; do dpkg -x "$f" .gpu/root; done
    find .gpu/root -name '*.so*' -exec cp -P {} .gpu/lib/ \; 2>/dev/null || true
    echo "prepared: carry .gl, .gpu and build"
    exit 0
fi

OUT=${OUT:-/tmp/gpu-check-out}
mkdir -p "$OUT"
log="$OUT/gpu-check.log"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export LD_LIBRARY_PATH="$PWD/.gpu/lib:$PWD/.gpu/root/usr/lib/x86_64-linux-gnu:$PWD/.gpu/root/usr/lib/x86_64-linux-gnu/openblas-pthread:${LD_LIBRARY_PATH:-}"
if [ ! -e /usr/share/vulkan/icd.d/nvidia_icd.json ] && [ -e /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
{
    echo "== devices"; ./build/polyak devices
    echo "== Vulkan op tests"
    for t in build/tests/ops_test_* build/tests/nn_test_* build/tests/vk_test_* build/tests/splat_test_* build/tests/optim_test_*; do
        [ -x "$t" ] || continue
        echo "-- $t"; CK_RUN_CASE=vulkan POLYAK_DEVICE=vk timeout 120 "$t" || echo "FAILED: $t"
    done
    echo "== benchmarks"
    timeout 120 ./build/polyak bench ops --device vk --json "$OUT/bench-ops-vk.json" || echo "bench ops failed"
} 2>&1 | tee "$log"
