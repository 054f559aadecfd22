#!/bin/sh
# make_scene.sh - renders assets/scene.pov with POV-Ray from N known cameras into
# assets/scene/images/*.png and writes assets/scene/transforms.json with the exact intrinsics
# and camera-to-world matrices (nerfstudio/Blender convention: OpenGL camera axes).
#
# Usage: assets/make_scene.sh [OUT_DIR] [N_VIEWS] [WIDTH] [HEIGHT]
#   defaults: assets/scene 48 320 240. Needs povray (Debian package povray) and python3.
#
# Geometry. POV-Ray is left-handed (x right, y up, z forward for an unrotated camera). The
# world of transforms.json is right-handed and z-up: (X, Y, Z) = (x_pov, z_pov, y_pov), a
# swap of two axes, which turns the left-handed frame into a right-handed one. Each camera is
# given to POV-Ray explicitly (no look_at): `perspective location L direction D right R up U`
# with |D| = 1, R = right * 2 tan(hfov/2), U = up * |R| * H / W. POV-Ray shoots the ray for
# the image point (u, v) (pixels from the top-left corner, pixel centres at +0.5) along
# D + (u/W - 1/2) R - (v/H - 1/2) U, so x/z = (u - W/2) |R| / W: fx = W / |R|, cx = W / 2,
# and likewise fy = H / |U| (= fx), cy = H / 2. tests/gs/test_scene_poses.c checks this by
# reprojecting the marker spheres' centres into every rendered image.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE/scene}
N=${2:-48}
W=${3:-320}
H=${4:-240}
command -v povray >/dev/null || { echo "make_scene.sh: povray not found (apt-get install povray)" >&2; exit 1; }
mkdir -p "$OUT/images"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Cameras: two rings around the scene centre (0, 0.45, 0) in POV coordinates, radius 5.0,
# at elevations 20 and 38 degrees, alternating rings with azimuth steps of 360/N*2 degrees,
# the upper ring offset by half a step; horizontal field of view 50 degrees.
python3 - "$OUT" "$WORK" "$N" "$W" "$H" <<'PY'
import json, math, sys
out, work, n, w, h = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
hfov = math.radians(50.0)
target = (0.0, 0.45, 0.0)
radius = 5.0

def sub(a, b): return tuple(x - y for x, y in zip(a, b))
def scale(a, s): return tuple(x * s for x in a)
def norm(a): return math.sqrt(sum(x * x for x in a))
def unit(a): return scale(a, 1.0 / norm(a))
def cross(a, b):  # the component formula; in POV's left-handed frame cross(y, z) = x
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])
def to_world(p): return (p[0], p[2], p[1])  # POV (x, y, z) -> right-handed z-up (x, z, y)

rlen = 2.0 * math.tan(hfov / 2.0)
ulen = rlen * h / w
frames = []
for i in range(n):
    ring = i % 2
    elev = math.radians(20.0 if ring == 0 else 38.0)
    az = math.radians((i // 2) * 720.0 / n + (360.0 / n if ring else 0.0))
    loc = (target[0] + radius * math.cos(elev) * math.sin(az), target[1] + radius * math.sin(elev),
           target[2] - radius * math.cos(elev) * math.cos(az))
    d = unit(sub(target, loc))
    r = unit(cross((0.0, 1.0, 0.0), d))
    u = cross(d, r)
    name = "r_%03d" % i
    with open("%s/%s.pov" % (work, name), "w") as f:
        f.write("#version 3.7;\ncamera { perspective location <%.9f, %.9f, %.9f>\n" % loc)
        f.write("  direction <%.9f, %.9f, %.9f>\n" % d)
        f.write("  right <%.9f, %.9f, %.9f>\n" % scale(r, rlen))
        f.write("  up <%.9f, %.9f, %.9f> }\n" % scale(u, ulen))
        f.write('#include "scene.pov"\n')
    # OpenGL camera-to-world: columns right, up, back (= -forward) and the centre, in world axes.
    cols = [to_world(r), to_world(u), to_world(scale(d, -1.0)), to_world(loc)]
    m = [[cols[c][k] for c in range(4)] for k in range(3)] + [[0.0, 0.0, 0.0, 1.0]]
    frames.append({"file_path": "images/%s.png" % name, "transform_matrix": m})
fx = w / rlen
fy = h / ulen
meta = {"camera_model": "OPENCV", "fl_x": fx, "fl_y": fy, "cx": w / 2.0, "cy": h / 2.0,
        "w": w, "h": h, "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "frames": frames}
with open(out + "/transforms.json.tmp", "w") as f:
    json.dump(meta, f, indent=1)
PY

i=0
for v in "$WORK"/r_*.pov; do
  name=$(basename "$v" .pov)
  # +A0.05 +AM2 +R3: adaptive anti-aliasing (up to 9 samples per pixel spread over the pixel);
  # -D: no preview window; +FN: PNG.
  povray -D +FN +W"$W" +H"$H" +A0.05 +AM2 +R3 +L"$HERE" +I"$v" +O"$WORK/$name.png" \
    >"$WORK/$name.log" 2>&1 || { cat "$WORK/$name.log" >&2; exit 1; }
  mv "$WORK/$name.png" "$OUT/images/$name.png"
  i=$((i + 1))
done
mv "$OUT/transforms.json.tmp" "$OUT/transforms.json"
echo "make_scene.sh: $i views of ${W}x${H} in $OUT"
