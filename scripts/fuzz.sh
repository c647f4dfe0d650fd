#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS (default 45) each, seeded from the
# test fixtures; fails on any crash, panic, timeout (a hang) or out-of-memory.
# The test command calls it with a short budget and a fixed libFuzzer seed (so
# a run is repeatable); see fuzz/README.md for a long run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-45}
if ! rustup toolchain list | grep -q nightly; then
  echo "fuzz: a nightly toolchain is needed (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! command -v cargo-fuzz >/dev/null; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Seeds: every image the tests ship, and the hashtag conformance texts.
mkdir -p "$work/decode" "$work/hashtags"
find tests/fixtures python/fastprep/sample_data -type f \
  \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' -o -iname '*.webp' -o -iname '*.gif' \
     -o -iname '*.bmp' -o -iname '*.tif*' -o -iname '*.ppm' -o -iname '*.ico' \) -size -200k \
  -exec sh -c 'for f; do { printf "\000"; cat "$f"; } > "$0/$(echo "$f" | tr / _)"; done' "$work/decode" {} +
python3 - "$work/hashtags" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
n = 0
for path in pathlib.Path("tests/fixtures/hashtags").glob("*.json"):
    def walk(node):
        global n
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                (out / f"{n:05d}").write_text(node["text"], encoding="utf-8"); n += 1
            for v in node.values(): walk(v)
        elif isinstance(node, list):
            for v in node: walk(v)
    walk(json.loads(path.read_text(encoding="utf-8")))
PY

cd fuzz
for target in decode hashtags; do
  echo "== fuzz $target for ${seconds}s ($(ls "$work/$target" | wc -l) seeds)"
  # One command builds and runs: any failure (a build error, a crash, a
  # timeout, out-of-memory) is a non-zero exit and fails the script.
  if ! cargo +nightly fuzz run "$target" "$work/$target" -- \
      -seed="${FUZZ_SEED:-1}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 >"$work/$target.log" 2>&1; then
    tail -n 40 "$work/$target.log" >&2
    echo "fuzz: $target failed; a failing input is kept in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E "^(Done |stat::number_of_executed_units|stat::peak_rss_mb)" "$work/$target.log" || true
done
echo "fuzz: no crash, hang or out-of-memory"
