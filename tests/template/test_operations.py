"""The operator's alarms and dashboards of template.yaml against what the code writes.

Every metric an alarm or a dashboard reads in the `Skyhost` namespace must be one the
code emits: the metric name, the namespace and the exact set of dimensions, read from the
Rust sources (every `Metrics::emit` call: skyhost_meta::metrics is the one EMF writer),
never from a list kept here. Metrics of AWS namespaces must name resources of this template
(the origin API and its stage, the template's queues). And the alarms the operator needs
are there: the region's health check failing, its 5xx rate, fail-safe answers,
replication lag over the budget, and messages in every failure queue, each sent to the
AlarmTopicArn topic; a dashboard in every region.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
from cfnlint.decode import decode_str

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
CRATES = ROOT / "crates"

Metric = tuple[str, str, frozenset[str]]


def load_template() -> dict:
    template, problems = decode_str(TEMPLATE.read_text())
    assert not problems, problems
    return template


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


def sources() -> Iterator[tuple[Path, str]]:
    """Every crate's library source, without its test module."""
    for path in sorted(CRATES.glob("*/src/**/*.rs")):
        text = path.read_text()
        cut = re.search(r"#\[cfg\(test\)\]\s*mod tests", text)
        yield path, text[: cut.start()] if cut else text


def string_consts() -> dict[str, str]:
    """`const NAME: &str = "value";` across the crates."""
    consts: dict[str, str] = {}
    for _, text in sources():
        for name, value in re.findall(r'const\s+([A-Z_][A-Z0-9_]*)\s*:\s*&str\s*=\s*"([^"]*)"', text):
            consts[name] = value
    return consts


def balanced(text: str, start: int) -> str:
    """The text of the parenthesis opened at `start`, without the outer pair."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    raise AssertionError(f"unbalanced call at {start}")


def split_top(args: str) -> list[str]:
    """Arguments at the top level of a call's argument list."""
    parts, depth, cur = [], 0, ""
    for c in args:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += c
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def value_of(token: str, consts: dict[str, str]) -> str:
    token = token.strip()
    if token.startswith('"'):
        return token.strip('"')
    name = token.split("::")[-1]
    assert name in consts, f"{token} is neither a string literal nor a known constant"
    return consts[name]


def written_metrics() -> set[Metric]:
    """(namespace, metric, dimensions) of every EMF record the code writes."""
    consts = string_consts()
    namespace = consts["NAMESPACE"]
    found: set[Metric] = set()
    for path, text in sources():
        # Metrics::emit(dims, values): dims are (name, value) pairs, values Metric structs.
        for m in re.finditer(r"\.emit\(", text):
            args = split_top(balanced(text, m.end() - 1))
            if len(args) != 2:
                continue
            dims = frozenset(
                value_of(d, consts) for d in re.findall(r'\(\s*("[^"]*"|[A-Za-z_:]+)\s*,', args[0])
            )
            values = args[1]
            var = re.fullmatch(r"&\s*([a-z_][a-z0-9_]*)", values)
            if var:
                # A list built before the call: from its `let` to the call.
                lets = list(re.finditer(rf"let\s+(mut\s+)?{var.group(1)}\b", text[: m.start()]))
                assert lets, f"{path}: cannot find how {values} is built"
                values = text[lets[-1].start() : m.start()]
            names = re.findall(r'name:\s*("[^"]*"|[A-Za-z_:]+)', values)
            assert names, f"{path}: an emit call whose metric names cannot be read: {args[1][:80]}"
            for n in names:
                found.add((namespace, value_of(n, consts), dims))
    return found


@pytest.fixture(scope="module")
def written() -> set[Metric]:
    return written_metrics()


