#!/bin/sh
# install-deps.sh - installs every Debian package Polyak needs to build, test and run its demo.
# Idempotent: installs only what is missing. Works as root, uses sudo otherwise.
set -eu

PACKAGES="build-essential cmake pkg-config clang clang-format libclang-rt-14-dev \
libvulkan-dev mesa-vulkan-drivers vulkan-validationlayers vulkan-tools glslang-tools \
libpng-dev libturbojpeg0-dev zlib1g-dev libcjson-dev libopenblas-dev check \
dataset-fashion-mnist python3-torch povray"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -z "$missing" ]; then
    echo "install-deps: all packages present"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
echo "install-deps: installing$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
