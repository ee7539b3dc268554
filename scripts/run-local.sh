#!/usr/bin/env bash
# `make run`: starts local multi-region mode, deploys examples/site, shows each simulated
# visitor answered by its nearest region, and prints what to try next. Ctrl-C stops it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin="${CARGO_TARGET_DIR:-$root/target}/debug/skyhost"
dir="${SKYHOST_DIR:-.skyhost}"
port="${PORT:-8080}"

"$bin" local up --dir "$dir" --port "$port" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then echo "skyhost local up exited" >&2; exit 1; fi
  sleep 0.1
done

echo
"$bin" --local "$dir" deploy examples/site --site example \
  --domain localhost --domain example.localhost --message "make run"
sleep 1

echo
echo "Each simulated visitor is answered by its nearest region:"
for client in us-west-2 eu-central-1 ap-southeast-1 us-east-1; do
  region=$(curl -s -o /dev/null -D - -H "X-Skyhost-Client-Region: $client" "http://localhost:$port/" \
    | tr -d '\r' | awk -F': ' 'tolower($1)=="x-skyhost-region"{print $2}')
  printf '  visitor in %-15s -> %s\n' "$client" "${region:-?}"
done

cat <<MSG

Open  http://localhost:$port/   (the example site; every region serves it)

Try, in another terminal:
  curl -si -H 'X-Skyhost-Client-Region: eu-central-1' http://localhost:$port/about
  curl -si http://localhost:$port/old-blog/first-post          # 301 from _redirects
  $bin --local $dir status --site example                      # per region: health, serving
  # edit a page under examples/site, then deploy again — only what changed is uploaded:
  $bin --local $dir deploy examples/site --site example
  $bin --local $dir rollback --site example                     # instant rollback
  $bin local fail eu-central-1 --dir $dir                       # failover drill: EU visitors move
  $bin local heal eu-central-1 --dir $dir
  $bin local outage us-west-2 --dir $dir                        # the primary's region gone: others serve on
  $bin local restore us-west-2 --dir $dir
  $bin --local $dir verify                                      # every blob in every region?

Ctrl-C stops everything; the state in $dir survives a restart.
MSG
wait "$pid"
