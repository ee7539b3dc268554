"""template.yaml against the code and against docs/config.md, so neither can drift.

What is checked (docs/config.md describes the contract):
- cfn-lint finds nothing (errors, warnings, informational) in the deploy regions, and
  the SAM translator turns the template into plain CloudFormation for every region;
- each function's environment in the template is exactly the variables docs/config.md
  lists for it, and every SKYHOST_*/REDIS_URL literal in a Lambda crate (or in
  crates/meta, for the functions listed there) is set on the function;
- each documented variable is read by the code of its function;
- each function's binary is a binary of the workspace, built from the documented crate;
- each event source is one the function's crate decodes;
- the template's intrinsic functions produce, for the regions of samconfig.toml and for
  other replica sets, the values the code expects (pair lists, bucket names, table ARN);
- the replicator's event filter keeps exactly the site records of a stream batch;
- the derived fixtures in events/skyhost/ agree with what they claim.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import decode_str
from samtranslator.translator.transform import transform as sam_transform
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
CONFIG_DOC = ROOT / "docs" / "config.md"
SAMCONFIG = ROOT / "samconfig.toml"
EVENTS = ROOT / "events" / "skyhost"


def samconfig_regions() -> list[str]:
    """The SAM environments that name a region: one per deployed region."""
    cfg = tomllib.loads(SAMCONFIG.read_text())
    return [
        env
        for env, sections in cfg.items()
        if isinstance(sections, dict)
        and sections.get("global", {}).get("parameters", {}).get("region") == env
    ]


DEPLOY_REGIONS = samconfig_regions()
ACCOUNT = "111122223333"
SERVERLESS_FUNCTION = "AWS::Serverless::Function"
ENV_LITERAL = re.compile(r'"(SKYHOST_[A-Z0-9_]+|REDIS_URL)"')
TEMPLATE_VAR = re.compile(r"^(SKYHOST_[A-Z0-9_]+|REDIS_URL)$")

# How a crate's source shows it decodes each SAM event type.
DECODERS = {
    "HttpApi": re.compile(r"\blambda_http\b"),
    "Api": re.compile(r"\blambda_http\b"),
    "DynamoDB": re.compile(r"\bdynamodb::(?:\{[^}]*\b)?Event\b"),
    "S3": re.compile(r"\bS3Event\b"),
    "SQS": re.compile(r"\bSqsEvent\b"),
    # The asset-copier tells its sweeps apart; the domains function takes any input.
    "Schedule": re.compile(r'\.get\("sweep"\)|LambdaEvent<serde_json::Value>'),
}


# ---------------------------------------------------------------------------- loading


def load_template() -> dict:
    template, problems = decode_str(TEMPLATE.read_text())
    assert not problems, [str(p) for p in problems]
    assert template is not None
    return template


def markdown_table(text: str, heading: str) -> list[dict[str, str]]:
    """Rows of the first table under `## heading`, keyed by the header cells."""
    lines = text.splitlines()
    try:
        start = next(i for i, l in enumerate(lines) if l.strip() == f"## {heading}")
    except StopIteration:
        raise AssertionError(f"docs/config.md has no '## {heading}' section") from None
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        stripped = line.strip()
        if stripped.startswith("|"):
            cells = [c.strip().replace("`", "") for c in stripped.strip("|").split("|")]
            rows.append(cells)
        elif rows:
            break
    assert len(rows) >= 2, f"no table under '## {heading}'"
    header, sep, body = rows[0], rows[1], rows[2:]
    assert all(set(c) <= set("-: ") for c in sep), f"malformed table under '## {heading}'"
    out = []
    for cells in body:
        assert len(cells) == len(header), f"row {cells} under '## {heading}' has the wrong width"
        out.append(dict(zip(header, cells)))
    return out


def split_list(cell: str) -> list[str]:
    return [] if cell.strip() in ("", "-") else [c.strip() for c in cell.split(",")]


class Contract:
    """The three tables of docs/config.md."""

    def __init__(self) -> None:
        text = CONFIG_DOC.read_text()
        self.functions = {r["function"]: r for r in markdown_table(text, "Functions")}
        self.variables: dict[str, dict[str, dict[str, str]]] = {}
        for r in markdown_table(text, "Variables"):
            per_fn = self.variables.setdefault(r["function"], {})
            assert r["variable"] not in per_fn, f"{r['variable']} listed twice for {r['function']}"
            assert r["required"] in ("yes", "no"), f"required must be yes/no: {r}"
            per_fn[r["variable"]] = r
        self.shared = {
            r["variable"]: split_list(r["functions"])
            for r in markdown_table(text, "Shared variables (crates/meta)")
        }

    def crate_of(self, function: str) -> Path:
        return ROOT / self.functions[function]["crate"]

    def vars_of(self, function: str) -> set[str]:
        return set(self.variables.get(function, {}))


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract()


def serverless_functions(template: dict) -> dict[str, dict]:
    return {
        name: res
        for name, res in template["Resources"].items()
        if res.get("Type") == SERVERLESS_FUNCTION
    }


def template_vars(template: dict, function: str) -> set[str]:
    res = template["Resources"][function]
    env = res.get("Properties", {}).get("Environment", {}).get("Variables", {})
    return {k for k in env if TEMPLATE_VAR.match(k)}


def rust_sources(crate: Path) -> list[Path]:
    return sorted((crate / "src").rglob("*.rs"))


def env_literals(crate: Path) -> dict[str, list[str]]:
    """Variable name -> files (relative) whose source has it as a string literal."""
    found: dict[str, list[str]] = {}
    for path in rust_sources(crate):
        for name in ENV_LITERAL.findall(path.read_text()):
            found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


FUNCTIONS = ["OriginFunction", "ReplicatorFunction", "AssetCopierFunction", "DomainsFunction"]


# ---------------------------------------------------------------------------- lint


def test_cfn_lint_reports_nothing() -> None:
    matches = lint_file(
        TEMPLATE, ManualArgs(regions=DEPLOY_REGIONS, include_checks=["I"])
    )
    assert [str(m) for m in matches] == []


class _NoManagedPolicies:
    """The template names no managed policies, so the translator needs none."""

    def load(self) -> dict:
        return {}


def sam_translate(region: str, overrides: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict:
    """The CloudFormation the SAM transform produces for one region's stack."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    tpl = yaml_parse(TEMPLATE.read_text())
    # `sam build` replaces the local CodeUri with the built artifact; stand in for it.
    tpl["Globals"]["Function"]["CodeUri"] = "s3://skyhost-artifacts/build.zip"
    return sam_transform(tpl, dict(overrides), _NoManagedPolicies())


def test_sam_translates_and_streams_origin_responses(monkeypatch: pytest.MonkeyPatch) -> None:
    for region in DEPLOY_REGIONS:
        out = sam_translate(region, samconfig_overrides(region), monkeypatch)
        res = out["Resources"]
        for fn in FUNCTIONS:
            props = res[fn]["Properties"]
            assert res[fn]["Type"] == "AWS::Lambda::Function"
            assert (props["Runtime"], props["Handler"], props["Architectures"]) == (
                "provided.al2023",
                "bootstrap",
                ["arm64"],
            )
        # lambda_http's streaming responses need InvokeWithResponseStream on every route.
        paths = res["OriginApi"]["Properties"]["Body"]["paths"]
        assert set(paths) == {"/", "/{proxy+}"}
        for path, item in paths.items():
            integration = item["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"]
            assert integration["type"] == "aws_proxy", path
            assert integration["responseTransferMode"] == "STREAM", path
            assert integration["uri"]["Fn::Sub"].endswith(
                "/2021-11-15/functions/${OriginFunction.Arn}/response-streaming-invocations"
            ), path
        mapping = res["ApiMapping"]["Properties"]
        assert mapping["RestApiId"] == {"Ref": "OriginApi"}
        assert res[mapping["Stage"]["Ref"]]["Properties"]["StageName"] == "live"


