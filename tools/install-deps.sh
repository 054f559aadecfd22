#!/bin/sh
# install-deps.sh - installs every Debian package Polyak needs to build, test and run its demo.
# Idempotent: installs only what is missing. Works as root, uses sudo otherwise.
set -eu

# Needed by `make build`, `make test` and `make demo` (the demo reads dataset-fashion-mnist).
# libopenmpi-dev and openmpi-bin: data-parallel training under mpirun (tasks/common/dist.h) and
# its tests (tests/dist, `mpirun --oversubscribe -np 2`); the build works without them.
PACKAGES="build-essential cmake pkg-config clang clang-format libclang-rt-14-dev \
libvulkan-dev mesa-vulkan-drivers vulkan-validationlayers vulkan-tools glslang-tools \
libpng-dev libturbojpeg0-dev zlib1g-dev libcjson-dev libopenblas-dev check \
dataset-fashion-mnist libopenmpi-dev openmpi-bin colmap ffmpeg"
# colmap and ffmpeg: `polyak splat prepare` (and `splat train --data PHOTOS_DIR`) runs COLMAP for
# structure from motion and ffmpeg to take frames from videos; tests/prepare needs them.

# Wanted but never required: python3-torch writes the golden files (`make goldens`; the files
# are committed) and is the benchmarks' peer (they skip it when `import torch` fails). It is
# large and not on every architecture, so failing to install it must not fail `make test`.
# povray regenerates the rendered scenes (assets/make_scene.sh; assets/make_city.sh, the town
# the Momentum-GS comparisons train on, generated on demand and not committed).
# chromium: tests/report/test_report_chromium renders `polyak report` pages headless (screenshot
# not blank, no console errors); the test is skipped where chromium is absent.
OPTIONAL="python3-torch povray chromium"
# Not installed here: npm, which tools/get-emoji-pairs.sh (the data of `polyak ctp`'s emoji
# benchmark) uses to fetch its packages; neither the build nor the tests need it
# (`apt-get install npm` where you make that benchmark).

missing_of() {
    out=""
    for p in $1; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            out="$out $p"
        fi
    done
    echo "$out"
}

missing=$(missing_of "$PACKAGES")
optional=$(missing_of "$OPTIONAL")
if [ -z "$missing" ] && [ -z "$optional" ]; then
    echo "install-deps: all packages present"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
$SUDO apt-get update -qq
if [ -n "$missing" ]; then
    echo "install-deps: installing$missing"
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
if [ -n "$optional" ]; then
    echo "install-deps: installing optional$optional"
    # one at a time, so one that cannot be installed does not keep the others out
    for p in $optional; do
        if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            "$p"; then
            echo "install-deps: warning: could not install $p; tests do not need it" \
                "(benchmarks run without a PyTorch peer, \`make goldens\` needs python3-torch," \
                "the Chromium report test is skipped without chromium)" >&2
        fi
    done
fi
