#!/bin/sh
# fuzz.sh - builds the libFuzzer harnesses in tests/fuzz/ with clang (ASan + UBSan) into
# build-fuzz/ and runs each for a bounded time. Usage: tools/fuzz.sh [SECONDS_PER_HARNESS] [NAME...]
# Seeds come from small files generated here (and the mouse-photos COLMAP model when present);
# each harness keeps its growing corpus in build-fuzz/corpus/<name>/. Exit status is non-zero if
# any harness finds a crash (the reproducer is left in build-fuzz/).
set -eu
secs=${1:-60}
[ $# -gt 0 ] && shift
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build-fuzz
mkdir -p "$out/obj" "$out/corpus"
CC=${CC:-clang}
CFLAGS="-std=c11 -g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I$root/io -I$root/common"
LIBS="$(pkg-config --libs libpng libturbojpeg libcjson zlib) -lm"

objs=""
for src in "$root"/io/*.c "$root"/common/status.c; do
    o=$out/obj/$(basename "$src" .c).o
    $CC $CFLAGS -c "$src" -o "$o"
    objs="$objs $o"
done

names=${*:-$(cd "$root/tests/fuzz" && ls fuzz_*.c | sed 's/\.c$//')}

seed() { # seed NAME FILE CONTENT(printf format)
    mkdir -p "$out/corpus/$1"
    printf "$3" > "$out/corpus/$1/$2"
}
seed fuzz_ply ascii 'ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n1 2 3 4 5 6\n7 8 9 10 11 12\n'
seed fuzz_ply gs 'ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\nproperty float f_dc_0\nproperty float f_dc_1\nproperty float f_dc_2\nproperty float opacity\nproperty float scale_0\nproperty float scale_1\nproperty float scale_2\nproperty float rot_0\nproperty float rot_1\nproperty float rot_2\nproperty float rot_3\nend_header\n0000111122223333444455556666777788889999aaaabbbbccccdddd'
seed fuzz_safetensors small '\106\0\0\0\0\0\0\0{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"__metadata__":{"k":"v"}}  \0\074\0\300'
seed fuzz_idx labels '\0\0\010\001\0\0\0\004\001\002\003\004'
seed fuzz_idx images '\0\0\010\003\0\0\0\002\0\0\0\002\0\0\0\002abcdefgh'
seed fuzz_transforms blender '{"camera_angle_x":0.69,"w":800,"h":800,"frames":[{"file_path":"./train/r_0","split":"test","transform_matrix":[[1,0,0,0],[0,0,-1,2],[0,1,0,3],[0,0,0,1]]}]}'
seed fuzz_transforms ns '{"fl_x":500,"fl_y":510,"cx":320,"cy":240,"w":640,"h":480,"k1":0.1,"frames":[{"file_path":"a.png","fl_x":400,"transform_matrix":[[1,0,0,0],[0,1,0,0],[0,0,1,0]]}]}'
seed fuzz_colmap_text model '1 OPENCV 64 48 50 51 32 24 0.1 0.01 0.001 0.002\n2 SIMPLE_RADIAL 64 48 50 32 24 0.1\0# c\n1 1 0 0 0 0.5 0.2 0.1 1 a.png\n1.5 2.5 -1\n2 0.7 0.1 0.2 0.3 1 2 3 2 b.png\n\n\0001 1.5 2.5 3.5 10 20 30 0.5 1 0 2 0\n'
mkdir -p "$out/corpus/fuzz_jpeg" "$out/corpus/fuzz_colmap_bin"
# A tiny JPEG seed and a COLMAP binary seed are written by python (struct/zlib-free, no PIL).
/usr/bin/python3 - "$out/corpus" "$root" <<'PY' || true
import os, struct, sys
corpus, root = sys.argv[1], sys.argv[2]
def cam(cid, model, w, h, params):
    return struct.pack('<iiQQ', cid, model, w, h) + struct.pack('<%dd' % len(params), *params)
cams = struct.pack('<Q', 2) + cam(1, 1, 64, 48, [50, 51, 32, 24]) + cam(2, 4, 64, 48, [50, 51, 32, 24, .1, .01, .001, .002])
imgs = struct.pack('<Q', 1) + struct.pack('<i7di', 5, 1, 0, 0, 0, 1, 2, 3, 2) + b'a.png\0' + struct.pack('<Q', 1) + struct.pack('<ddq', 1.5, 2.5, -1)
pts = struct.pack('<Q', 1) + struct.pack('<Q3d3BdQ', 1, 1, 2, 3, 10, 20, 30, .5, 1) + struct.pack('<ii', 5, 0)
open(os.path.join(corpus, 'fuzz_colmap_bin', 'small'), 'wb').write(struct.pack('<II', len(cams), len(imgs)) + cams + imgs + pts)
m = '/work/shared/datasets/mouse-photos/sparse/0'
if os.path.isdir(m):
    c = open(os.path.join(m, 'cameras.bin'), 'rb').read()
    i = open(os.path.join(m, 'images.bin'), 'rb').read()
    p = open(os.path.join(m, 'points3D.bin'), 'rb').read()[:20000]
    open(os.path.join(corpus, 'fuzz_colmap_bin', 'mouse'), 'wb').write(struct.pack('<II', len(c), len(i)) + c + i + p)
    jp = os.path.join(m, '..', '..', 'images')
    small = sorted(os.listdir(jp))[0]
    # first 4 KB of a real JPEG: headers + EXIF, truncated scan
    open(os.path.join(corpus, 'fuzz_jpeg', 'head'), 'wb').write(open(os.path.join(jp, small), 'rb').read()[:4096])
import gzip
os.makedirs(os.path.join(corpus, 'fuzz_idx'), exist_ok=True)
open(os.path.join(corpus, 'fuzz_idx', 'gz'), 'wb').write(gzip.compress(b'\0\0\x08\x02\0\0\0\x02\0\0\0\x03abcdef'))
g = os.path.join(root, 'tests', 'io', 'golden', 'torch_small.safetensors')
if os.path.exists(g):
    os.makedirs(os.path.join(corpus, 'fuzz_safetensors'), exist_ok=True)
    open(os.path.join(corpus, 'fuzz_safetensors', 'torch'), 'wb').write(open(g, 'rb').read())
PY

status=0
for n in $names; do
    $CC $CFLAGS -fsanitize=fuzzer "$root/tests/fuzz/$n.c" $objs $LIBS -o "$out/$n"
    mkdir -p "$out/corpus/$n"
    echo "== $n: ${secs}s"
    rc=0
    (cd "$out" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
        "./$n" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        "corpus/$n" > "$out/$n.log" 2>&1) || rc=$?
    tail -n 25 "$out/$n.log"
    if [ "$rc" -ne 0 ]; then
        echo "!! $n failed (exit $rc); see $out/$n.log and the crash-* file in $out"
        status=1
    fi
done
exit $status