def test_the_reader_finds_what_the_code_is_known_to_write(written: set[Metric]) -> None:
    """The parser itself: metrics written in each of the ways the code writes them."""
    for name, dims in [
        ("Hit", {"Region"}),
        ("Fallback", {"Region"}),
        ("Latency", {"Region"}),
        ("ServerErrors", {"Region"}),
        ("HealthCheckFailed", {"Region"}),
        ("NotificationLatency", {"Region"}),
        ("CopyFailures", {"Region"}),
        ("SweepRepairStreak", {"Sweep"}),
    ]:
        assert ("Skyhost", name, frozenset(dims)) in written, name
    # A dimension set the code never writes is not taken for one it does.
    assert ("Skyhost", "Hit", frozenset({"Region", "Site"})) not in written


def alarms(template: dict) -> dict[str, dict]:
    return {
        k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"
    }


def alarm_metrics(props: dict) -> list[dict]:
    """The metrics an alarm reads: its own, or those of its metric math."""
    if "MetricName" in props:
        return [props]
    return [q["MetricStat"]["Metric"] for q in props.get("Metrics", []) if "MetricStat" in q]


def dims_of(metric: dict) -> frozenset[str]:
    return frozenset(d["Name"] for d in metric.get("Dimensions", []))


def resources_of(template: dict, kind: str) -> set[str]:
    return {k for k, v in template["Resources"].items() if v["Type"] == kind}


def check_aws_metric(template: dict, where: str, namespace: str, dims: dict[str, Any]) -> None:
    """A metric of an AWS namespace names this template's resources."""
    api = template["Resources"]["OriginApi"]["Properties"]
    if namespace == "AWS/ApiGateway":
        assert dims.get("ApiName") in (api["Name"], api["Name"]["Fn::Sub"]), f"{where}: {dims}"
        assert dims.get("Stage") == api["StageName"], f"{where}: {dims}"
    elif namespace == "AWS/SQS":
        queue = dims["QueueName"]
        assert set(queue) == {"Fn::GetAtt"}, f"{where}: {queue}"
        ref = queue["Fn::GetAtt"]
        name = ref[0] if isinstance(ref, list) else ref.split(".")[0]
        assert name in resources_of(template, "AWS::SQS::Queue"), f"{where}: {name}"
    else:
        raise AssertionError(f"{where}: unchecked namespace {namespace}")


def test_every_alarm_reads_a_metric_the_code_writes(template: dict, written: set[Metric]) -> None:
    assert alarms(template)
    for name, alarm in alarms(template).items():
        for metric in alarm_metrics(alarm["Properties"]):
            ns = metric["Namespace"]
            if ns.startswith("AWS/"):
                dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
                check_aws_metric(template, name, ns, dims)
                continue
            key = (ns, metric["MetricName"], dims_of(metric))
            assert key in written, f"{name} reads {key}, which no code writes"


def test_every_alarm_tells_the_topic(template: dict) -> None:
    for name, alarm in alarms(template).items():
        props = alarm["Properties"]
        for field in ("AlarmActions", "OKActions"):
            assert props.get(field) == {
                "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
            }, f"{name}.{field}"


def alarms_on(template: dict, metric_name: str) -> dict[str, dict]:
    return {
        k: v
        for k, v in alarms(template).items()
        if any(m["MetricName"] == metric_name for m in alarm_metrics(v["Properties"]))
    }


