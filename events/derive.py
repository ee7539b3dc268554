#!/usr/bin/env python3
"""Derives the skyhost fixtures (events/skyhost/) from the raw `sam local generate-event`
output (events/sam/). Deterministic: run by events/generate.sh, safe to re-run alone.

Item layouts follow crates/meta/src/store/item.rs, the notification body follows
crates/meta/src/notify.rs, and key kinds follow crates/meta/src/keys.rs. If those change,
change this file and re-run events/generate.sh.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAM = HERE / "sam"
OUT = HERE / "skyhost"

ACCOUNT = "111122223333"
TABLE = "skyhost-sites"
PRIMARY_BUCKET = f"skyhost-{ACCOUNT}-us-west-2"
ORIGIN_NAME = "origin.skyhost.example"
SITE = "docs-site"
DOMAINS = ["docs.example.com", "www.docs.example.com"]
DEPLOY_OLD = "20260102T030405Z-0a1b2c3d"
DEPLOY_NEW = "20260103T101112Z-4e5f6a7b"
CHANGED = 1767435072  # 2026-01-03T10:11:12Z, when DEPLOY_NEW was activated
NOTIFY_SECRET = "skyhost-fixture-secret"
# The value CloudFront's origin custom header carries (X-Skyhost-Origin-Verify).
ORIGIN_VERIFY_SECRET = "skyhost-fixture-front"
NOTIFY_TS = CHANGED + 1


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


INDEX_HASH = sha(b"<h1>docs</h1>\n")
BIG_HASH = sha(b"a 200 MiB video stands in here")


def load(name: str) -> dict:
    return json.loads((SAM / name).read_text())


def write(name: str, value) -> None:
    (OUT / name).write_text(json.dumps(value, indent=2) + "\n")


# ------------------------------------------------------------------ DynamoDB stream


def s(v: str) -> dict:
    return {"S": v}


def n(v: int) -> dict:
    return {"N": str(v)}


def site_item(revision: int, active: str | None, updated: int) -> dict:
    item = {
        "pk": s(f"SITE#{SITE}"),
        "sk": s("SITE"),
        "kind": s("site"),
        "site": s(SITE),
        "domains": {"L": [s(d) for d in DOMAINS]},
        "revision": n(revision),
        "suspended": {"BOOL": False},
        "updated": n(updated),
    }
    if active is not None:
        item["active"] = s(active)
    return item


def domain_item(host: str) -> dict:
    return {
        "pk": s(f"DOMAIN#{host}"),
        "sk": s("DOMAIN"),
        "kind": s("domain"),
        "domain": s(host),
        "site": s(SITE),
    }


def deployment_item(dep: str, created: int) -> dict:
    return {
        "pk": s(f"SITE#{SITE}"),
        "sk": s(f"DEPLOY#{dep}"),
        "kind": s("deployment"),
        "site": s(SITE),
        "id": s(dep),
        "created": n(created),
        "file_count": n(42),
        "bytes": n(1048576),
        "state": s("ready"),
        "message": {"NULL": True},
    }


def region_item(region: str, maintenance: bool) -> dict:
    return {
        "pk": s(f"REGION#{region}"),
        "sk": s("REGION"),
        "kind": s("region"),
        "region": s(region),
        "maintenance": {"BOOL": maintenance},
    }


def stream_record(base: dict, seq: int, name: str, new: dict | None, old: dict | None) -> dict:
    rec = copy.deepcopy(base)
    rec["eventID"] = hashlib.md5(f"skyhost-{seq}".encode()).hexdigest()
    rec["eventName"] = name
    image = new if new is not None else old
    assert image is not None
    ddb = rec["dynamodb"]
    ddb.pop("NewImage", None)
    ddb.pop("OldImage", None)
    ddb["Keys"] = {"pk": image["pk"], "sk": image["sk"]}
    if new is not None:
        ddb["NewImage"] = new
    if old is not None:
        ddb["OldImage"] = old
    ddb["ApproximateCreationDateTime"] = CHANGED
    ddb["SequenceNumber"] = f"{4421584500000000017450439100 + seq}"
    ddb["SizeBytes"] = len(json.dumps(ddb["Keys"]) + json.dumps(new) + json.dumps(old))
    return rec


def dynamodb_fixtures() -> None:
    raw = load("dynamodb-update.json")
    base = raw["Records"][0]  # the generated INSERT: shape, ARN and region are kept
    records = [
        # A deploy: the deployment record, then activation of it on the site record.
        stream_record(base, 1, "INSERT", deployment_item(DEPLOY_NEW, CHANGED - 30), None),
        stream_record(
            base, 2, "MODIFY", site_item(7, DEPLOY_NEW, CHANGED), site_item(6, DEPLOY_OLD, CHANGED - 86400)
        ),
        # Domain mapping written when a domain was added; the site record change carries it.
        stream_record(base, 3, "INSERT", domain_item("www.docs.example.com"), None),
        # Drain: a region's maintenance flag, read by that region's health check.
        stream_record(base, 4, "MODIFY", region_item("eu-central-1", True), region_item("eu-central-1", False)),
        # A new site, and a removed one (only an OldImage).
        stream_record(base, 5, "INSERT", site_item(1, None, CHANGED), None),
        stream_record(base, 6, "REMOVE", None, site_item(7, DEPLOY_NEW, CHANGED)),
    ]
    write("dynamodb-stream-mixed.json", {"Records": records})
    # The batch the replicator sees in AWS: the event-source filter keeps site records only.
    write(
        "dynamodb-stream-sites.json",
        {"Records": [records[1], records[4], records[5]]},
    )


# ------------------------------------------------------------------ S3


def key_kind(key: str) -> str:
    """Mirror of meta::keys::parse: "blob", "manifest" or "other"."""
    m = re.fullmatch(r"sites/([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)/(.*)", key)
    if not m:
        return "other"
    rest = m.group(2)
    if rest.startswith("blobs/"):
        name = rest[len("blobs/") :]
        for suffix in (".br", ".gz"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        return "blob" if re.fullmatch(r"[0-9a-f]{64}", name) else "other"
    if re.fullmatch(r"manifests/\d{8}T\d{6}Z-[0-9a-f]{8}\.json", rest):
        return "manifest"
    return "other"


def s3_fixtures() -> None:
    raw = load("s3-put.json")
    base = raw["Records"][0]
    # (key as stored, size, event name). S3 URL-encodes keys in notifications the way
    # HTML forms do: a space becomes "+", a literal "+" becomes "%2B".
    objects = [
        (f"sites/{SITE}/blobs/{INDEX_HASH}", 14, "ObjectCreated:Put"),
        (f"sites/{SITE}/blobs/{INDEX_HASH}.br", 18, "ObjectCreated:Put"),
        (f"sites/{SITE}/blobs/{INDEX_HASH}.gz", 34, "ObjectCreated:Put"),
        (f"sites/{SITE}/manifests/{DEPLOY_NEW}.json", 2048, "ObjectCreated:Put"),
        # Larger than the default multipart threshold (100 MiB): a multipart copy.
        (f"sites/{SITE}/blobs/{BIG_HASH}", 209715200, "ObjectCreated:CompleteMultipartUpload"),
        # Not skyhost's keys: decoded, recognised as foreign, skipped.
        (f"sites/{SITE}/blobs/{INDEX_HASH}+1", 14, "ObjectCreated:Put"),
        (f"sites/{SITE}/uploads/Quarterly Report (final).pdf", 4096, "ObjectCreated:Put"),
        ("sites/Docs Site/blobs/" + INDEX_HASH, 14, "ObjectCreated:Copy"),
    ]
    records = []
    expected = []
    for i, (key, size, event) in enumerate(objects):
        encoded = urllib.parse.quote_plus(key, safe="/")
        assert urllib.parse.unquote_plus(encoded) == key
        rec = copy.deepcopy(base)
        rec["eventName"] = event
        rec["eventTime"] = "2026-01-03T10:10:42.000Z"
        obj = rec["s3"]["object"]
        obj["key"] = encoded
        obj["size"] = size
        obj["eTag"] = hashlib.md5(key.encode()).hexdigest()
        obj["sequencer"] = f"0065A8B0C0D0E0F{i:03d}"
        records.append(rec)
        expected.append({"event_key": encoded, "key": key, "kind": key_kind(key), "size": size})
    write("s3-put-skyhost.json", {"Records": records})
    write("s3-put-skyhost.expected.json", expected)


# ------------------------------------------------------------------ API Gateway


def http_api(
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    body: str | None = None,
) -> dict:
    ev = load("apigateway-http-api-proxy.json")
    ev["rawPath"] = path
    ev["rawQueryString"] = query
    ev.pop("cookies", None)
    ev["headers"] = headers
    params = urllib.parse.parse_qs(query, keep_blank_values=True)
    if params:
        ev["queryStringParameters"] = {k: ",".join(v) for k, v in params.items()}
    else:
        ev.pop("queryStringParameters", None)
    ev.pop("pathParameters", None)
    ev.pop("stageVariables", None)
    ctx = ev["requestContext"]
    ctx.pop("authentication", None)
    ctx.pop("authorizer", None)
    ctx["accountId"] = ACCOUNT
    ctx["apiId"] = "a1b2c3d4e5"
    host = headers["host"]
    ctx["domainName"] = host
    ctx["domainPrefix"] = host.split(".")[0]
    ctx["http"]["method"] = method
    ctx["http"]["path"] = path
    ctx["http"]["sourceIp"] = headers.get("x-forwarded-for", "203.0.113.7").split(",")[-1].strip()
    ctx["http"]["userAgent"] = headers.get("user-agent", "")
    ctx["requestId"] = hashlib.md5(f"{method} {host}{path}?{query}".encode()).hexdigest()[:16]
    ctx["time"] = "03/Jan/2026:10:11:20 +0000"
    ctx["timeEpoch"] = (CHANGED + 8) * 1000
    if body is None:
        ev.pop("body", None)
        ev["isBase64Encoded"] = False
    else:
        ev["body"] = body
        ev["isBase64Encoded"] = False
    return ev


def rest_api(
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    body: str | None = None,
) -> dict:
    """A REST API (payload 1.0) event as the deployed API sends it: through a custom
    domain (no stage in the path), every route proxied, request bodies base64-encoded
    (binary media type */*)."""
    ev = load("apigateway-aws-proxy.json")
    ev["resource"] = "/" if path == "/" else "/{proxy+}"
    ev["path"] = urllib.parse.unquote(path)
    ev["httpMethod"] = method
    ev["headers"] = headers
    ev["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    params = urllib.parse.parse_qs(query, keep_blank_values=True)
    ev["queryStringParameters"] = {k: v[-1] for k, v in params.items()} or None
    ev["multiValueQueryStringParameters"] = params or None
    ev["pathParameters"] = None if path == "/" else {"proxy": urllib.parse.unquote(path[1:])}
    ev["stageVariables"] = None
    if body is None:
        ev["body"] = None
        ev["isBase64Encoded"] = False
    else:
        ev["body"] = base64.b64encode(body.encode()).decode()
        ev["isBase64Encoded"] = True
    ctx = ev["requestContext"]
    host = headers["host"]
    ctx["accountId"] = ACCOUNT
    ctx["apiId"] = "a1b2c3d4e5"
    ctx["domainName"] = host
    ctx["domainPrefix"] = host.split(".")[0]
    ctx["stage"] = "live"
    ctx["path"] = ev["path"]
    ctx["resourcePath"] = ev["resource"]
    ctx["httpMethod"] = method
    ctx["requestId"] = hashlib.md5(f"{method} {host}{path}?{query}".encode()).hexdigest()
    ctx["requestTime"] = "03/Jan/2026:10:11:20 +0000"
    ctx["requestTimeEpoch"] = (CHANGED + 8) * 1000
    ctx["identity"]["sourceIp"] = headers.get("x-forwarded-for", "203.0.113.7").split(",")[0].strip()
    ctx["identity"]["userAgent"] = headers.get("user-agent", "")
    return ev


BROWSER = {
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "accept-encoding": "br, gzip",
    "user-agent": "Mozilla/5.0 (X11; Linux x86_64) skyhost-fixture",
    "x-forwarded-for": "203.0.113.7",
    "x-forwarded-port": "443",
    "x-forwarded-proto": "https",
}


def api_fixtures() -> None:
    page = ("GET", "/docs/getting-started/", "ref=nav", {"host": DOMAINS[0], **BROWSER})
    write("http-api-get-page.json", http_api(*page))
    # rest-api-get-page.json (below) keeps the generated sample's stage path.
    write("rest-api-get-page-custom-domain.json", rest_api(*page))
    # Non-ASCII path, percent-encoded as browsers send it; Host with a port.
    both(
        "get-encoded-path",
        "GET",
        "/guides/caf%C3%A9%20menu.html",
        "",
        {"host": DOMAINS[1].upper() + ":443", **BROWSER},
    )
    # Behind CloudFront: Host is the origin name, the site host travels in X-Forwarded-Host,
    # and the origin custom header proves the request came through the distribution.
    both(
        "get-forwarded-host",
        "GET",
        "/docs/getting-started/",
        "",
        {
            "host": ORIGIN_NAME,
            "x-forwarded-host": DOMAINS[0],
            "cloudfront-viewer-country": "DE",
            "accept-language": "de-DE,de;q=0.9,en;q=0.5",
            "via": "2.0 0f1e2d3c4b5a69788796a5b4c3d2e1f0.cloudfront.net (CloudFront)",
            "x-amz-cf-id": "Zm9yLWZpeHR1cmVzLW9ubHktbm90LWEtcmVhbC1pZA==",
            "x-skyhost-origin-verify": ORIGIN_VERIFY_SECRET,
            **{**BROWSER, "x-forwarded-for": "198.51.100.23, 130.176.0.1"},
        },
    )
    both(
        "health",
        "GET",
        "/_skyhost/health",
        "",
        {
            "host": f"us-west-2.{ORIGIN_NAME}",
            "user-agent": "Amazon-Route53-Health-Check-Service (ref 6a1b2c3d-0000-4000-8000-000000000000; report http://amzn.to/1vsZADi)",
            "x-forwarded-for": "54.183.255.128",
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
        },
    )
    notification = {
        "site": SITE,
        "revision": 7,
        "record": {
            "id": SITE,
            "domains": DOMAINS,
            "active": DEPLOY_NEW,
            "revision": 7,
            "settings": {"suspended": False},
            "updated": CHANGED,
        },
        "changed_ms": CHANGED * 1000 + 250,
    }
    body = json.dumps(notification, separators=(",", ":"))
    tag = hmac.new(NOTIFY_SECRET.encode(), f"{NOTIFY_TS}.{body}".encode(), hashlib.sha256).hexdigest()
    both(
        "notify",
        "POST",
        "/_skyhost/notify",
        "",
        {
            "host": f"eu-central-1.{ORIGIN_NAME}",
            "content-type": "application/json",
            "content-length": str(len(body.encode())),
            "user-agent": "skyhost-replicator",
            "x-skyhost-signature": f"t={NOTIFY_TS},v1={tag}",
            "x-forwarded-for": "35.80.0.1",
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
        },
        body=body,
    )

    # The generated REST API (payload 1.0) sample as a site page request; its path keeps
    # the sample's stage ("/prod/…"), as requests through the execute-api name have it.
    ev = load("apigateway-aws-proxy.json")
    headers = {
        "Accept": BROWSER["accept"],
        "Accept-Encoding": BROWSER["accept-encoding"],
        "Host": DOMAINS[0],
        "User-Agent": BROWSER["user-agent"],
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    ev["headers"] = headers
    ev["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    ev["queryStringParameters"] = {"lang": "en"}
    ev["multiValueQueryStringParameters"] = {"lang": ["en"]}
    ev["stageVariables"] = None
    ev["body"] = None
    ev["isBase64Encoded"] = False
    ctx = ev["requestContext"]
    ctx["accountId"] = ACCOUNT
    ctx["domainName"] = DOMAINS[0]
    ctx["identity"]["sourceIp"] = "203.0.113.7"
    ctx["identity"]["userAgent"] = BROWSER["user-agent"]
    write("rest-api-get-page.json", ev)


def both(name: str, *args, **kwargs) -> None:
    """Writes the request as an HTTP API (payload 2.0) and a REST API (payload 1.0) event."""
    write(f"http-api-{name}.json", http_api(*args, **kwargs))
    write(f"rest-api-{name}.json", rest_api(*args, **kwargs))


def main() -> None:
    OUT.mkdir(exist_ok=True)
    dynamodb_fixtures()
    s3_fixtures()
    api_fixtures()


if __name__ == "__main__":
    main()
