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

# The release builds. Every binary is linked with fat LTO and one codegen unit: a link of
# a minute or three, on one core. skyhost is built with the Lambdas' log levels and without
# developer sign-in (local mode needs none), the functions' libraries with their default
# features, and skyhost-meta and skyhost-cli pin what the tools turn on in shared crates. So
# each crate has the same features in all three invocations below, each reuses what the
# one before built, and the functions come out exactly as `make package` builds them.
# First the origin and skyhost, the two longest links, side by side on the two cores (left
# to one invocation, cargo may start either of them last, alone).
features=skyhost-origin/default,skyhost-replicator/default,skyhost-asset-copier/default,skyhost-cli/compiled-log-level
echo "== building the release binaries (the origin and skyhost; then the other Lambdas, hello-lambda and the harness)"
nice -n 19 "$CARGO" build --release \
  -p skyhost-origin -p skyhost-cli --no-default-features --features "$features" --bins
# Whether cargo's JSON log $1 shows a unit built anew, of a target named by the regex $2
# (any target by default). The last grep reads to the end: with pipefail, a `grep -q`
# that stops at its first match could fail the pipeline through its writer's SIGPIPE.
built_anew() {
  grep '"reason":"compiler-artifact"' "$1" | grep '"fresh":false' \
    | grep -E "\"name\":\"(${2:-[^\"]*})\",\"src_path\"" >/dev/null
}
build_log="$CARGO_TARGET_DIR/bench-build.json"
nice -n 19 "$CARGO" build --release --message-format=json-render-diagnostics \
  -p skyhost-origin -p skyhost-replicator -p skyhost-asset-copier -p hello-lambda \
  -p skyhost-bench -p skyhost-cli --no-default-features --features "$features" \
  --bins >"$build_log"
if built_anew "$build_log" 'skyhost-origin|skyhost'; then
  echo "note: the second invocation linked the origin or skyhost again: its features differ from the first's (cargo tree -e features shows which)." >&2
fi
# The check: the functions built alone, as `make package` resolves them. With the pins this
# finds every unit built already. Should a tool's dependency ever turn on a feature in a
# crate the functions use, it rebuilds them as `make package` would (minutes), and says so:
# the functions measured are make package's either way.
functions_log="$CARGO_TARGET_DIR/bench-functions.json"
nice -n 19 "$CARGO" build --release --message-format=json-render-diagnostics \
  -p skyhost-origin -p skyhost-replicator -p skyhost-asset-copier -p hello-lambda --bins >"$functions_log"
if built_anew "$functions_log"; then
  echo "note: the tools' features reached crates the Lambdas use, so the Lambdas were built a second time, alone." >&2
  echo "      Pin those features in crates/meta/Cargo.toml (cargo tree -e features shows which) to save that build." >&2
fi
# Copied aside, where no later release build of other packages can replace them.
functions="$CARGO_TARGET_DIR/bench-functions"
rm -rf "$functions" && mkdir -p "$functions"
cp "$release"/{skyhost-origin,skyhost-replicator,skyhost-asset-copier,hello-lambda} "$functions/"
# The harness binary is also init-probe and the handler benchmark, by the name it runs
# under: one fat-LTO link instead of three of the same SDK, tokio and hyper code.
cp "$release/skyhost-bench" "$functions/init-probe"
cp "$release/skyhost-bench" "$functions/handler-bench"
handler="$functions/handler-bench"

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