# ---------------------------------------------------------------------------- contract


def test_contract_names_exactly_the_template_functions(template: dict, contract: Contract) -> None:
    assert set(contract.functions) == set(FUNCTIONS)
    assert set(serverless_functions(template)) == set(contract.functions)
    assert set(contract.variables) <= set(contract.functions)


def test_shared_variables_agree_with_the_variables_table(contract: Contract) -> None:
    for var, functions in contract.shared.items():
        for fn in functions:
            assert fn in contract.functions, f"{var}: unknown function {fn}"
            assert var in contract.vars_of(fn), (
                f"docs/config.md lists {var} as read by meta for {fn}, "
                f"but not in {fn}'s rows of the Variables table"
            )


@pytest.mark.parametrize("function", FUNCTIONS)
def test_template_sets_exactly_the_documented_variables(
    template: dict, contract: Contract, function: str
) -> None:
    documented = contract.vars_of(function)
    in_template = template_vars(template, function)
    assert documented - in_template == set(), f"{function}: documented but not set by template.yaml"
    assert in_template - documented == set(), f"{function}: set by template.yaml but not in docs/config.md"


# ---------------------------------------------------------------------------- code vs template


@pytest.mark.parametrize("function", FUNCTIONS)
def test_variables_the_crate_reads_are_set(
    template: dict, contract: Contract, function: str
) -> None:
    crate = contract.crate_of(function)
    assert (crate / "src").is_dir(), f"{crate} has no src/"
    missing = {
        var: files
        for var, files in env_literals(crate).items()
        if var not in template_vars(template, function)
    }
    assert missing == {}, f"{function} reads variables template.yaml does not set on it"


def test_variables_meta_reads_are_documented_and_set(template: dict, contract: Contract) -> None:
    meta = ROOT / "crates" / "meta"
    assert (meta / "src").is_dir()
    for var, files in env_literals(meta).items():
        assert var in contract.shared, (
            f"crates/meta reads {var} ({files}): add it to 'Shared variables (crates/meta)' "
            "in docs/config.md with the functions that need it"
        )
        for fn in contract.shared[var]:
            assert var in template_vars(template, fn), f"meta reads {var} for {fn}; template.yaml does not set it"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_documented_variables_are_read_by_the_code(contract: Contract, function: str) -> None:
    read = set(env_literals(contract.crate_of(function)))
    meta_read = set(env_literals(ROOT / "crates" / "meta"))
    read |= {v for v in meta_read if function in contract.shared.get(v, [])}
    unread = contract.vars_of(function) - read
    assert unread == set(), (
        f"{function}: docs/config.md and template.yaml set variables no code of "
        f"{contract.functions[function]['crate']} (or crates/meta) reads"
    )


# ---------------------------------------------------------------------------- binaries


def workspace_binaries() -> dict[str, tuple[Path, Path]]:
    """Binary name -> (member dir, source file) for every binary cargo would build."""
    root = tomllib.loads((ROOT / "Cargo.toml").read_text())
    members: list[Path] = []
    for pattern in root.get("workspace", {}).get("members", []):
        members.extend(sorted(p for p in ROOT.glob(pattern) if (p / "Cargo.toml").is_file()))
    bins: dict[str, tuple[Path, Path]] = {}
    for member in members:
        manifest = tomllib.loads((member / "Cargo.toml").read_text())
        package = manifest.get("package", {}).get("name")
        explicit = manifest.get("bin", [])
        claimed: set[Path] = set()
        for b in explicit:
            name = b["name"]
            if "path" in b:
                src = member / b["path"]
            elif name == package and (member / "src/main.rs").exists():
                src = member / "src/main.rs"
            elif (member / f"src/bin/{name}/main.rs").exists():
                src = member / f"src/bin/{name}/main.rs"
            else:
                src = member / f"src/bin/{name}.rs"
            bins[name] = (member, src)
            claimed.add(src.resolve())
        if manifest.get("package", {}).get("autobins", True):
            # Cargo infers a binary only from a file no [[bin]] already names.
            inferred = [(package, member / "src/main.rs")] if package else []
            inferred += [(f.stem, f) for f in sorted((member / "src/bin").glob("*.rs"))]
            inferred += [(f.parent.name, f) for f in sorted((member / "src/bin").glob("*/main.rs"))]
            for name, src in inferred:
                if src.exists() and src.resolve() not in claimed:
                    bins.setdefault(name, (member, src))
    return bins


def function_setting(template: dict, function: str, key: str) -> Any:
    props = template["Resources"][function].get("Properties", {})
    if key in props:
        return props[key]
    return template.get("Globals", {}).get("Function", {}).get(key)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_binary_exists_in_its_crate(template: dict, contract: Contract, function: str) -> None:
    res = template["Resources"][function]
    metadata = res.get("Metadata", {})
    assert metadata.get("BuildMethod") == "rust-cargolambda"
    assert function_setting(template, function, "Runtime") == "provided.al2023"
    assert function_setting(template, function, "Architectures") == ["arm64"]
    binary = metadata.get("BuildProperties", {}).get("Binary") or function_setting(
        template, function, "Handler"
    )
    assert binary == contract.functions[function]["binary"]
    bins = workspace_binaries()
    assert binary in bins, f"no workspace crate builds a binary named {binary!r} (have {sorted(bins)})"
    member, source = bins[binary]
    assert member == contract.crate_of(function), f"{binary} is built by {member}, not the documented crate"
    assert source.is_file(), f"{binary}: {source.relative_to(ROOT)} does not exist"


# ---------------------------------------------------------------------------- events


@pytest.mark.parametrize("function", FUNCTIONS)
def test_event_sources_are_decoded_by_the_handler(
    template: dict, contract: Contract, function: str
) -> None:
    events = template["Resources"][function].get("Properties", {}).get("Events", {})
    kinds = {e["Type"] for e in events.values()}
    assert kinds, f"{function} has no event source"
    allowed = set(split_list(contract.functions[function]["events"]))
    assert kinds <= allowed, f"{function}: event types {kinds - allowed} are not documented for it"
    source = "\n".join(p.read_text() for p in rust_sources(contract.crate_of(function)))
    for kind in sorted(kinds):
        assert DECODERS[kind].search(source), (
            f"{function} receives {kind} events, but {contract.functions[function]['crate']}/src "
            f"never decodes them (expected a match for {DECODERS[kind].pattern!r})"
        )


