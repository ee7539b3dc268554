"""Each function's IAM role grants exactly what its code calls, on the resources it uses.

The actions come from the code (tests/template/rust_calls.py reads every AWS SDK call a
function's crate can reach), plus what the platform does on the function's behalf, read
from the template: writing its log group, polling its stream and queue event sources,
sending failed events to their destinations. The resources come from the function's
environment in the template: the table, buckets, queues and secrets it is told to use.
Where a function uses a bucket (read, or read and write, and under which key prefix) is
the one thing stated here, in S3_LOCATIONS, with the reason.

Every (action, resource) the role grants must be expected, and every expected one granted;
`test_deleting_any_grant_fails_the_check` proves the check sees each single action,
resource and statement of template.yaml.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from rust_calls import ROOT, all_sdk_calls, function_calls
from test_template import (
    ACCOUNT,
    DEPLOY_REGIONS,
    Stack,
    load_template,
    pairs,
    samconfig_overrides,
)

CRATES = {
    "OriginFunction": "crates/origin",
    "ReplicatorFunction": "crates/replicator",
    "AssetCopierFunction": "crates/asset-copier",
}

# Where each function's code reads and writes objects: (environment variable naming the
# bucket or `region=bucket` list, key prefix, "read" or "write"). A write location also
# gets the code's read actions.
S3_LOCATIONS = {
    # Serves from its own bucket, and copies there what the fail-safe had to read from
    # the primary's (`data.rs` backfill); the primary's bucket is only read.
    "OriginFunction": [
        ("SKYHOST_BUCKET", "sites/", "write"),
        ("SKYHOST_PRIMARY_BUCKET", "sites/", "read"),
    ],
    # Copies the primary's objects to every replica (HEAD first), and keeps the sweep's
    # state under `_skyhost/` in the primary's bucket.
    "AssetCopierFunction": [
        ("SKYHOST_PRIMARY_BUCKET", "sites/", "read"),
        ("SKYHOST_PRIMARY_BUCKET", "_skyhost/", "write"),
        ("SKYHOST_REPLICA_BUCKETS", "sites/", "write"),
    ],
}

# S3 actions on a bucket rather than on its objects.
BUCKET_ACTIONS = {"s3:ListBucket"}

# What Lambda does with the role for an event source (AWS Lambda developer guide).
STREAM_POLL = [
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
]
QUEUE_POLL = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
LOG_WRITE = ["logs:CreateLogStream", "logs:PutLogEvents"]

Grant = tuple[str, str]


def stacks() -> list[tuple[str, dict[str, str]]]:
    """Every deployed region's parameters, and a primary with every replica slot used,
    each with and without CloudFront."""
    cases = [(region, samconfig_overrides(region)) for region in DEPLOY_REGIONS]
    primary = cases[0][1]["PrimaryRegion"]
    full = {
        **samconfig_overrides(primary),
        "ReplicaRegions": "eu-central-1,ap-southeast-1,us-east-1,sa-east-1",
    }
    cases.append((primary, full))
    return [
        (region, {**overrides, "EnableCloudFront": cloudfront})
        for region, overrides in cases
        for cloudfront in ("false", "true")
    ]


STACKS = stacks()


def arn_of(value: str) -> str:
    """The ARN of a resource a `Ref` names (`<Queue>` -> `<Queue.Arn>`)."""
    m = re.fullmatch(r"<([A-Za-z0-9]+)>", value)
    assert m, f"{value!r} is not a reference to a resource of the template"
    return f"<{m.group(1)}.Arn>"


def bucket_names(env: dict[str, str], var: str) -> list[str]:
    value = env.get(var, "")
    assert value, f"the environment lacks {var}"
    return list(pairs(value).values()) if var.endswith("S") else [value]


def role_of(stack: Stack, function: str) -> str:
    role = stack.t["Resources"][function]["Properties"]["Role"]
    [name, attr] = role["Fn::GetAtt"] if isinstance(role["Fn::GetAtt"], list) else role["Fn::GetAtt"].split(".")
    assert attr == "Arn"
    return name


def granted(stack: Stack, role: str) -> set[Grant]:
    """Every (action, resource) the role's policies allow, evaluated for the stack."""
    out: set[Grant] = set()
    for policy in stack.t["Resources"][role]["Properties"]["Policies"]:
        for stmt in stack.eval(policy["PolicyDocument"]["Statement"]):
            assert stmt["Effect"] == "Allow", f"{role}: only Allow statements are expected"
            assert set(stmt) <= {"Sid", "Effect", "Action", "Resource"}, stmt
            actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
            resources = stmt["Resource"] if isinstance(stmt["Resource"], list) else [stmt["Resource"]]
            for a in actions:
                assert "*" not in a, f"{role}: wildcard action {a}"
                out.update((a, r) for r in resources)
    return out


