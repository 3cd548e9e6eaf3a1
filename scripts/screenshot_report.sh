#!/usr/bin/env bash
# Render a cohort report (reports/<cohort>/index.html) in headless Chromium and save a PNG.
#   scripts/screenshot_report.sh reports/demo/index.html report.png [WIDTH] [HEIGHT]
# Needs Debian's chromium (apt-get install -y chromium). Offline: every network feature is off.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 REPORT.html OUT.png [WIDTH=1200] [HEIGHT=2400]" >&2
  exit 2
fi
html=$(realpath "$1")
out=$(realpath -m "$2")
width=${3:-1200}
height=${4:-2400}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "error: no chromium found (apt-get install -y chromium)" >&2
  exit 3
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
  --user-data-dir="$profile" --screenshot="$out" --window-size="${width},${height}" \
  "file://${html}" >/dev/null 2>&1
test -s "$out" || { echo "error: chromium wrote no screenshot to $out" >&2; exit 4; }
echo "$out"
