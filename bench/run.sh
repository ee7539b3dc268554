#!/usr/bin/env bash
# `make bench`: installs nginx, wrk and the chart's font when missing, builds the release
# binaries once (niced), runs the handler benchmark (criterion), then every other
# measurement in one go. Writes BENCHMARKS.md, bench/results/<date>.json and
# bench/results/chart.png, and prints every ratio of the run. Extra arguments go to
# `skyhost-bench run` (e.g. --only coldstart, --wrk-seconds 5).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
started=$(date +%s)
CARGO=${CARGO:-cargo}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
release="$CARGO_TARGET_DIR/release"

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"

echo "== building the release binaries (skyhost, the three Lambdas, hello-lambda, the harness)"
nice -n 19 "$CARGO" build --release \
  -p skyhost-cli -p skyhost-origin -p skyhost-replicator -p skyhost-asset-copier \
  -p hello-lambda -p skyhost-bench
echo "== building the handler benchmark"
nice -n 19 "$CARGO" bench -p skyhost-origin --bench handler --no-run

echo "== 2. handler cost: criterion"
"$CARGO" bench -p skyhost-origin --bench handler -- --warm-up-time 3 --measurement-time 5 origin/cached_4k

"$release/skyhost-bench" run \
  --skyhost "$release/skyhost" \
  --bin-dir "$release" \
  --criterion "$CARGO_TARGET_DIR/criterion/origin/cached_4k/new/estimates.json" \
  --started-at "$started" \
  "$@"