def test_the_operator_is_told_of_every_kind_of_trouble(template: dict) -> None:
    # In every region (no condition): its own health check, 5xx rate, fail-safe answers.
    for metric in ["HealthCheckFailed", "5XXError", "Fallback"]:
        found = alarms_on(template, metric)
        assert any("Condition" not in a for a in found.values()), f"no alarm on {metric} in every region"
    health = alarms_on(template, "HealthCheckFailed")
    assert all(
        a["Properties"]["TreatMissingData"] == "breaching" for a in health.values()
    ), "a region whose origin gets no health checks at all is down"
    # Replication lag over the budget, for the primary and every replica slot.
    lag = alarms_on(template, "NotificationLatency")
    conditions = {a.get("Condition") for a in lag.values()}
    assert conditions == {"IsPrimary"} | {f"DeliverToReplica{i}" for i in range(4)}, conditions
    for name, a in lag.items():
        assert a["Properties"]["Threshold"] == {"Ref": "ReplicationLagBudgetMs"}, name
        assert a["Properties"]["Dimensions"][0]["Name"] == "Region", name
    # Messages in any failure queue: every queue that is some queue's or mapping's
    # failure destination has an alarm on its depth.
    text = json.dumps(template["Resources"])
    failure_queues = {
        q
        for q in resources_of(template, "AWS::SQS::Queue")
        if re.search(rf'"(deadLetterTargetArn|Destination)": \{{"Fn::GetAtt": \["{q}", "Arn"\]', text)
        or re.search(rf'"(deadLetterTargetArn|Destination)": \{{"Fn::GetAtt": "{q}.Arn"', text)
    }
    assert len(failure_queues) >= 3, failure_queues
    watched = set()
    for a in alarms_on(template, "ApproximateNumberOfMessagesVisible").values():
        for m in alarm_metrics(a["Properties"]):
            ref = m["Dimensions"][0]["Value"]["Fn::GetAtt"]
            watched.add(ref[0] if isinstance(ref, list) else ref.split(".")[0])
    assert failure_queues <= watched, f"failure queues without an alarm: {failure_queues - watched}"


def dashboard_metrics(template: dict, region: str, primary: str) -> list[tuple[str, list]]:
    """(widget region, metric array) of every dashboard, its body resolved for `region`."""
    out = []
    for name in resources_of(template, "AWS::CloudWatch::Dashboard"):
        body = template["Resources"][name]["Properties"]["DashboardBody"]["Fn::Sub"]
        for k, v in {
            "AWS::Region": region,
            "AWS::StackName": "skyhost",
            "PrimaryRegion": primary,
            "ReplicationLagBudgetMs": "1000",
        }.items():
            body = body.replace("${" + k + "}", v)
        assert "${" not in body, f"{name}: an unresolved substitution"
        for widget in json.loads(body)["widgets"]:
            props = widget["properties"]
            for m in props.get("metrics", []):
                out.append((props["region"], m))
    return out


def test_a_dashboard_per_region_reads_what_the_code_writes(template: dict, written: set[Metric]) -> None:
    boards = resources_of(template, "AWS::CloudWatch::Dashboard")
    assert boards and all("Condition" not in template["Resources"][b] for b in boards)
    name = template["Resources"][sorted(boards)[0]]["Properties"]["DashboardName"]
    assert "${AWS::Region}" in name["Fn::Sub"], "dashboard names are account-wide"
    metrics = dashboard_metrics(template, "eu-central-1", "us-west-2")
    seen = set()
    for region, m in metrics:
        plain = [x for x in m if not isinstance(x, dict)]
        assert "..." not in plain and "." not in plain, f"write every metric out: {m}"
        ns, metric, pairs = plain[0], plain[1], plain[2:]
        dims = dict(zip(pairs[::2], pairs[1::2]))
        seen.add(metric)
        if ns.startswith("AWS/"):
            check_aws_metric(
                template,
                "dashboard",
                ns,
                {k: ("${AWS::StackName}-origin" if v == "skyhost-origin" else v) for k, v in dims.items()},
            )
            continue
        assert (ns, metric, frozenset(dims)) in written, f"the dashboard reads {m}, which no code writes"
        # Replication metrics are written where the replicator and copier run.
        if metric in {"NotificationLatency", "NotificationFailures", "Copies", "CopyFailures"}:
            assert region == "us-west-2", f"{metric} is read from {region}, not the primary"
            assert dims == {"Region": "eu-central-1"}
        else:
            assert region == "eu-central-1", f"{metric} is read from {region}"
    for wanted in ["Latency", "Hit", "Miss", "Fallback", "ServerErrors", "NotificationLatency", "CopyFailures"]:
        assert wanted in seen, f"the dashboard lacks {wanted}"
