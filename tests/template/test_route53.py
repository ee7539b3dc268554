"""The Route 53 records of template.yaml survive every change the regions' stacks go through.

Each scenario replays the per-region stack deploys (the primary, then the replicas, or the
other way round) for CloudFront off -> on -> off, a region added and removed, the sites
wildcard set and unset, and the upgrade from the earlier record arrangement. Each stack is
resolved from the template's conditions for its region and parameters, and its changes are
applied to a model of the hosted zone:

- as CloudFormation applies them: per stack, new resources are created and changed ones
  updated in dependency order (every order it may pick among independent records is
  tried), a record whose Name, Type, SetIdentifier or zone changes is replaced (the new
  one created, the old one deleted with the cleanup), and removed resources are deleted
  last, in reverse dependency order;
- under Route 53's rules: the record sets of one name and type share one routing type;
  a simple record stands alone; the others have distinct set identifiers, and a latency
  group has one record per region; an alias to a name of the zone needs that name to
  have records of the same type.

After every single change, every record resolves (alias chains end at resources that
exist), and the public names that exist before and after a rollout keep resolving
throughout it.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pytest
from cfnlint.decode import decode_str

from test_template import Stack, load_template

ZONE = "Z0EXAMPLE0000000000000"
# The hosted zone of every CloudFront distribution.
CLOUDFRONT_ZONE = "Z2FDTNDATAQYW2"
RECORD_SET = "AWS::Route53::RecordSet"
ROUTING = {
    "Region": "latency",
    "Weight": "weighted",
    "Failover": "failover",
    "GeoLocation": "geolocation",
    "CidrRoutingConfig": "cidr",
    "MultiValueAnswer": "multivalue",
}

P, R1, R2, R3 = "us-west-2", "eu-central-1", "ap-southeast-1", "us-east-1"
BASE = {
    "PrimaryRegion": P,
    "ReplicaRegions": f"{R1},{R2}",
    "DomainName": "origin.skyhost.example",
    "SitesDomainName": "sites.skyhost.example",
    "HostedZoneId": ZONE,
    "EnableCloudFront": "false",
}
CLOUDFRONT_ON = {
    "EnableCloudFront": "true",
    "CloudFrontCertificateArn": "arn:aws:acm:us-east-1:111122223333:certificate/0-0",
    "CloudFrontAliases": "*.sites.skyhost.example,www.example.com",
}
CLOUDFRONT_OFF = {"EnableCloudFront": "false", "CloudFrontCertificateArn": "", "CloudFrontAliases": ""}


class Violation(AssertionError):
    """A change Route 53 or CloudFormation would refuse, or one that breaks resolution."""


def fqdn(name: str) -> str:
    return name.lower().rstrip(".")


# ---------------------------------------------------------------------------- the zone


@dataclass(frozen=True)
class Record:
    name: str
    type: str
    set_id: str | None
    routing: str
    region: str | None
    # (hosted zone, DNS name) of an alias record.
    alias: tuple[str, str] | None
    # The region of the stack that owns the record (for its alias targets).
    owner: str

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.name, self.type, self.set_id)

    def __str__(self) -> str:
        how = self.routing + (f" {self.set_id}" if self.set_id else "")
        return f"{self.name} {self.type} ({how}, {self.owner}'s stack)"


def record_of(props: dict, owner: str) -> Record:
    assert props["HostedZoneId"] == ZONE, f"{props['Name']}: outside the hosted zone"
    routing = [kind for prop, kind in ROUTING.items() if prop in props]
    assert len(routing) <= 1, f"{props['Name']}: several routing properties {routing}"
    alias = props.get("AliasTarget")
    if alias:
        # Names of the zone compare as DNS does; "<Resource.Attribute>" stays as it is.
        target = alias["DNSName"]
        alias = (alias["HostedZoneId"], target if target.startswith("<") else fqdn(target))
    return Record(
        name=fqdn(props["Name"]),
        type=props["Type"],
        set_id=props.get("SetIdentifier"),
        routing=routing[0] if routing else "simple",
        region=props.get("Region"),
        alias=alias or None,
        owner=owner,
    )


class Zone:
    """The record sets of one hosted zone, changed as Route 53 allows."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str, str | None], Record] = {}

    def copy(self) -> Zone:
        other = Zone()
        other.records = dict(self.records)
        return other

    def group(self, name: str, type_: str) -> list[Record]:
        return [r for r in self.records.values() if (r.name, r.type) == (name, type_)]

    def create(self, rec: Record) -> None:
        if rec.key in self.records:
            raise Violation(f"creating {rec}: {self.records[rec.key]} already exists")
        self._admit(rec, "creating")
        self.records[rec.key] = rec

    def update(self, old: Record, new: Record) -> None:
        assert old.key == new.key
        if self.records.get(old.key) != old:
            raise Violation(f"updating {old}: not in the zone")
        del self.records[old.key]
        try:
            self._admit(new, "updating")
        finally:
            self.records[old.key] = old
        self.records[new.key] = new

    def delete(self, rec: Record) -> None:
        if self.records.get(rec.key) != rec:
            raise Violation(f"deleting {rec}: not in the zone")
        del self.records[rec.key]

    def _admit(self, rec: Record, doing: str) -> None:
        peers = self.group(rec.name, rec.type)
        for peer in peers:
            if peer.routing != rec.routing:
                raise Violation(
                    f"{doing} {rec}: {peer} has the same name and type with another "
                    "routing policy"
                )
        if rec.routing == "simple":
            if rec.set_id is not None:
                raise Violation(f"{doing} {rec}: a simple record takes no SetIdentifier")
            if peers:
                raise Violation(f"{doing} {rec}: {peers[0]} already exists")
        else:
            if rec.set_id is None:
                raise Violation(f"{doing} {rec}: needs a SetIdentifier")
            if rec.routing == "latency":
                if not rec.region:
                    raise Violation(f"{doing} {rec}: a latency record needs a Region")
                same = [p for p in peers if p.region == rec.region]
                if same:
                    raise Violation(f"{doing} {rec}: {same[0]} is the latency record of {rec.region}")
        if rec.alias and rec.alias[0] == ZONE and not self.group(rec.alias[1], rec.type):
            raise Violation(f"{doing} {rec}: its alias target {rec.alias[1]} {rec.type} has no record")