def platform_needs(stack: Stack, function: str) -> set[Grant]:
    """What Lambda does with the function's role: logs, event sources, failure targets."""
    props = stack.eval(stack.t["Resources"][function]["Properties"])
    out: set[Grant] = set()
    log_group = arn_of(props["LoggingConfig"]["LogGroup"])
    out.update((a, log_group) for a in LOG_WRITE)
    destinations = []
    for event in props.get("Events", {}).values():
        p = event.get("Properties", {})
        if event["Type"] == "DynamoDB":
            m = re.fullmatch(r"<([A-Za-z0-9]+)\.StreamArn>", p["Stream"])
            assert m, p["Stream"]
            out.update((a, f"<{m.group(1)}.Arn>/stream/*") for a in STREAM_POLL)
        elif event["Type"] == "SQS":
            out.update((a, p["Queue"]) for a in QUEUE_POLL)
        on_failure = p.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        if on_failure:
            destinations.append(on_failure)
    if "DeadLetterQueue" in props:
        assert props["DeadLetterQueue"]["Type"] == "SQS"
        destinations.append(props["DeadLetterQueue"]["TargetArn"])
    out.update(("sqs:SendMessage", d) for d in destinations)
    for name, res in stack.t["Resources"].items():
        if res["Type"] == "AWS::Lambda::EventSourceMapping" and stack.exists(name):
            mapping = stack.eval(res["Properties"])
            if mapping["FunctionName"] == f"<{function}>":
                out.update((a, mapping["EventSourceArn"]) for a in QUEUE_POLL)
    return out