def test_replicator_event_source_is_bounded_and_reports_partial_failures(template: dict) -> None:
    events = template["Resources"]["ReplicatorFunction"]["Properties"]["Events"]
    [stream] = [e["Properties"] for e in events.values() if e["Type"] == "DynamoDB"]
    assert stream["Stream"] == {"Fn::GetAtt": ["SitesTable", "StreamArn"]}
    assert stream["BisectBatchOnFunctionError"] is True
    assert 0 <= stream["MaximumRetryAttempts"] <= 100
    assert 60 <= stream["MaximumRecordAgeInSeconds"] <= 86400
    assert stream["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert stream["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["ReplicatorFailureQueue", "Arn"]
    }
    table = template["Resources"]["SitesTable"]
    assert table["Type"] == "AWS::DynamoDB::GlobalTable"
    assert table["Properties"]["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"


def pattern_matches(pattern: Any, event: Any) -> bool:
    """Event-filter matching for the subset the template uses: nested keys, and leaf
    lists of exact values."""
    if isinstance(pattern, list):
        return any(event == p for p in pattern)
    if not isinstance(pattern, dict) or not isinstance(event, dict):
        return False
    return all(k in event and pattern_matches(v, event[k]) for k, v in pattern.items())


def test_replicator_filter_keeps_exactly_the_site_records(template: dict) -> None:
    events = template["Resources"]["ReplicatorFunction"]["Properties"]["Events"]
    [stream] = [e["Properties"] for e in events.values() if e["Type"] == "DynamoDB"]
    patterns = [json.loads(f["Pattern"]) for f in stream["FilterCriteria"]["Filters"]]
    batch = json.loads((EVENTS / "dynamodb-stream-mixed.json").read_text())["Records"]

    def kind(record: dict) -> set[str]:
        images = [record["dynamodb"].get(i) for i in ("NewImage", "OldImage")]
        return {img["kind"]["S"] for img in images if img}

    kept = [r for r in batch if any(pattern_matches(p, r) for p in patterns)]
    expected = [r for r in batch if "site" in kind(r)]
    assert {r["eventName"] for r in expected} == {"INSERT", "MODIFY", "REMOVE"}
    assert len(expected) < len(batch)  # the batch also holds other kinds
    assert kept == expected
    sites_only = json.loads((EVENTS / "dynamodb-stream-sites.json").read_text())["Records"]
    assert sites_only == expected


# ---------------------------------------------------------------------------- values


NO_VALUE = object()


class Stack:
    """Evaluates the template's intrinsic functions for one region and parameter set:
    just enough CloudFormation for the functions the template uses."""

    def __init__(self, template: dict, region: str, overrides: dict[str, str]) -> None:
        self.t = template
        self.params = {
            k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()
        }
        self.params.update(overrides)
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::StackName": "skyhost",
            "AWS::URLSuffix": "amazonaws.com",
        }
        self._conds: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conds:
            self._conds[name] = self.truth(self.t["Conditions"][name])
        return self._conds[name]

    def truth(self, node: Any) -> bool:
        (fn, arg), = node.items()
        if fn == "Condition":
            return self.condition(arg)
        if fn == "Fn::Equals":
            return self.eval(arg[0]) == self.eval(arg[1])
        if fn == "Fn::Not":
            return not self.truth(arg[0])
        if fn == "Fn::And":
            return all(self.truth(a) for a in arg)
        if fn == "Fn::Or":
            return any(self.truth(a) for a in arg)
        raise AssertionError(f"unsupported condition function {fn}")

    def exists(self, resource: str) -> bool:
        cond = self.t["Resources"][resource].get("Condition")
        return cond is None or self.condition(cond)

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        res = self.t["Resources"].get(name)
        if res is not None and res["Type"] == "AWS::S3::Bucket":
            return self.eval(res["Properties"]["BucketName"])
        return f"<{name}>"

    def sub(self, text: str, extra: dict[str, Any]) -> str:
        def one(m: re.Match) -> str:
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in extra:
                return str(extra[name])
            if "." in name:
                return f"<{name}>"
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def eval(self, node: Any) -> Any:
        if isinstance(node, dict):
            if len(node) == 1:
                (fn, arg), = node.items()
                if fn == "Ref":
                    return self.ref(arg)
                if fn == "Fn::GetAtt":
                    return f"<{'.'.join(arg) if isinstance(arg, list) else arg}>"
                if fn == "Fn::Sub":
                    if isinstance(arg, str):
                        return self.sub(arg, {})
                    return self.sub(arg[0], {k: self.eval(v) for k, v in arg[1].items()})
                if fn == "Fn::Join":
                    items = [i for i in self.eval(arg[1]) if i is not NO_VALUE]
                    return arg[0].join(str(i) for i in items)
                if fn == "Fn::Split":
                    return self.eval(arg[1]).split(arg[0])
                if fn == "Fn::Select":
                    return self.eval(arg[1])[int(arg[0])]
                if fn == "Fn::If":
                    return self.eval(arg[1] if self.condition(arg[0]) else arg[2])
                if fn.startswith("Fn::"):
                    raise AssertionError(f"unsupported function {fn}")
            out = {k: self.eval(v) for k, v in node.items()}
            return {k: v for k, v in out.items() if v is not NO_VALUE}
        if isinstance(node, list):
            return [v for v in (self.eval(i) for i in node) if v is not NO_VALUE]
        return node

    def env(self, function: str) -> dict[str, str]:
        props = self.t["Resources"][function]["Properties"]
        return self.eval(props.get("Environment", {}).get("Variables", {}))

    def statement(self, role: str, sid: str) -> dict:
        [doc] = self.t["Resources"][role]["Properties"]["Policies"]
        [stmt] = [s for s in doc["PolicyDocument"]["Statement"] if s.get("Sid") == sid]
        return self.eval(stmt)


def samconfig_overrides(env: str) -> dict[str, str]:
    cfg = tomllib.loads(SAMCONFIG.read_text())
    out = {}
    for item in cfg[env]["deploy"]["parameters"]["parameter_overrides"]:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def pairs(value: str) -> dict[str, str]:
    assert value == value.strip() and not value.startswith(",") and not value.endswith(","), value
    out = {}
    for entry in value.split(","):
        key, sep, val = entry.partition("=")
        assert sep and key and val, f"malformed entry {entry!r} in {value!r}"
        assert key not in out, f"duplicate key {key!r} in {value!r}"
        out[key] = val
    return out


def test_samconfig_has_one_environment_per_region_with_the_same_topology() -> None:
    assert len(DEPLOY_REGIONS) >= 2
    shared = ("PrimaryRegion", "ReplicaRegions", "DomainName", "EnableCloudFront")
    tops = {tuple(samconfig_overrides(r).get(k) for k in shared) for r in DEPLOY_REGIONS}
    assert len(tops) == 1, f"environments disagree on {shared}: {tops}"
    [(primary, replicas, _, _)] = tops
    assert primary in DEPLOY_REGIONS
    assert sorted([primary] + split_list(replicas)) == sorted(DEPLOY_REGIONS)


@pytest.mark.parametrize("env", DEPLOY_REGIONS)
def test_samconfig_stacks_resolve_as_the_code_expects(template: dict, contract: Contract, env: str) -> None:
    overrides = samconfig_overrides(env)
    stack = Stack(template, env, overrides)
    primary = overrides["PrimaryRegion"]
    is_primary = env == primary
    for name in ("SitesTable", "ReplicatorFunction", "AssetCopierFunction"):
        assert stack.exists(name) == is_primary, name
    assert stack.exists("OriginFunction") and stack.exists("SiteBucket") and stack.exists("LatencyRecord")
    for function in FUNCTIONS:
        if not stack.exists(function):
            continue
        env_values = stack.env(function)
        for var, row in contract.variables[function].items():
            if row["required"] == "yes":
                assert env_values.get(var, "") != "", f"{env}: {function} lacks required {var}"
    origin = stack.env("OriginFunction")
    prefix = stack.params["BucketPrefix"]
    assert origin["SKYHOST_REGION"] == env
    assert origin["SKYHOST_BUCKET"] == f"{prefix}-{ACCOUNT}-{env}"
    assert origin["SKYHOST_PRIMARY_BUCKET"] == f"{prefix}-{ACCOUNT}-{primary}"
    assert_front_settings(stack, origin)
    assert origin.get("REDIS_URL") == (stack.params["RedisUrl"] or None)
    # Every region's origin reads its own replica of the global table, and only it.
    table_arn = stack.statement("OriginRole", "ReadSitesTable")["Resource"]
    primary_stack = Stack(template, primary, samconfig_overrides(primary))
    table = primary_stack.eval(template["Resources"]["SitesTable"]["Properties"])
    assert table_arn == f"arn:aws:dynamodb:{env}:{ACCOUNT}:table/{table['TableName']}"
    # The primary's stack creates a replica in every region, this one included.
    assert env in [r["Region"] for r in table["Replicas"]]