# ---------------------------------------------------------------------------- stacks


def references(stack: Stack, node: Any) -> set[str]:
    """The resource names a template node refers to, in the branches its conditions take."""
    if isinstance(node, list):
        return set().union(*(references(stack, n) for n in node))
    if not isinstance(node, dict):
        return set()
    if len(node) == 1:
        (fn, arg), = node.items()
        if fn == "Ref":
            return {arg.split(".")[0]}
        if fn == "Fn::GetAtt":
            return {arg[0] if isinstance(arg, list) else arg.split(".")[0]}
        if fn == "Fn::Sub":
            text, names = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            used = {m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text)}
            return (used - set(names)) | references(stack, names)
        if fn == "Fn::If":
            return references(stack, arg[1] if stack.condition(arg[0]) else arg[2])
    return set().union(*(references(stack, v) for v in node.values()))


@dataclass
class Deployed:
    """One region's stack as CloudFormation last left it."""

    region: str
    template: dict
    params: dict[str, str]
    stack: Stack = field(init=False)
    # Every resource of the stack; records with the record they created.
    resources: dict[str, Record | None] = field(init=False)
    depends: dict[str, set[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.stack = Stack(self.template, self.region, self.params)
        res = self.template["Resources"]
        names = [n for n in res if self.stack.exists(n)]
        self.resources = {
            n: record_of(self.stack.eval(res[n]["Properties"]), self.region)
            if res[n]["Type"] == RECORD_SET
            else None
            for n in names
        }
        self.depends = {}
        for n in names:
            depends_on = res[n].get("DependsOn", [])
            refs = references(self.stack, res[n].get("Properties", {}))
            refs |= {depends_on} if isinstance(depends_on, str) else set(depends_on)
            self.depends[n] = {d for d in refs if d in self.resources and d != n}

    def closure(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = [name]
        while todo:
            for d in self.depends[todo.pop()]:
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    def type_of(self, name: str) -> str:
        return self.template["Resources"][name]["Type"]


def orders(items: list[str], before: Callable[[str, str], bool]) -> Iterator[list[str]]:
    """Every order of items in which a comes first whenever before(a, b)."""
    for perm in itertools.permutations(items):
        if all(not before(b, a) for i, a in enumerate(perm) for b in perm[i + 1 :]):
            yield list(perm)


class World:
    """The hosted zone and the stack of every region, changed one stack deploy at a time."""

    def __init__(self) -> None:
        self.zone = Zone()
        self.stacks: dict[str, Deployed] = {}
        # The resources that exist in each region: mid-update, the old ones and the new.
        self.live: dict[str, set[str]] = {}

    # -- resolution

    def target_exists(self, rec: Record) -> bool:
        assert rec.alias is not None
        m = re.fullmatch(r"<([A-Za-z0-9]+)\.[A-Za-z0-9.]+>", rec.alias[1])
        assert m, f"{rec}: alias target {rec.alias[1]} is neither in the zone nor a resource"
        return m.group(1) in self.live.get(rec.owner, set())

    def unresolved(self, zone: Zone, name: str, type_: str, seen: tuple = ()) -> str | None:
        """Why a query for name/type can fail (some answer Route 53 may give leads nowhere)."""
        if (name, type_) in seen:
            return f"alias loop through {name} {type_}"
        group = zone.group(name, type_)
        if not group:
            return f"{name} {type_} has no record"
        for rec in group:
            if rec.alias is None:
                continue
            if rec.alias[0] == ZONE:
                why = self.unresolved(zone, rec.alias[1], type_, seen + ((name, type_),))
                if why:
                    return f"{rec} -> {why}"
            elif not self.target_exists(rec):
                return f"{rec} aliases {rec.alias[1]}, which its stack does not have"
        return None

    def check(self, zone: Zone, public: set[tuple[str, str]], doing: str) -> None:
        groups = {(r.name, r.type) for r in zone.records.values()}
        for name, type_ in sorted(groups | public):
            why = self.unresolved(zone, name, type_)
            if why:
                raise Violation(f"after {doing}: {why}")

    # -- stack operations

    def deploy(self, region: str, template: dict, params: dict[str, str], public: set) -> None:
        """Create or update region's stack, as CloudFormation would."""
        old = self.stacks.get(region)
        new = Deployed(region, template, params)
        label = f"{'update' if old else 'create'} of {region}'s stack"
        before = old.resources if old else {}
        # resource -> (its record now, or None to create, and the record to write)
        writes: dict[str, tuple[Record | None, Record]] = {}
        cleanup: list[tuple[str, Record | None]] = []
        for name, rec in new.resources.items():
            if rec is None:
                continue
            was = before.get(name)
            if name not in before or old.type_of(name) != new.type_of(name):
                writes[name] = (None, rec)
                if was is not None:
                    cleanup.append((name, was))
            elif was.key != rec.key:
                # A new Name, Type or SetIdentifier is a new record set: replaced. (For the
                # last two CloudFormation may instead rewrite it in one batch; replacing
                # is the stricter reading, as the new record must coexist with the old.)
                writes[name] = (None, rec)
                cleanup.append((name, was))
            elif was != rec:
                writes[name] = (was, rec)
        cleanup += [(n, r) for n, r in before.items() if n not in new.resources]

        # Resources other than records only matter as alias targets, and a record depends
        # on its target: they may all exist from the start of the update.
        self.stacks[region] = new
        self.live[region] = set(before) | set(new.resources)
        final: Zone | None = None
        for order in orders(list(writes), lambda a, b: a in new.closure(b)):
            zone = self.zone.copy()
            for name in order:
                was, rec = writes[name]
                doing = f"{label}, {'updating' if was else 'creating'} {name}"
                try:
                    if was is None:
                        zone.create(rec)
                    else:
                        zone.update(was, rec)
                except Violation as e:
                    raise Violation(f"{doing} (in the order {', '.join(order)}): {e}") from None
                self.check(zone, public, doing)
            final = zone
        self.zone = final or self.zone
        self._cleanup(cleanup, old, public, label)
        self.live[region] = set(new.resources)
        self.check(self.zone, public, f"{label}, its cleanup")

    def _cleanup(
        self, items: list[tuple[str, Record | None]], old: Deployed | None, public: set, label: str
    ) -> None:
        """Delete the records of items in every reverse dependency order."""
        records = {f"{n}#{i}": (n, r) for i, (n, r) in enumerate(items) if r is not None}
        if not records:
            return
        assert old is not None
        final: Zone | None = None
        # A resource goes before the ones it depends on.
        def before(a: str, b: str) -> bool:
            return records[b][0] in old.closure(records[a][0])

        for order in orders(list(records), before):
            zone = self.zone.copy()
            for key in order:
                name, rec = records[key]
                doing = f"{label}, deleting {name} ({rec})"
                try:
                    zone.delete(rec)
                except Violation as e:
                    raise Violation(f"{doing}: {e}") from None
                self.check(zone, public, doing)
            final = zone
        assert final is not None
        self.zone = final

    def delete_stack(self, region: str, public: set) -> None:
        old = self.stacks.pop(region)
        label = f"deletion of {region}'s stack"
        self._cleanup(list(old.resources.items()), old, public, label)
        del self.live[region]
        self.check(self.zone, public, label)


# ---------------------------------------------------------------------------- scenarios


def public_names(params: dict[str, str]) -> set[tuple[str, str]]:
    """The names visitors and CloudFront look up."""
    names = {(fqdn(params["DomainName"]), "A")}
    if params.get("SitesDomainName"):
        names.add((fqdn(f"*.{params['SitesDomainName']}"), "A"))
    return names


@dataclass
class Rollout:
    """New parameters, deployed to the listed regions in order (creating missing stacks)."""

    regions: list[str]
    change: dict[str, str] = field(default_factory=dict)
    template: str = "current"

    def describe(self) -> str:
        shown = {k: v for k, v in self.change.items() if k != "CloudFrontCertificateArn"}
        change = "".join(f" {k}={v}" for k, v in shown.items())
        return f"{self.template} template{change} to {', '.join(self.regions)}"


@dataclass
class Delete:
    region: str

    def describe(self) -> str:
        return f"deleting {self.region}'s stack"


Step = Rollout | Delete


def replay(templates: dict[str, dict], steps: list[Step]) -> tuple[World, dict[str, str]]:
    """The world after steps, and the parameters of the last rollout."""
    world = World()
    params = dict(BASE)
    for i, step in enumerate(steps):
        before = params
        staying = set(world.stacks)
        if isinstance(step, Rollout):
            params = {**params, **step.change}
        else:
            staying.discard(step.region)
        # A name that resolves before the step and is still meant to exist after it keeps
        # resolving throughout: the public names, and the own names of staying regions.
        public = public_names(before) & public_names(params)
        public |= {(fqdn(f"{r}.{params['DomainName']}"), "A") for r in staying}
        public = {n for n in public if world.unresolved(world.zone, *n) is None}
        try:
            if isinstance(step, Delete):
                world.delete_stack(step.region, public)
            else:
                for region in step.regions:
                    world.deploy(region, templates[step.template], dict(params), public)
        except Violation as e:
            raise Violation(f"step {i + 1} ({step.describe()}): {e}") from None
    return world, params


# The records of *.SitesDomainName as earlier versions of template.yaml arranged them: a
# latency record per region to the API without CloudFront, a simple one to the
# distribution with it.
EARLIER_SITES = """
Conditions:
  RouteSitesToApi: !And [!Condition HasSitesDomain, !Not [!Condition UseCloudFront]]
  RouteSitesToCloudFront: !And [!Condition HasSitesDomain, !Condition CreateCloudFront]
Resources:
  SitesApiDomain:
    Type: AWS::ApiGateway::DomainName
    Condition: RouteSitesToApi
    Properties:
      DomainName: !Sub "*.${SitesDomainName}"
      RegionalCertificateArn: !Ref RegionalCertificateArn
      EndpointConfiguration:
        Types: [REGIONAL]
  SitesApiMapping:
    Type: AWS::ApiGateway::BasePathMapping
    Condition: RouteSitesToApi
    Properties:
      DomainName: !Ref SitesApiDomain
      RestApiId: !Ref OriginApi
      Stage: !Ref OriginApi.Stage
  SitesLatencyRecord:
    Type: AWS::Route53::RecordSet
    Condition: RouteSitesToApi
    Properties:
      HostedZoneId: !Ref HostedZoneId
      Name: !Sub "*.${SitesDomainName}"
      Type: A
      SetIdentifier: !Ref "AWS::Region"
      Region: !Ref "AWS::Region"
      HealthCheckId: !Ref HealthCheck
      AliasTarget:
        DNSName: !GetAtt SitesApiDomain.RegionalDomainName
        HostedZoneId: !GetAtt SitesApiDomain.RegionalHostedZoneId
        EvaluateTargetHealth: false
  SitesEdgeRecord:
    Type: AWS::Route53::RecordSet
    Condition: RouteSitesToCloudFront
    Properties:
      HostedZoneId: !Ref HostedZoneId
      Name: !Sub "*.${SitesDomainName}"
      Type: A
      AliasTarget:
        DNSName: !GetAtt EdgeDistribution.DomainName
        HostedZoneId: Z2FDTNDATAQYW2
        EvaluateTargetHealth: false
  SitesEdgeRecordIpv6:
    Type: AWS::Route53::RecordSet
    Condition: RouteSitesToCloudFront
    Properties:
      HostedZoneId: !Ref HostedZoneId
      Name: !Sub "*.${SitesDomainName}"
      Type: AAAA
      AliasTarget:
        DNSName: !GetAtt EdgeDistribution.DomainName
        HostedZoneId: Z2FDTNDATAQYW2
        EvaluateTargetHealth: false
"""


def earlier_template(current: dict) -> dict:
    """template.yaml with its *.SitesDomainName resources as they were before."""
    earlier, problems = decode_str(EARLIER_SITES)
    assert not problems and earlier is not None, [str(p) for p in problems]
    out = copy.deepcopy(current)
    routing = (RECORD_SET, "AWS::ApiGateway::DomainName", "AWS::ApiGateway::BasePathMapping")
    for name, res in list(out["Resources"].items()):
        if name.startswith("Sites") and res["Type"] in routing:
            del out["Resources"][name]
    out["Resources"].update(earlier["Resources"])
    out["Conditions"].update(earlier["Conditions"])
    return out


@pytest.fixture(scope="module")
def templates() -> dict[str, dict]:
    current = load_template()
    return {"current": current, "earlier": earlier_template(current)}


EVERY = [P, R1, R2]
REPLICAS_FIRST = [R1, R2, P]
WITH_R3 = {"ReplicaRegions": f"{R1},{R2},{R3}"}
WITHOUT_R3 = {"ReplicaRegions": f"{R1},{R2}"}

SCENARIOS: dict[str, list[Step]] = {
    "cloudfront on and off, primary first": [
        Rollout(EVERY),
        Rollout(EVERY, CLOUDFRONT_ON),
        Rollout(EVERY, CLOUDFRONT_OFF),
        Rollout(EVERY, CLOUDFRONT_ON),
    ],
    "cloudfront on and off, replicas first": [
        Rollout(EVERY),
        Rollout(REPLICAS_FIRST, CLOUDFRONT_ON),
        Rollout(REPLICAS_FIRST, CLOUDFRONT_OFF),
    ],
    "a region added and removed, cloudfront off": [
        Rollout(EVERY),
        Rollout(EVERY + [R3], WITH_R3),
        Rollout(EVERY, WITHOUT_R3),
        Delete(R3),
        Rollout(EVERY + [R3], WITH_R3),
        Delete(R3),
        Rollout(EVERY, WITHOUT_R3),
    ],
    "a region added and removed, cloudfront on": [
        Rollout(EVERY, CLOUDFRONT_ON),
        Rollout(EVERY + [R3], WITH_R3),
        Rollout(EVERY, CLOUDFRONT_OFF),
        Rollout(EVERY, CLOUDFRONT_ON),
        Rollout(EVERY, WITHOUT_R3),
        Delete(R3),
    ],
    "a region added with cloudfront on, then cloudfront off": [
        Rollout(EVERY),
        Rollout(EVERY, CLOUDFRONT_ON),
        Rollout([R3, P, R1, R2], WITH_R3),
        Rollout(EVERY + [R3], CLOUDFRONT_OFF),
    ],
    "the sites wildcard set and unset": [
        Rollout(EVERY, {"SitesDomainName": ""}),
        Rollout(EVERY, {"SitesDomainName": "sites.skyhost.example"}),
        Rollout(REPLICAS_FIRST, {"SitesDomainName": ""}),
        Rollout(EVERY, CLOUDFRONT_ON),
        Rollout(REPLICAS_FIRST, {"SitesDomainName": "sites.skyhost.example"}),
        Rollout(EVERY, {"SitesDomainName": ""}),
    ],
    "without the sites wildcard": [
        Rollout(EVERY, {"SitesDomainName": ""}),
        Rollout(EVERY, CLOUDFRONT_ON),
        Rollout(EVERY + [R3], WITH_R3),
        Rollout(EVERY, CLOUDFRONT_OFF),
    ],
    "upgrade from the earlier arrangement, primary first": [
        Rollout(EVERY, template="earlier"),
        Rollout(EVERY),
        Rollout(EVERY, CLOUDFRONT_ON),
        Rollout(EVERY, CLOUDFRONT_OFF),
    ],
    "upgrade from the earlier arrangement, replicas first": [
        Rollout(EVERY, template="earlier"),
        Rollout(REPLICAS_FIRST),
        Rollout(EVERY + [R3], WITH_R3),
    ],
    # A simple *.SitesDomainName record cannot become a latency one in place: the
    # documented way goes through one deploy of the primary without SitesDomainName.
    "upgrade from the earlier arrangement created with cloudfront on": [
        Rollout(EVERY, CLOUDFRONT_ON, template="earlier"),
        Rollout([P], {"SitesDomainName": ""}),
        Rollout(EVERY, {"SitesDomainName": "sites.skyhost.example"}),
        Rollout(EVERY, CLOUDFRONT_OFF),
    ],
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_stack_deploys_keep_route53_consistent(templates: dict[str, dict], scenario: str) -> None:
    world, params = replay(templates, SCENARIOS[scenario])
    world.check(world.zone, public_names(params), "the last step")


def test_the_end_state_routes_as_documented(templates: dict[str, dict]) -> None:
    sites, latency = "*.sites.skyhost.example", "sites.origin.skyhost.example"
    world, _ = replay(templates, [Rollout(EVERY)])
    [public] = world.zone.group(sites, "A")
    assert public.alias == (ZONE, latency) and public.owner == P
    members = world.zone.group(latency, "A")
    assert {(r.routing, r.region, r.owner) for r in members} == {("latency", r, r) for r in EVERY}
    assert all(r.alias and r.alias[1] == "<SitesApiDomain.RegionalDomainName>" for r in members)
    assert world.zone.group(sites, "AAAA") == []

    world, _ = replay(templates, [Rollout(EVERY), Rollout(EVERY, CLOUDFRONT_ON)])
    primary = world.stacks[P]
    config = primary.stack.eval(
        primary.template["Resources"]["EdgeDistribution"]["Properties"]["DistributionConfig"]
    )
    [public] = world.zone.group(sites, "A")
    [ipv6] = world.zone.group(sites, "AAAA")
    for rec in (public, ipv6):
        assert rec.alias == (CLOUDFRONT_ZONE, "<EdgeDistribution.DomainName>") and rec.owner == P
        # CloudFront answers only the names it is given as alternate names.
        assert rec.name in config["Aliases"].split(",")
    # The distribution's origin is the latency-routed DomainName, one record per region;
    # its failover origin is a replica region's own name, a simple alias of its stack.
    origins = {o["Id"]: o for o in config["Origins"]}
    members = world.zone.group(fqdn(origins["skyhost-origin"]["DomainName"]), "A")
    assert {(r.routing, r.region) for r in members} == {("latency", r) for r in EVERY}
    [own] = world.zone.group(fqdn(origins["skyhost-failover-region"]["DomainName"]), "A")
    assert own.routing == "simple" and own.owner != P
    # The sites' latency name stays, so turning CloudFront off changes only the primary.
    assert {r.region for r in world.zone.group(latency, "A")} == set(EVERY)


# ---------------------------------------------------------------------------- the checker


def test_the_earlier_arrangement_fails_when_cloudfront_turns_on(templates: dict[str, dict]) -> None:
    """The replay catches the failure operators met: the primary's update creates a simple
    *.SitesDomainName record while the regions' latency records of that name exist."""
    with pytest.raises(Violation, match=r"step 2 .* update of us-west-2's stack.*"
                       r"\*\.sites\.skyhost\.example A \(simple.*another routing policy"):
        replay(
            templates,
            [Rollout(EVERY, template="earlier"), Rollout(EVERY, CLOUDFRONT_ON, template="earlier")],
        )


def test_the_earlier_arrangement_with_cloudfront_needs_the_documented_detour(
    templates: dict[str, dict],
) -> None:
    """Stacks the earlier template created with CloudFront on hold a simple record of
    *.SitesDomainName, which no deploy can turn into a latency one in place."""
    with pytest.raises(Violation, match=r"step 2 .* update of us-west-2's stack, creating "
                       r"SitesLatencyRecord.*another routing policy"):
        replay(templates, [Rollout(EVERY, CLOUDFRONT_ON, template="earlier"), Rollout(EVERY)])


def rec(name: str, owner: str = P, routing: str = "simple", set_id: str | None = None,
        region: str | None = None, alias: tuple[str, str] | None = None, type_: str = "A") -> Record:
    return Record(fqdn(name), type_, set_id, routing, region, alias, owner)


# (records already in the zone, the record created, the refusal expected or None)
ZONE_CASES = [
    ([], rec("a.example"), None),
    ([rec("a.example")], rec("a.example", owner=R1), "already exists"),
    ([rec("a.example", type_="AAAA")], rec("a.example"), None),
    (
        [rec("a.example", routing="latency", set_id=P, region=P)],
        rec("a.example"),
        "another routing policy",
    ),
    (
        [rec("a.example")],
        rec("a.example", routing="latency", set_id=P, region=P),
        "another routing policy",
    ),
    (
        [rec("a.example", routing="latency", set_id=P, region=P)],
        rec("a.example", routing="latency", set_id=R1, region=R1),
        None,
    ),
    (
        [rec("a.example", routing="latency", set_id=P, region=P)],
        rec("a.example", routing="latency", set_id="other", region=P),
        "is the latency record of us-west-2",
    ),
    (
        [rec("a.example", routing="latency", set_id=P, region=P)],
        rec("a.example", routing="latency", set_id=P, region=R1),
        "already exists",
    ),
    (
        [rec("a.example", routing="latency", set_id=P, region=P)],
        rec("a.example", routing="weighted", set_id=R1),
        "another routing policy",
    ),
    ([], rec("a.example", routing="latency", region=P), "needs a SetIdentifier"),
    ([], rec("a.example", set_id="x"), "takes no SetIdentifier"),
    ([], rec("a.example", alias=(ZONE, "b.example")), "has no record"),
    ([rec("b.example", type_="AAAA")], rec("a.example", alias=(ZONE, "b.example")), "has no record"),
    ([rec("b.example")], rec("a.example", alias=(ZONE, "b.example")), None),
    ([], rec("a.example", alias=(CLOUDFRONT_ZONE, "d.cloudfront.net")), None),
]


@pytest.mark.parametrize("existing,created,refusal", ZONE_CASES)
def test_the_zone_model_refuses_what_route53_refuses(
    existing: list[Record], created: Record, refusal: str | None
) -> None:
    zone = Zone()
    for r in existing:
        zone.create(r)
    if refusal is None:
        zone.create(created)
        assert zone.records[created.key] == created
    else:
        with pytest.raises(Violation, match=refusal):
            zone.create(created)


def test_a_dangling_alias_is_reported() -> None:
    world = World()
    zone = Zone()
    target = rec("b.example")
    zone.create(target)
    zone.create(rec("a.example", alias=(ZONE, "b.example")))
    world.check(zone, set(), "setup")
    zone.delete(target)
    with pytest.raises(Violation, match="b.example A has no record"):
        world.check(zone, set(), "deleting b")
    with pytest.raises(Violation, match="c.example A has no record"):
        world.check(Zone(), {("c.example", "A")}, "nothing")


def test_orders_follow_dependencies() -> None:
    deps = {"b": {"a"}, "c": set(), "a": set()}
    found = list(orders(["a", "b", "c"], lambda x, y: x in deps[y]))
    assert sorted(found) == [["a", "b", "c"], ["a", "c", "b"], ["c", "a", "b"]]
