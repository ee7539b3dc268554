#!/usr/bin/env bash
# Runs a command with the real servers the tests use: a moto server (DynamoDB, DynamoDB
# Streams, S3, Secrets Manager, SQS, ACM, API Gateway, CloudFront, Route 53) and a
# redis-server, each on a free loopback port. Installs what is missing (moto into
# .cache/venv from tests/requirements.txt, redis-server and chromium with apt-get), exports the
# endpoints, and stops both servers however the command ends.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cache="$root/.cache"
venv="$cache/venv"
mkdir -p "$cache"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Python tools, pinned, in a virtualenv of the repo's ignored cache folder.
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$root/tests/requirements.txt" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> installing test tools into $venv (tests/requirements.txt)"
  python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$venv"; }
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tests/requirements.txt"
  echo "$want" > "$stamp"
fi

if ! command -v redis-server >/dev/null 2>&1; then
  echo "==> installing redis-server"
  apt_install redis-server
fi

# Debian's Chromium renders the dashboard in crates/cli/tests/dashboard.rs.
if ! command -v chromium >/dev/null 2>&1; then
  echo "==> installing chromium"
  apt_install chromium
fi

free_port() {
  "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # port name log
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "error: $2 did not start on port $1; its log:" >&2
  cat "$3" >&2 || true
  return 1
}

moto_port=$(free_port)
redis_port=$(free_port)
pids=()
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap stop EXIT INT TERM

# Certificates are issued 2 s after their request: the custom-domain tests see them
# pending validation first, then issued.
MOTO_ACM_VALIDATION_WAIT=2 "$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$cache/moto.log" 2>&1 &
pids+=($!)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  >"$cache/redis.log" 2>&1 &
pids+=($!)
wait_port "$moto_port" "moto server" "$cache/moto.log"
wait_port "$redis_port" "redis-server" "$cache/redis.log"
echo "==> moto server on 127.0.0.1:$moto_port, redis-server on 127.0.0.1:$redis_port"

export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
export AWS_REGION=us-west-2 AWS_DEFAULT_REGION=us-west-2
export AWS_EC2_METADATA_DISABLED=true
export SKYHOST_TEST_REDIS_URL="redis://127.0.0.1:$redis_port/"
export SKYHOST_TEST_REDIS_SERVER="$(command -v redis-server)"
export SKYHOST_TEST_REDBOT="$venv/bin/redbot"
export PATH="$venv/bin:$PATH"

"$@"
