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

# The Lambdas are built as `make package` ships them: without the CLI in the same
# invocation, whose SSO and credential_process features would otherwise be unified into
# their aws-config. The handler benchmark and the harness share that invocation (a
# separate `cargo bench` would resolve the benchmark's dev-dependencies differently and
# rebuild the AWS SDK); the CLI follows, reusing every crate whose features match.
echo "== building the release binaries (the three Lambdas, hello-lambda, the harness, the handler benchmark; then skyhost)"
build_log="$CARGO_TARGET_DIR/bench-build.json"
nice -n 19 "$CARGO" build --release --message-format=json-render-diagnostics \
  -p skyhost-origin -p skyhost-replicator -p skyhost-asset-copier \
  -p hello-lambda -p skyhost-bench --bins --bench handler >"$build_log"
nice -n 19 "$CARGO" build --release -p skyhost-cli --bins
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
  --bin-dir "$release" \
  --criterion "$CRITERION_HOME/origin/cached_4k/new/estimates.json" \
  --criterion-full-path "$CRITERION_HOME/origin/cached_4k_full_path/new/estimates.json" \
  --started-at "$started" \
  "$@"