def code_needs(stack: Stack, function: str, actions: set[str]) -> set[Grant]:
    """The code's actions placed on the resources the function's environment names."""
    env = stack.env(function)
    region = stack.pseudo["AWS::Region"]
    out: set[Grant] = set()
    s3_read = {a for a in actions if a.startswith("s3:") and a.split(":")[1].startswith("Get")}
    s3_write = {a for a in actions if a.startswith("s3:")} - s3_read - BUCKET_ACTIONS
    for action in sorted(actions):
        service = action.split(":")[0]
        if service == "dynamodb":
            table = env["SKYHOST_TABLE"]
            arn = (
                f"<{table[1:-1]}.Arn>"
                if table.startswith("<")
                else f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{table}"
            )
            out.add((action, arn))
        elif service == "secretsmanager":
            for var, name in env.items():
                if var.endswith("_SECRET_ID"):
                    out.add((action, f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:{name}-??????"))
        elif service == "sqs":
            for queue in pairs(env["SKYHOST_REGION_QUEUES"]).values():
                out.add((action, arn_of(queue)))
        elif service != "s3":
            raise AssertionError(f"{function} calls {action}: place its resource in test_iam.py")
    for var, prefix, mode in S3_LOCATIONS.get(function, []):
        for bucket in bucket_names(env, var):
            objects = f"arn:aws:s3:::{bucket}/{prefix}*"
            placed = s3_read | (s3_write if mode == "write" else set())
            out.update((a, objects) for a in placed)
            # Without ListBucket, reading a missing key answers 403 instead of 404.
            if s3_read or "s3:ListBucket" in actions:
                out.add(("s3:ListBucket", f"arn:aws:s3:::{bucket}"))
    return out


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


@pytest.fixture(scope="module")
def actions() -> dict[str, set[str]]:
    return {f: function_calls(ROOT / crate).actions() for f, crate in CRATES.items()}


def expected(stack: Stack, function: str, actions: set[str]) -> set[Grant]:
    return platform_needs(stack, function) | code_needs(stack, function, actions)


def problems(template: dict, actions: dict[str, set[str]]) -> list[str]:
    """What is wrong with the roles of every stack: missing and unneeded grants."""
    out = []
    for region, params in STACKS:
        stack = Stack(template, region, params)
        for function in CRATES:
            if not stack.exists(function):
                continue
            role = role_of(stack, function)
            want = expected(stack, function, actions[function])
            have = granted(stack, role)
            for a, r in sorted(want - have):
                out.append(f"{region}: {role} lacks {a} on {r}")
            for a, r in sorted(have - want):
                out.append(f"{region}: {role} grants {a} on {r}, which {function} never needs")
    return out


def test_the_code_calls_what_the_functions_are_known_to_do(actions: dict[str, set[str]]) -> None:
    # A floor that keeps the reader honest: if it stopped finding calls, every role
    # would look over-granted rather than the check passing with nothing to check.
    assert {"s3:GetObject", "dynamodb:GetItem", "secretsmanager:GetSecretValue"} <= actions["OriginFunction"]
    assert {"sqs:SendMessage", "secretsmanager:GetSecretValue"} <= actions["ReplicatorFunction"]
    assert {"s3:GetObject", "s3:PutObject"} <= actions["AssetCopierFunction"]
    # The fail-safe's backfill may abort a multipart upload into the region's bucket.
    assert "s3:AbortMultipartUpload" in actions["OriginFunction"]
    # Writes to the sites table are the CLI's alone.
    for function, found in actions.items():
        writes = {"dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem", "dynamodb:TransactWriteItems"}
        assert not found & writes, f"{function} writes the sites table: {found & writes}"


@pytest.mark.parametrize("function", sorted(CRATES))
def test_every_sdk_call_in_the_crate_is_recognised(function: str) -> None:
    # rust_calls raises on an operation-named call on a receiver it does not know.
    all_sdk_calls(ROOT / CRATES[function])


def test_each_role_grants_exactly_what_its_code_and_events_need(
    template: dict, actions: dict[str, set[str]]
) -> None:
    assert problems(template, actions) == []


def deletions(template: dict) -> list[tuple[str, dict]]:
    """Every template with one action, one resource or one statement of a role removed."""
    out = []
    for function in CRATES:
        role_ref = template["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"]
        role = role_ref[0] if isinstance(role_ref, list) else role_ref.split(".")[0]
        for p, policy in enumerate(template["Resources"][role]["Properties"]["Policies"]):
            statements = policy["PolicyDocument"]["Statement"]
            for s, stmt in enumerate(statements):
                sid = stmt.get("Sid", s)

                def variant(change) -> dict:
                    t = copy.deepcopy(template)
                    change(t["Resources"][role]["Properties"]["Policies"][p]["PolicyDocument"]["Statement"])
                    return t

                out.append((f"{role}.{sid}", variant(lambda st, s=s: st.pop(s))))
                for key in ("Action", "Resource"):
                    items = stmt[key]
                    if isinstance(items, list) and len(items) > 1:
                        for i in range(len(items)):
                            out.append(
                                (f"{role}.{sid}.{key}[{i}]", variant(lambda st, s=s, k=key, i=i: st[s][k].pop(i)))
                            )
    return out


def test_deleting_any_grant_fails_the_check(template: dict, actions: dict[str, set[str]]) -> None:
    assert problems(template, actions) == [], "the template must pass before its deletions are tried"
    cases = deletions(template)
    assert len(cases) > 20
    unnoticed = [name for name, t in cases if not problems(t, actions)]
    assert unnoticed == [], f"deleting these from template.yaml passes the check: {unnoticed}"


def test_an_extra_grant_fails_the_check(template: dict, actions: dict[str, set[str]]) -> None:
    t = copy.deepcopy(template)
    [policy] = t["Resources"]["OriginRole"]["Properties"]["Policies"]
    for stmt in policy["PolicyDocument"]["Statement"]:
        if stmt.get("Sid") == "ReadSitesTable":
            stmt["Action"] = list(stmt["Action"]) + ["dynamodb:PutItem"]
    found = problems(t, actions)
    assert found and all("dynamodb:PutItem" in p and "never needs" in p for p in found), found
