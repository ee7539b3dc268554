#!/usr/bin/env bash
# `make bench`: installs nginx, wrk, redis-server (the first-answer starts) and the chart's
# font when missing, builds the release binaries once (niced), runs the handler benchmark
# (criterion), then every other measurement in one go. Writes BENCHMARKS.md,
# bench/results/<date>.json and bench/results/chart.png, and prints every ratio of the run.
# Extra arguments go to `skyhost-bench run` (e.g. --only coldstart, --wrk-seconds 5).
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
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"

# Two invocations. The Lambdas and hello-lambda first, as `make package` builds the
# functions: nothing else is in that invocation, so no other package's features (the
# CLI's SSO, the handler benchmark's dev-dependencies) are unified into theirs. Then the
# harness, the handler benchmark and skyhost. skyhost is built with the Lambdas' log
# levels and without developer sign-in (local mode needs none), and the functions' libraries
# with their default features, so those libraries and the AWS SDK crates have the Lambdas'
# features and are built once for both (a skyhost with its defaults would
# rebuild the whole SDK, about 10 min on 2 cores); skyhost-meta pins what the tools turn on
# in shared crates, so the second invocation reuses every SDK crate of the first. The
# functions are copied aside, where a later release build of other packages (which may
# resolve the origin's features differently) cannot replace them.
echo "== building the release binaries (the three Lambdas and hello-lambda; then the harness, the handler benchmark and skyhost)"
nice -n 19 "$CARGO" build --release \
  -p skyhost-origin -p skyhost-replicator -p skyhost-asset-copier -p hello-lambda --bins
functions="$CARGO_TARGET_DIR/bench-functions"
rm -rf "$functions" && mkdir -p "$functions"
cp "$release"/{skyhost-origin,skyhost-replicator,skyhost-asset-copier,hello-lambda} "$functions/"
build_log="$CARGO_TARGET_DIR/bench-build.json"
nice -n 19 "$CARGO" build --release --message-format=json-render-diagnostics \
  -p skyhost-bench -p skyhost-cli \
  --no-default-features \
  --features skyhost-origin/default,skyhost-replicator/default,skyhost-asset-copier/default,skyhost-cli/compiled-log-level \
  --bins --bench handler >"$build_log"
cp "$release/init-probe" "$functions/"
handler=$(grep '"reason":"compiler-artifact"' "$build_log" | grep '"kind":\["bench"\]' | grep '"name":"handler"' \
  | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)
if [ -z "$handler" ] || [ ! -x "$handler" ]; then
  echo "cannot find the handler benchmark's executable in $build_log" >&2
  exit 1
fi

echo "== 2. handler cost: criterion"
export CRITERION_HOME="$CARGO_TARGET_DIR/criterion"
"$handler" --bench --warm-up-time 3 --measurement-time 5 origin/cached_4k

"$release/skyhost-bench" run \
  --skyhost "$release/skyhost" \
  --bin-dir "$functions" \
  --criterion "$CRITERION_HOME/origin/cached_4k/new/estimates.json" \
  --criterion-full-path "$CRITERION_HOME/origin/cached_4k_full_path/new/estimates.json" \
  --started-at "$started" \
  "$@"
