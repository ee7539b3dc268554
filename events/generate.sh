#!/usr/bin/env bash
# Regenerates every fixture in events/: the raw ones with `sam local generate-event`
# (events/sam/), then the skyhost ones derived from them (events/skyhost/).
# Usage: SAM=/path/to/sam events/generate.sh   (see events/README.md for the sam version)
set -euo pipefail

SAM=${SAM:-sam}
here=$(cd "$(dirname "$0")" && pwd)
export SAM_CLI_TELEMETRY=0

# generate-event reads samconfig.toml from the working directory: run it where there is none.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

account=111122223333
bucket=skyhost-$account-us-west-2
blob=sites/docs-site/blobs/2563965beb3c04c46be627f05446abd1c71d79d4e2169932f78288547c32c5bb

"$SAM" --version > "$here/sam/VERSION"

"$SAM" local generate-event dynamodb update \
  --region us-west-2 --account-id "$account" --table skyhost-sites \
  > "$here/sam/dynamodb-update.json"
"$SAM" local generate-event s3 put \
  --region us-west-2 --bucket "$bucket" --key "$blob" \
  > "$here/sam/s3-put.json"
# --path is appended after a "/", so it is given without its leading slash.
"$SAM" local generate-event apigateway aws-proxy \
  --method GET --path docs/index.html --resource '/{proxy+}' --account-id "$account" \
  > "$here/sam/apigateway-aws-proxy.json"
"$SAM" local generate-event apigateway http-api-proxy \
  --method GET --path docs/ --account-id "$account" \
  > "$here/sam/apigateway-http-api-proxy.json"

# sam pastes --body into its JSON template verbatim, so the body is passed JSON-escaped
# (a JSON string literal without its quotes).
escape() { python3 -c 'import json,sys; print(json.dumps(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":")))[1:-1])' "$1"; }
"$SAM" local generate-event sqs receive-message \
  --region us-west-2 --account-id "$account" --queue-name skyhost-asset-copier \
  --body "$(escape "$here/sam/s3-put.json")" \
  > "$here/sam/sqs-receive-message-s3.json"

python3 "$here/derive.py"

"$SAM" local generate-event sqs receive-message \
  --region us-west-2 --account-id "$account" --queue-name skyhost-asset-copier \
  --body "$(escape "$here/skyhost/s3-put-skyhost.json")" \
  > "$here/skyhost/sqs-s3-put-skyhost.json"

echo "fixtures written to $here/sam and $here/skyhost"