def assert_front_settings(stack: Stack, origin: dict[str, str]) -> None:
    """The origin names its secrets (never holds their values) and gets the front setting."""
    assert origin["SKYHOST_NOTIFY_SECRET_ID"] == stack.params["NotifySecretName"]
    cloudfront = stack.params["EnableCloudFront"] == "true"
    assert origin.get("SKYHOST_ORIGIN_VERIFY_SECRET_ID") == (
        stack.params["OriginVerifySecretName"] if cloudfront else None
    )
    assert origin["SKYHOST_DIRECT_ACCESS"] == stack.params["DirectAccess"]


# (ReplicaRegions, expected replicator endpoints, expected asset-copier buckets or None
# when no asset-copier is created)
PAIR_CASES = [
    ("", "us-west-2=https://us-west-2.o.example", None),
    (
        "eu-central-1",
        "us-west-2=https://us-west-2.o.example,eu-central-1=https://eu-central-1.o.example",
        f"eu-central-1=skyhost-{ACCOUNT}-eu-central-1",
    ),
    (
        "eu-central-1,ap-southeast-1",
        "us-west-2=https://us-west-2.o.example,eu-central-1=https://eu-central-1.o.example,"
        "ap-southeast-1=https://ap-southeast-1.o.example",
        f"eu-central-1=skyhost-{ACCOUNT}-eu-central-1,ap-southeast-1=skyhost-{ACCOUNT}-ap-southeast-1",
    ),
    (
        "eu-central-1,ap-southeast-1,us-east-1,sa-east-1",
        "us-west-2=https://us-west-2.o.example,eu-central-1=https://eu-central-1.o.example,"
        "ap-southeast-1=https://ap-southeast-1.o.example,us-east-1=https://us-east-1.o.example,"
        "sa-east-1=https://sa-east-1.o.example",
        f"eu-central-1=skyhost-{ACCOUNT}-eu-central-1,ap-southeast-1=skyhost-{ACCOUNT}-ap-southeast-1,"
        f"us-east-1=skyhost-{ACCOUNT}-us-east-1,sa-east-1=skyhost-{ACCOUNT}-sa-east-1",
    ),
]


