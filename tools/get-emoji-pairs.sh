#!/bin/bash
# get-emoji-pairs.sh - builds the emoji image-text benchmark of `polyak ctp` (tasks/ctp) in DIR:
# DIR/pairs.jsonl (one {"image", "caption", "task", "split", "emoji"} per line) and
# DIR/images/{google,twitter}/<code>.png (the packages' own 64x64 pictures, copied unchanged).
#
# Sources, fetched with npm (`npm pack`, pinned versions) into a cache folder, never committed:
#   emoji-datasource-google@16.0.0, emoji-datasource-twitter@16.0.0: emoji.json (name, category,
#     subcategory) and img/<vendor>/64/<code>.png;
#   emojibase-data@17.0.0: en/data.json (CLDR label and tags, matched by code point sequence).
# Licences of the images and data: tools/get-emoji-pairs.LICENSES.md.
#
# One emoji = one caption ("<label>, <subcategory>: <tags>") and up to two pictures (Google's
# Noto and Twitter's Twemoji). The nine categories other than "Component" (skin-tone swatches)
# are the nine tasks, as CTP's P9D has nine domains. Held out: HOLDOUT_PERCENT (default 20) of
# the emoji of every task (rounded), those first in the order of a hash of the code point
# sequence (so the split is the same on every machine); both vendors' pictures of a
# held-out emoji are in the test split, none of them in training.
#
# Usage: tools/get-emoji-pairs.sh DIR   (env: NPM_CACHE_DIR, default ~/.cache/polyak/npm-emoji;
#        HOLDOUT_PERCENT)
set -euo pipefail
if [ $# -ne 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
    [ $# -eq 1 ] && exit 0 || exit 2
fi
out=$1
cache=${NPM_CACHE_DIR:-$HOME/.cache/polyak/npm-emoji}
holdout=${HOLDOUT_PERCENT:-20}
pkgs="emoji-datasource-google@16.0.0 emoji-datasource-twitter@16.0.0 emojibase-data@17.0.0"
command -v npm >/dev/null || { echo "get-emoji-pairs: npm is not installed" >&2; exit 1; }
py=/usr/bin/python3
[ -x "$py" ] || py=python3

mkdir -p "$cache" "$out"
for p in $pkgs; do
    name=${p%@*}
    ver=${p##*@}
    if [ ! -f "$cache/$name/package/package.json" ]; then
        echo "get-emoji-pairs: fetching $p with npm" >&2
        tmp=$(mktemp -d "$cache/.pack.XXXXXX")
        (cd "$tmp" && npm pack --silent "$p" >/dev/null)
        mkdir -p "$tmp/x"
        tar xzf "$tmp/$name-$ver.tgz" -C "$tmp/x"
        rm -rf "$cache/$name"
        mv "$tmp/x" "$cache/$name"
        rm -rf "$tmp"
    fi
done

"$py" - "$cache" "$out" "$holdout" <<'PY'
import hashlib, json, os, shutil, sys

cache, out, holdout = sys.argv[1], sys.argv[2], int(sys.argv[3])
vendors = ["google", "twitter"]
meta = {}
for v in vendors:
    with open(os.path.join(cache, f"emoji-datasource-{v}", "package", "emoji.json")) as f:
        meta[v] = {e["unified"]: e for e in json.load(f)}
with open(os.path.join(cache, "emojibase-data", "package", "en", "data.json")) as f:
    base = {}
    for e in json.load(f):
        base[e["hexcode"].upper().replace("-FE0F", "")] = e

tasks = ["Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink",
         "Travel & Places", "Activities", "Objects", "Symbols", "Flags"]
# the held-out emoji: per task, round(holdout% of its emoji), those with the smallest hash of
# their code point sequence
held = set()
for t in tasks:
    codes = [c for c, e in meta["google"].items() if e["category"] == t]
    codes.sort(key=lambda c: hashlib.sha256(c.encode()).hexdigest())
    held.update(codes[:round(len(codes) * holdout / 100)])
rows = []
counts = {t: [0, 0] for t in tasks}
for code, e in sorted(meta["google"].items(), key=lambda kv: kv[1]["sort_order"]):
    if e["category"] not in tasks:
        continue
    b = base.get(code.upper().replace("-FE0F", ""))
    label = (b["label"] if b else e["name"]).lower()
    sub = e["subcategory"].replace("-", " ")
    tags = [t for t in (b.get("tags", []) if b else []) if t not in label.split()][:8]
    caption = f"{label}, {sub}" + (": " + " ".join(tags) if tags else "")
    task = e["category"]
    split = "test" if code in held else "train"
    n = 0
    for v in vendors:
        m = meta[v].get(code)
        src = os.path.join(cache, f"emoji-datasource-{v}", "package", "img", v, "64", e["image"])
        if not m or not m.get(f"has_img_{v}") or not os.path.isfile(src):
            continue
        rel = f"images/{v}/{e['image']}"
        os.makedirs(os.path.join(out, "images", v), exist_ok=True)
        shutil.copyfile(src, os.path.join(out, rel))
        rows.append({"image": rel, "caption": caption, "task": task, "split": split,
                     "emoji": code})
        n += 1
    if n:
        counts[task][split == "test"] += 1
tmp = os.path.join(out, "pairs.jsonl.tmp")
with open(tmp, "w") as f:
    for r in rows:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
os.replace(tmp, os.path.join(out, "pairs.jsonl"))
print(f"get-emoji-pairs: {len(rows)} pairs in {out}/pairs.jsonl (emoji train/test per task):",
      file=sys.stderr)
for t in tasks:
    print(f"  {t}: {counts[t][0]} / {counts[t][1]}", file=sys.stderr)
PY