@pytest.mark.parametrize("replicas,endpoints,buckets", PAIR_CASES)
def test_global_table_has_a_replica_in_every_region(
    template: dict, replicas: str, endpoints: str, buckets: str | None
) -> None:
    params = {"PrimaryRegion": "us-west-2", "ReplicaRegions": replicas, "DomainName": "o.example"}
    table = Stack(template, "us-west-2", params).eval(template["Resources"]["SitesTable"]["Properties"])
    regions = [r["Region"] for r in table["Replicas"]]
    assert regions == ["us-west-2"] + split_list(replicas)
    for r in table["Replicas"]:
        assert r["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert r["DeletionProtectionEnabled"] is True


@pytest.mark.parametrize("replicas,endpoints,buckets", PAIR_CASES)
def test_pair_lists_name_every_region_as_its_own_stack_does(
    template: dict, replicas: str, endpoints: str, buckets: str | None
) -> None:
    params = {"PrimaryRegion": "us-west-2", "ReplicaRegions": replicas, "DomainName": "o.example"}
    allowed = re.compile(template["Parameters"]["ReplicaRegions"]["AllowedPattern"])
    assert allowed.fullmatch(replicas)
    primary = Stack(template, "us-west-2", params)
    replicator = primary.env("ReplicatorFunction")
    assert replicator["SKYHOST_REGION_ENDPOINTS"] == endpoints
    regions = ["us-west-2"] + split_list(replicas)
    assert list(pairs(endpoints)) == regions
    # The URL of each region is the name that region's own stack serves and probes.
    for region, base in pairs(endpoints).items():
        own = Stack(template, region, params)
        host = own.eval(template["Resources"]["RegionalApiDomain"]["Properties"]["DomainName"])
        assert base == f"https://{host}"
        probed = own.eval(template["Resources"]["HealthCheck"]["Properties"]["HealthCheckConfig"])
        assert probed["FullyQualifiedDomainName"] == host
        assert probed["ResourcePath"] == "/_skyhost/health"
    if buckets is None:
        assert not primary.exists("AssetCopierFunction")
        return
    copier = primary.env("AssetCopierFunction")
    assert copier["SKYHOST_REPLICA_BUCKETS"] == buckets
    assert copier["SKYHOST_PRIMARY_BUCKET"] == primary.ref("SiteBucket")
    # Each named bucket is the one its region's stack creates, and the copier may write it.
    writable = primary.statement("AssetCopierRole", "WriteReplicaBuckets")["Resource"]
    listable = primary.statement("AssetCopierRole", "ListReplicaBuckets")["Resource"]
    named = pairs(buckets)
    assert list(named) == split_list(replicas)
    for region, bucket in named.items():
        assert Stack(template, region, params).ref("SiteBucket") == bucket
    assert writable == [f"arn:aws:s3:::{b}/sites/*" for b in named.values()]
    assert listable == [f"arn:aws:s3:::{b}" for b in named.values()]


def test_more_than_four_replicas_are_refused_by_the_parameter(template: dict) -> None:
    allowed = re.compile(template["Parameters"]["ReplicaRegions"]["AllowedPattern"])
    assert allowed.fullmatch("eu-central-1,ap-southeast-1,us-east-1,sa-east-1")
    assert not allowed.fullmatch("eu-central-1,ap-southeast-1,us-east-1,sa-east-1,eu-west-1")
    assert not allowed.fullmatch("eu-central-1, ap-southeast-1")
    assert not allowed.fullmatch("eu-central-1,")


@pytest.mark.parametrize(
    "enable,redis,sites",
    [
        ("false", "", ""),
        ("false", "rediss://cache.example:6379", "sites.example"),
        ("true", "", "sites.example"),
        ("true", "rediss://cache.example:6379", ""),
    ],
)
def test_optional_settings_reach_every_region(
    template: dict, enable: str, redis: str, sites: str
) -> None:
    params = {
        "PrimaryRegion": "us-west-2",
        "ReplicaRegions": "eu-central-1",
        "DomainName": "o.example",
        "EnableCloudFront": enable,
        "RedisUrl": redis,
        "SitesDomainName": sites,
    }
    cloudfront = enable == "true"
    for region in ("us-west-2", "eu-central-1"):
        stack = Stack(template, region, params)
        primary = region == "us-west-2"
        origin = stack.env("OriginFunction")
        assert_front_settings(stack, origin)
        assert ("SKYHOST_ORIGIN_VERIFY_SECRET_ID" in origin) == cloudfront
        assert origin.get("REDIS_URL") == (redis or None)
        # The distribution exists once, in the primary, and only when enabled.
        assert stack.exists("EdgeDistribution") == (cloudfront and primary)
        # Every region has a latency record of sites.DomainName to its API, CloudFront or
        # not; *.SitesDomainName, the primary's alone, aliases that name or CloudFront.
        for name in ("SitesApiDomain", "SitesApiMapping", "SitesOriginRecord"):
            assert stack.exists(name) == bool(sites), name
        assert stack.exists("SitesLatencyRecord") == (bool(sites) and primary)
        assert stack.exists("SitesEdgeRecordIpv6") == (bool(sites) and cloudfront and primary)
        if sites:
            record = stack.eval(template["Resources"]["SitesOriginRecord"]["Properties"])
            assert record["Name"] == "sites.o.example"
            assert record["Region"] == record["SetIdentifier"] == region
            assert record["HealthCheckId"] == "<HealthCheck>"
            assert record["AliasTarget"]["DNSName"] == "<SitesApiDomain.RegionalDomainName>"
        if sites and primary:
            public = stack.eval(template["Resources"]["SitesLatencyRecord"]["Properties"])
            assert public["Name"] == "*.sites.example"
            expected = "<EdgeDistribution.DomainName>" if cloudfront else "sites.o.example"
            assert public["AliasTarget"]["DNSName"] == expected


# ---------------------------------------------------------------------------- secrets and the front


def secret_arn(region: str, name: str) -> str:
    return f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:{name}-??????"


def secret_statements(stack: Stack, role: str) -> list[dict]:
    """Every statement of `role` that grants a Secrets Manager action, evaluated."""
    [doc] = stack.t["Resources"][role]["Properties"]["Policies"]
    out = []
    for stmt in doc["PolicyDocument"]["Statement"]:
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        if any(str(a).startswith("secretsmanager:") for a in actions):
            out.append(stack.eval(stmt))
    return out


def test_no_secret_value_is_resolved_into_a_function(template: dict) -> None:
    for enable in ("false", "true"):
        params = {"PrimaryRegion": "us-west-2", "ReplicaRegions": "eu-central-1", "EnableCloudFront": enable}
        stack = Stack(template, "us-west-2", params)
        for function in FUNCTIONS:
            if stack.exists(function):
                for var, value in stack.env(function).items():
                    assert "{{resolve:" not in str(value), f"{function} {var} holds a resolved secret"


@pytest.mark.parametrize("enable", ["false", "true"])
@pytest.mark.parametrize("region", ["us-west-2", "eu-central-1"])
def test_functions_may_read_exactly_their_secrets_in_their_region(
    template: dict, enable: str, region: str
) -> None:
    params = {
        "PrimaryRegion": "us-west-2",
        "ReplicaRegions": "eu-central-1",
        "EnableCloudFront": enable,
        "NotifySecretName": "team/notify",
        "OriginVerifySecretName": "team/front",
    }
    stack = Stack(template, region, params)
    [origin] = secret_statements(stack, "OriginRole")
    assert origin["Effect"] == "Allow"
    assert origin["Action"] == "secretsmanager:GetSecretValue"
    expected = [secret_arn(region, "team/notify")]
    if enable == "true":
        expected.append(secret_arn(region, "team/front"))
    assert origin["Resource"] == expected
    if stack.exists("ReplicatorRole"):
        [replicator] = secret_statements(stack, "ReplicatorRole")
        assert replicator["Action"] == "secretsmanager:GetSecretValue"
        assert replicator["Resource"] == secret_arn(region, "team/notify")
    for role in ("AssetCopierRole",):
        if stack.exists(role):
            assert secret_statements(stack, role) == []


def rust_constant(path: Path, pattern: str) -> str:
    m = re.search(pattern, path.read_text())
    assert m, f"{path}: no match for {pattern}"
    return m.group(1)


FORWARDED_RS = ROOT / "crates" / "origin" / "src" / "forwarded.rs"


@pytest.mark.parametrize("version", ["", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"])
def test_cloudfront_sends_the_origin_verify_secret(template: dict, version: str) -> None:
    params = {
        "PrimaryRegion": "us-west-2",
        "EnableCloudFront": "true",
        "OriginVerifySecretName": "team/front",
        "OriginVerifySecretVersion": version,
    }
    allowed = re.compile(template["Parameters"]["OriginVerifySecretVersion"]["AllowedPattern"])
    assert allowed.fullmatch(version)
    stack = Stack(template, "us-west-2", params)
    assert stack.exists("EdgeDistribution")
    config = stack.eval(template["Resources"]["EdgeDistribution"]["Properties"]["DistributionConfig"])
    [origin] = config["Origins"]
    [header] = origin["OriginCustomHeaders"]
    # The header the origin checks, spelled as the code spells it.
    name = rust_constant(FORWARDED_RS, r'ORIGIN_VERIFY: HeaderName = HeaderName::from_static\("([^"]+)"\)')
    assert header["HeaderName"].lower() == name
    # Pinned to a version when given: changing it is what makes CloudFormation re-read.
    pin = f":::{version}" if version else ""
    assert header["HeaderValue"] == "{{resolve:secretsmanager:team/front:SecretString" + pin + "}}"
    # The header is for the origin only: not part of the cache key.
    policy = stack.eval(template["Resources"]["EdgeCachePolicy"]["Properties"])
    keyed = policy["CachePolicyConfig"]["ParametersInCacheKeyAndForwardedToOrigin"]["HeadersConfig"]["Headers"]
    assert name not in [h.lower() for h in keyed]
    assert not allowed.fullmatch("AWSCURRENT")


@pytest.mark.parametrize("replicas", ["", "eu-central-1", "eu-central-1,ap-southeast-1"])
def test_cloudfront_fails_over_to_another_region(template: dict, replicas: str) -> None:
    params = {
        "PrimaryRegion": "us-west-2",
        "ReplicaRegions": replicas,
        "DomainName": "origin.skyhost.example",
        "EnableCloudFront": "true",
        "OriginVerifySecretName": "team/front",
    }
    stack = Stack(template, "us-west-2", params)
    config = stack.eval(template["Resources"]["EdgeDistribution"]["Properties"]["DistributionConfig"])
    origins = {o["Id"]: o for o in config["Origins"]}
    target = config["DefaultCacheBehavior"]["TargetOriginId"]
    if not replicas:
        # One region: nowhere else to go.
        assert list(origins) == ["skyhost-origin"] and target == "skyhost-origin"
        assert "OriginGroups" not in config
        return
    [group] = config["OriginGroups"]["Items"]
    assert config["OriginGroups"]["Quantity"] == 1
    assert target == group["Id"]
    members = [m["OriginId"] for m in group["Members"]["Items"]]
    assert group["Members"]["Quantity"] == len(members) == 2
    # The latency-routed name first, then another region's own name.
    assert origins[members[0]]["DomainName"] == "origin.skyhost.example"
    first_replica = replicas.split(",")[0]
    assert origins[members[1]]["DomainName"] == f"{first_replica}.origin.skyhost.example"
    codes = group["FailoverCriteria"]["StatusCodes"]
    assert sorted(codes["Items"]) == [500, 502, 503, 504] and codes["Quantity"] == 4
    # Both send the origin-verify header, so the second region trusts the forwarded ones.
    assert origins[members[1]]["OriginCustomHeaders"] == origins[members[0]]["OriginCustomHeaders"]
    assert origins[members[1]]["CustomOriginConfig"] == origins[members[0]]["CustomOriginConfig"]


def rule_holds(stack: Stack, rule: dict) -> bool:
    if "RuleCondition" in rule and not stack.truth(rule["RuleCondition"]):
        return True
    return all(stack.truth(a["Assert"]) for a in rule["Assertions"])


@pytest.mark.parametrize(
    "direct,enable,accepted",
    [("allow", "false", True), ("allow", "true", True), ("refuse", "true", True), ("refuse", "false", False)],
)
def test_refusing_direct_access_needs_cloudfront(
    template: dict, direct: str, enable: str, accepted: bool
) -> None:
    param = template["Parameters"]["DirectAccess"]
    assert param["AllowedValues"] == ["allow", "refuse"]
    assert param["Default"] == "allow"
    stack = Stack(template, "us-west-2", {"DirectAccess": direct, "EnableCloudFront": enable})
    rule = template["Rules"]["RefusingDirectAccessNeedsCloudFront"]
    assert rule_holds(stack, rule) == accepted


@pytest.mark.parametrize(
    "kind,countries,restriction",
    [
        ("none", "", {"RestrictionType": "none"}),
        ("allow", "DE,FR", {"RestrictionType": "whitelist", "Locations": "DE,FR"}),
        ("deny", "RU", {"RestrictionType": "blacklist", "Locations": "RU"}),
    ],
)
def test_platform_geo_restriction_reaches_the_distribution(
    template: dict, kind: str, countries: str, restriction: dict
) -> None:
    param = template["Parameters"]["GeoRestrictionType"]
    assert param["AllowedValues"] == ["none", "allow", "deny"]
    assert param["Default"] == "none"
    params = {
        "EnableCloudFront": "true",
        "GeoRestrictionType": kind,
        "GeoRestrictionCountries": countries,
    }
    stack = Stack(template, "us-west-2", params)
    dist = stack.eval(template["Resources"]["EdgeDistribution"]["Properties"])
    # The evaluator reads a CommaDelimitedList as its text; CloudFormation splits it.
    assert dist["DistributionConfig"]["Restrictions"]["GeoRestriction"] == restriction
    rule = template["Rules"]["GeoRestrictionNeedsCloudFrontAndCountries"]
    applies = stack.truth(rule["RuleCondition"])
    assert applies == (kind != "none")
    # Without the distribution a restriction has nowhere to go: the rule refuses it.
    alone = Stack(template, "us-west-2", {**params, "EnableCloudFront": "false"})
    needs_cloudfront = rule["Assertions"][0]["Assert"]
    assert alone.truth(needs_cloudfront) is False
    assert stack.truth(needs_cloudfront) is True


def test_direct_callers_reach_health_and_notify(template: dict) -> None:
    """With DirectAccess=refuse the origin still answers Route 53's health check and the
    replicator's notifications, which call the regional name without CloudFront."""
    text = FORWARDED_RS.read_text()
    m = re.search(r"DIRECT_PATHS: \[&str; \d+\] = \[([^\]]*)\]", text)
    assert m, "DIRECT_PATHS not found"
    direct = re.findall(r'"([^"]+)"', m.group(1))
    stack = Stack(template, "us-west-2", {"DomainName": "o.example"})
    probed = stack.eval(template["Resources"]["HealthCheck"]["Properties"]["HealthCheckConfig"])
    assert probed["ResourcePath"] in direct
    assert "/_skyhost/notify" in direct
    assert sorted(direct) == ["/_skyhost/health", "/_skyhost/notify"]


# ------------------------------------------------------------- Route 53, stack by stack


def routing(props: dict) -> str:
    """A record set's routing policy, as Route 53 tells them apart."""
    for key, policy in (
        ("Region", "latency"),
        ("Weight", "weighted"),
        ("Failover", "failover"),
        ("GeoLocation", "geolocation"),
        ("MultiValueAnswer", "multivalue"),
    ):
        if key in props:
            return policy
    return "simple"


class Route53:
    """The record sets of one hosted zone, changed stack update by stack update as
    CloudFormation does: new and changed records first, removed ones at cleanup. Route 53
    refuses a record set beside one of the same name and type with another routing
    policy, and two of the same name, type and set identifier."""

    def __init__(self, template: dict) -> None:
        self.template = template
        # (region, logical id) -> (name, type, set identifier, routing)
        self.records: dict[tuple[str, str], tuple[str, str, str, str]] = {}

    def desired(self, region: str, params: dict[str, str]) -> dict[str, tuple[str, str, str, str]]:
        stack = Stack(self.template, region, params)
        out = {}
        for name, res in self.template["Resources"].items():
            if res["Type"] != "AWS::Route53::RecordSet" or not stack.exists(name):
                continue
            props = stack.eval(res["Properties"])
            out[name] = (props["Name"], props["Type"], props.get("SetIdentifier", ""), routing(props))
        return out

    def check(self, new: tuple[str, str, str, str], replacing: tuple[str, str] | None) -> None:
        name, rtype, ident, policy = new
        for key, (n, t, i, p) in self.records.items():
            if key == replacing or (n, t) != (name, rtype):
                continue
            assert p == policy, f"{name} {rtype}: a {policy} record beside a {p} one ({key})"
            assert i != ident, f"{name} {rtype} {ident!r} exists twice ({key})"

    def deploy(self, region: str, params: dict[str, str]) -> None:
        want = self.desired(region, params)
        for logical, record in want.items():
            key = (region, logical)
            old = self.records.get(key)
            if old == record:
                continue
            # Same name, type and identifier: updated in place (an UPSERT); otherwise a
            # replacement, created before the old one is deleted.
            in_place = old is not None and old[:3] == record[:3]
            self.check(record, key if in_place else None)
            if in_place:
                self.records[key] = record
            else:
                self.records[(region, logical + "#new")] = record
        for key in [k for k in self.records if k[0] == region]:
            logical = key[1].removesuffix("#new")
            if logical not in want or (key[1] == logical and (region, logical + "#new") in self.records):
                del self.records[key]
        for key in [k for k in self.records if k[0] == region and k[1].endswith("#new")]:
            self.records[(region, key[1].removesuffix("#new"))] = self.records.pop(key)


def test_route53_records_survive_every_stack_order(template: dict) -> None:
    base = {
        "PrimaryRegion": "us-west-2",
        "ReplicaRegions": "eu-central-1,ap-southeast-1",
        "DomainName": "o.example",
        "SitesDomainName": "sites.example",
        "HostedZoneId": "Z123",
        "EnableCloudFront": "false",
    }
    cloudfront = {
        "EnableCloudFront": "true",
        "CloudFrontCertificateArn": "arn:aws:acm:us-east-1:111122223333:certificate/x",
        "CloudFrontAliases": "*.sites.example",
    }
    zone = Route53(template)
    regions = ["us-west-2", "eu-central-1", "ap-southeast-1"]
    steps: list[tuple[str, list[str], dict[str, str]]] = [
        ("create", regions, base),
        ("CloudFront on", regions, {**base, **cloudfront}),
        ("CloudFront off", regions, base),
        (
            "a region added",
            ["us-west-2", "us-east-1", "eu-central-1", "ap-southeast-1"],
            {**base, "ReplicaRegions": "eu-central-1,ap-southeast-1,us-east-1"},
        ),
        (
            "CloudFront on with four regions",
            ["us-west-2", "eu-central-1", "ap-southeast-1", "us-east-1"],
            {**base, **cloudfront, "ReplicaRegions": "eu-central-1,ap-southeast-1,us-east-1"},
        ),
    ]
    for what, order, params in steps:
        for region in order:
            try:
                zone.deploy(region, params)
            except AssertionError as e:
                raise AssertionError(f"{what}, stack {region}: {e}") from e
    # The end state: the wildcard reaches the distribution through one latency record.
    wildcard = [r for r in zone.records.values() if r[0] == "*.sites.example" and r[1] == "A"]
    assert wildcard == [("*.sites.example", "A", "us-west-2", "latency")]


def test_route53_replay_catches_mixed_routing(template: dict) -> None:
    """The replay refuses what Route 53 refuses: a simple record beside latency ones."""
    zone = Route53(template)
    zone.records[("eu-central-1", "SitesLatencyRecord")] = ("*.s.example", "A", "eu-central-1", "latency")
    with pytest.raises(AssertionError, match="a simple record beside a latency one"):
        zone.check(("*.s.example", "A", "", "simple"), None)
    with pytest.raises(AssertionError, match="exists twice"):
        zone.check(("*.s.example", "A", "eu-central-1", "latency"), None)


# ---------------------------------------------------------------------------- fixtures


def test_s3_fixture_keys_decode_to_the_documented_keys() -> None:
    records = json.loads((EVENTS / "s3-put-skyhost.json").read_text())["Records"]
    expected = json.loads((EVENTS / "s3-put-skyhost.expected.json").read_text())
    assert len(records) == len(expected)
    for rec, exp in zip(records, expected):
        event_key = rec["s3"]["object"]["key"]
        assert event_key == exp["event_key"]
        assert urllib.parse.unquote_plus(event_key) == exp["key"]
    assert any("+" in e["event_key"] for e in expected)
    assert any("%2B" in e["event_key"] for e in expected)
    wrapped = json.loads((EVENTS / "sqs-s3-put-skyhost.json").read_text())["Records"]
    assert json.loads(wrapped[0]["body"])["Records"] == records


@pytest.mark.parametrize("name", ["http-api-notify.json", "rest-api-notify.json"])
def test_notify_fixture_is_signed_with_the_documented_secret(name: str) -> None:
    event = json.loads((EVENTS / name).read_text())
    header = event["headers"]["x-skyhost-signature"]
    fields = dict(part.split("=", 1) for part in header.split(","))
    raw = base64.b64decode(event["body"]) if event["isBase64Encoded"] else event["body"].encode()
    mac = hmac.new(b"skyhost-fixture-secret", fields["t"].encode() + b"." + raw, hashlib.sha256)
    assert hmac.compare_digest(mac.hexdigest(), fields["v1"])
    body = json.loads(raw)
    assert body["record"]["revision"] == body["revision"]
    assert int(event["headers"]["content-length"]) == len(raw)


# ---------------------------------------------------------------------------- self-healing


def test_copier_checks_activations_on_the_stream_and_sweeps_on_schedules(template: dict) -> None:
    res = template["Resources"]
    events = res["AssetCopierFunction"]["Properties"]["Events"]
    [stream] = [e["Properties"] for e in events.values() if e["Type"] == "DynamoDB"]
    assert stream["Stream"] == {"Fn::GetAtt": ["SitesTable", "StreamArn"]}
    assert stream["BisectBatchOnFunctionError"] is True
    assert 0 <= stream["MaximumRetryAttempts"] <= 100
    assert stream["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["AssetCopierDeadLetterQueue", "Arn"]
    }
    # The filter keeps every site record as it is after the change (activations among them).
    patterns = [json.loads(f["Pattern"]) for f in stream["FilterCriteria"]["Filters"]]
    batch = json.loads((EVENTS / "dynamodb-stream-mixed.json").read_text())["Records"]
    kept = [r for r in batch if any(pattern_matches(p, r) for p in patterns)]
    with_new_site = [
        r for r in batch if r["dynamodb"].get("NewImage", {}).get("kind", {}).get("S") == "site"
    ]
    assert kept == with_new_site and kept

    schedules = {
        json.loads(e["Properties"]["Input"])["sweep"]: e["Properties"]["Schedule"]
        for e in events.values()
        if e["Type"] == "Schedule"
    }
    assert schedules == {
        "changed": {"Ref": "SweepSchedule"},
        "full": {"Ref": "FullSweepSchedule"},
    }
    params = template["Parameters"]
    assert params["SweepSchedule"]["Default"] == "rate(1 hour)"
    assert params["FullSweepSchedule"]["Default"] == "rate(1 day)"
    for p in ("SweepSchedule", "FullSweepSchedule"):
        allowed = re.compile(params[p]["AllowedPattern"])
        assert allowed.match(params[p]["Default"])
        assert allowed.match("cron(0 * * * ? *)")
        assert not allowed.match("every hour")

    # The alarm watches the streak the sweep emits (crates/asset-copier/src/sweep.rs).
    alarm = res["SweepRepairStreakAlarm"]["Properties"]
    sweep_src = (ROOT / "crates/asset-copier/src/sweep.rs").read_text()
    assert f'name: "{alarm["MetricName"]}"' in sweep_src
    [dim] = alarm["Dimensions"]
    assert f'("{dim["Name"]}", "{dim["Value"]}")' in sweep_src
    assert alarm["Namespace"] == "Skyhost"
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (2, "GreaterThanOrEqualToThreshold")
    assert alarm["TreatMissingData"] == "ignore"

    # The sweep keeps its state where the role lets it write, outside the copied prefix.
    state = re.search(r'STATE_KEY: &str = "([^"]+)"', sweep_src).group(1)
    statement = next(
        s
        for s in res["AssetCopierRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        if s.get("Sid") == "SweepState"
    )
    assert statement["Resource"]["Fn::Sub"].endswith("/" + state.split("/")[0] + "/*")
    assert not state.startswith("sites/")


# ---------------------------------------------------------------------------- delivery queues

QUEUE_SLOTS = ["Primary", "Replica0", "Replica1", "Replica2", "Replica3"]


def queue_slots(stack: Stack) -> list[str]:
    return [s for s in QUEUE_SLOTS if stack.exists(f"DeliveryQueue{s}")]


@pytest.mark.parametrize("replicas", [case[0] for case in PAIR_CASES])
def test_every_region_has_its_delivery_queue_retried_by_the_replicator(
    template: dict, replicas: str
) -> None:
    params = {"PrimaryRegion": "us-west-2", "ReplicaRegions": replicas, "DomainName": "o.example"}
    primary = Stack(template, "us-west-2", params)
    regions = ["us-west-2"] + split_list(replicas)
    slots = queue_slots(primary)
    assert len(slots) == len(regions)
    # The replicator learns each region's queue, for exactly the regions it notifies.
    env = primary.env("ReplicatorFunction")
    queues = pairs(env["SKYHOST_REGION_QUEUES"])
    assert list(queues) == list(pairs(env["SKYHOST_REGION_ENDPOINTS"])) == regions
    assert list(queues.values()) == [f"<DeliveryQueue{s}>" for s in slots]
    timeout = function_setting(template, "ReplicatorFunction", "Timeout")
    resources = template["Resources"]
    for slot in slots:
        for kind in ("DeliveryDeadLetterQueue", "DeliveryRetries", "DeliveryDeadLetterDepthAlarm"):
            assert primary.exists(f"{kind}{slot}"), f"{kind}{slot}"
        queue = primary.eval(resources[f"DeliveryQueue{slot}"]["Properties"])
        assert queue["VisibilityTimeout"] >= 6 * timeout
        assert queue["RedrivePolicy"]["deadLetterTargetArn"] == f"<DeliveryDeadLetterQueue{slot}.Arn>"
        assert queue["RedrivePolicy"]["maxReceiveCount"] >= 100
        assert queue["MessageRetentionPeriod"] == 1209600
        dlq = resources[f"DeliveryDeadLetterQueue{slot}"]
        assert dlq["DeletionPolicy"] == "Retain"
        mapping = primary.eval(resources[f"DeliveryRetries{slot}"]["Properties"])
        assert mapping["FunctionName"] == "<ReplicatorFunction>"
        assert mapping["EventSourceArn"] == f"<DeliveryQueue{slot}.Arn>"
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        alarm = primary.eval(resources[f"DeliveryDeadLetterDepthAlarm{slot}"]["Properties"])
        assert alarm["Namespace"] == "AWS/SQS"
        assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert alarm["Dimensions"] == [
            {"Name": "QueueName", "Value": f"<DeliveryDeadLetterQueue{slot}.QueueName>"}
        ]
        assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"
    # Replica stacks run no replicator and hold no queue.
    for region in split_list(replicas):
        assert queue_slots(Stack(template, region, params)) == []


@pytest.mark.parametrize("replicas", [case[0] for case in PAIR_CASES])
def test_replicator_may_use_exactly_its_region_queues(template: dict, replicas: str) -> None:
    params = {"PrimaryRegion": "us-west-2", "ReplicaRegions": replicas, "DomainName": "o.example"}
    primary = Stack(template, "us-west-2", params)
    arns = [f"<DeliveryQueue{s}.Arn>" for s in queue_slots(primary)]
    send = primary.statement("ReplicatorRole", "QueueRegionNotifications")
    assert send["Effect"] == "Allow"
    assert sorted(send["Action"]) == ["sqs:ChangeMessageVisibility", "sqs:SendMessage"]
    assert send["Resource"] == arns
    receive = primary.statement("ReplicatorRole", "ReceiveRegionQueues")
    assert sorted(receive["Action"]) == [
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
    ]
    assert receive["Resource"] == arns
    # No other statement grants SQS actions on the region queues.
    [doc] = template["Resources"]["ReplicatorRole"]["Properties"]["Policies"]
    for stmt in doc["PolicyDocument"]["Statement"]:
        if stmt.get("Sid") in ("QueueRegionNotifications", "ReceiveRegionQueues"):
            continue
        resource = primary.eval(stmt["Resource"])
        listed = resource if isinstance(resource, list) else [resource]
        assert not set(listed) & set(arns), stmt["Sid"]


def test_event_source_mappings_are_decoded_by_their_function(
    template: dict, contract: Contract
) -> None:
    kinds = {"AWS::SQS::Queue": "SQS"}
    mappings = {
        name: res
        for name, res in template["Resources"].items()
        if res["Type"] == "AWS::Lambda::EventSourceMapping"
    }
    assert mappings, "no event source mapping"
    for name, res in mappings.items():
        function = res["Properties"]["FunctionName"]["Ref"]
        [source, _] = res["Properties"]["EventSourceArn"]["Fn::GetAtt"]
        kind = kinds[template["Resources"][source]["Type"]]
        assert kind in split_list(contract.functions[function]["events"]), name
        code = "\n".join(p.read_text() for p in rust_sources(contract.crate_of(function)))
        assert DECODERS[kind].search(code), f"{name}: {function} never decodes {kind} events"


# ---------------------------------------------------------------------------- custom domains

DOMAINS_AWS_RS = ROOT / "crates" / "domains" / "src" / "aws.rs"
# Each AWS call of the domains adapter, and the IAM action it needs.
DOMAINS_CALLS = {
    "list_certificates": "acm:ListCertificates",
    "request_certificate": "acm:RequestCertificate",
    "describe_certificate": "acm:DescribeCertificate",
    "delete_certificate": "acm:DeleteCertificate",
    "get_rest_apis": "apigateway:GET",
    "get_domain_name": "apigateway:GET",
    "get_base_path_mappings": "apigateway:GET",
    "create_domain_name": "apigateway:POST",
    "create_base_path_mapping": "apigateway:POST",
    "delete_domain_name": "apigateway:DELETE",
    "list_distributions": "cloudfront:ListDistributions",
    "get_distribution": "cloudfront:GetDistribution",
    "get_distribution_config": "cloudfront:GetDistributionConfig",
    "create_distribution": "cloudfront:CreateDistribution",
    "update_distribution": "cloudfront:UpdateDistribution",
    "delete_distribution": "cloudfront:DeleteDistribution",
    "list_hosted_zones": "route53:ListHostedZones",
    "list_resource_record_sets": "route53:ListResourceRecordSets",
    "change_resource_record_sets": "route53:ChangeResourceRecordSets",
}
SDK_CALL = re.compile(r"\.\s*((?:list|get|create|update|delete|request|describe|change)_[a-z0-9_]+)\(\)")


def test_domains_function_may_make_exactly_its_calls(template: dict) -> None:
    """The domains role grants exactly the actions of the SDK calls in crates/domains/src/aws.rs
    (beyond its logs and its records in the sites table), and the table above names every
    call the code makes, so a new call without its grant fails here."""
    calls = set(SDK_CALL.findall(DOMAINS_AWS_RS.read_text()))
    assert calls == set(DOMAINS_CALLS), "calls of aws.rs without their IAM action above (or gone)"
    needed = set(DOMAINS_CALLS.values())
    [doc] = template["Resources"]["DomainsRole"]["Properties"]["Policies"]
    granted: set[str] = set()
    for stmt in doc["PolicyDocument"]["Statement"]:
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        if stmt["Sid"] == "Logs":
            assert actions == ["logs:CreateLogStream", "logs:PutLogEvents"]
            continue
        if stmt["Sid"] == "DomainRecords":
            assert sorted(actions) == [
                "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Scan"
            ]
            assert stmt["Resource"] == {"Fn::GetAtt": ["SitesTable", "Arn"]}
            continue
        granted |= set(actions)
        # Only listing and requesting (which name no resource) are granted on "*".
        if stmt["Resource"] == "*":
            assert set(actions) <= {
                "acm:ListCertificates", "acm:RequestCertificate",
                "cloudfront:ListDistributions", "route53:ListHostedZones",
            }, stmt["Sid"]
    assert granted == needed


@pytest.mark.parametrize("enable", ["true", "false"])
def test_domains_function_runs_in_the_primary_on_a_schedule(template: dict, enable: str) -> None:
    params = {"ReplicaRegions": "eu-central-1,ap-southeast-1", "EnableCloudFront": enable}
    for region in ("us-west-2", "eu-central-1"):
        stack = Stack(template, region, params)
        assert stack.exists("DomainsFunction") == (region == "us-west-2")
    stack = Stack(template, "us-west-2", params)
    env = stack.env("DomainsFunction")
    assert env["SKYHOST_REGIONS"].split(",") == ["us-west-2", "eu-central-1", "ap-southeast-1"]
    # The API every region's stack creates, by the name the function looks for.
    api = stack.eval(template["Resources"]["OriginApi"]["Properties"])
    assert env["SKYHOST_API_NAME"] == api["Name"]
    assert env["SKYHOST_API_STAGE"] == api["StageName"]
    assert ("SKYHOST_DISTRIBUTION_ID" in env) == (enable == "true")
    [event] = template["Resources"]["DomainsFunction"]["Properties"]["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == {"Ref": "DomainsSchedule"}
