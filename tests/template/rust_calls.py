"""The AWS operations each Lambda function's code can call, read from the Rust sources.

How it reads the code:
- `cargo metadata` gives the crates a function's crate links (its normal dependencies,
  transitively): the workspace crates whose sources are read, and the `aws-sdk-*` crates
  whose operations are looked for. An SDK crate's operations are the folders of its
  `src/operation/`; its IAM service prefix is the signing name in its `src/config.rs`
  (`aws-sdk-dynamodbstreams` signs as `dynamodb`).
- Every non-test function of the function's own crate is a root. A call reaches the
  functions of the linked workspace crates with its name and argument count: `x.name(a, b)`
  the methods with two parameters besides `self`, `name(a)` or `Type::name(a)` the free
  and associated functions with one. Names alone would make a cache's `put(key, bytes)`
  reach the blob store's `put(key, body, sha256)`; the count tells them apart.
- An SDK call is an operation's fluent method called with no arguments on a client
  (`client`, `client()`, `client().await`, `x.get().await` of a lazily built client).
  Any other zero-argument call of an operation's name must be on a receiver listed in
  NOT_SDK_RECEIVERS, so that a call this reader would miss fails the check instead.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# IAM actions whose names differ from their operation's (AWS's service authorization
# reference). Any other operation's action is its own name.
ACTION_OF_OPERATION = {
    ("s3", "HeadObject"): ["GetObject"],
    ("s3", "ListObjectsV2"): ["ListBucket"],
    ("s3", "ListObjects"): ["ListBucket"],
    ("s3", "HeadBucket"): ["ListBucket"],
    ("s3", "CreateMultipartUpload"): ["PutObject"],
    ("s3", "UploadPart"): ["PutObject"],
    ("s3", "CompleteMultipartUpload"): ["PutObject"],
    # A copy reads its source and writes its destination.
    ("s3", "UploadPartCopy"): ["PutObject", "GetObject"],
    ("s3", "CopyObject"): ["PutObject", "GetObject"],
    ("s3", "ListParts"): ["ListMultipartUploadParts"],
}

# Zero-argument calls of an operation's name that are not SDK calls: the receiver's
# last segment, as read from the source.
NOT_SDK_RECEIVERS = re.compile(r"(?:\buri|\.uri)$")

CLIENT_RECEIVER = re.compile(r"(?:\bclient(?:\(\))?(?:\.await)?|\.get\(\)\.await)$")


@dataclass
class Fn:
    """A function definition: its name, parameters besides `self`, and body."""

    crate: str
    path: Path
    name: str
    is_method: bool
    params: int
    body: str
    owners: frozenset[str] = frozenset()  # the trait and/or type of its impl or trait block
    types: dict[str, set[str]] = field(default_factory=dict)  # its file's `ident: Type` names
    mentions: frozenset[str] = frozenset()  # the type-like names its file uses


@dataclass
class Sdk:
    """An SDK crate linked by a function: its IAM prefix and its operations."""

    crate: str
    prefix: str
    operations: dict[str, str]  # snake_case method -> CamelCase operation


@dataclass
class Call:
    """One SDK call found in the code."""

    prefix: str
    operation: str
    path: Path
    function: str
    via: list[str] = field(default_factory=list)  # the chain of calls from a root


@dataclass
class Calls:
    """What a function's code calls."""

    calls: list[Call] = field(default_factory=list)

    def actions(self) -> set[str]:
        out: set[str] = set()
        for c in self.calls:
            for a in ACTION_OF_OPERATION.get((c.prefix, c.operation), [c.operation]):
                out.add(f"{c.prefix}:{a}")
        return out


# ---------------------------------------------------------------------------- source text


def strip_comments_and_strings(text: str) -> str:
    """The source with comments removed and string/char literals emptied (kept as "")."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif (m := re.match(r'b?r(#*)"', text[i:])) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            out.append('""')
            i = n if j < 0 else j + len(end)
        elif c == '"' or (c == "b" and text.startswith('b"', i) and (i == 0 or not text[i - 1].isalnum())):
            i += 2 if c == "b" else 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a).
            m = re.match(r"'(?:\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            if m:
                out.append("' '")
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching(text: str, start: int, open_: str, close: str) -> int:
    """Index just past the bracket closing the one at `start`."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == open_:
            depth += 1
        elif text[i] == close:
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


def without_test_items(text: str) -> str:
    """The source without `#[cfg(test)]` items (test modules and test-only functions)."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]", text)
        if not m:
            return text
        # The item ends at its first top-level `;` or its braced body.
        i = m.end()
        while i < len(text) and text[i] not in "{;":
            i += 1
        end = matching(text, i, "{", "}") if i < len(text) and text[i] == "{" else i + 1
        text = text[: m.start()] + text[end:]


def count_args(text: str, open_at: int) -> tuple[int, int]:
    """(argument count, index past `)`) of the parenthesised list opening at `open_at`."""
    depth, args, seen, i = 0, 0, False, open_at
    while i < len(text):
        c = text[i]
        if c in "([{":
            depth += 1
            if depth > 1:
                seen = True
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return (args + 1 if seen else args), i + 1
        elif depth == 1:
            if c == ",":
                args, seen = args + 1, False
                # A trailing comma ends the list without another argument.
                if re.match(r",\s*\)", text[i:]):
                    return args, matching(text, open_at, "(", ")")
            elif c == "|" and not seen:
                # A closure's parameters: skip to the closing `|`.
                j = text.find("|", i + 1)
                i, seen = (j if j > 0 else i), True
            elif c == "<" and text[i - 2 : i] == "::":
                i = matching(text, i, "<", ">") - 1
                seen = True
            elif not c.isspace():
                seen = True
        i += 1
    return args, len(text)


FN_DEF = re.compile(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)\s*(?:<)?")
BLOCK = re.compile(r"\b(impl|trait)\b([^{;]*)\{")
DECL = re.compile(r"\b([a-z_][a-z0-9_]*)\s*:\s*([^=;{}()]*?)(?=[,;={)]|$)", re.M)


def without_generics(text: str) -> str:
    while True:
        stripped = re.sub(r"<[^<>]*>", "", text)
        if stripped == text:
            return text
        text = stripped


def block_owners(kind: str, header: str) -> frozenset[str]:
    """The names an `impl` or `trait` block's methods belong to."""
    header = without_generics(header).replace("dyn ", "").replace("&", " ")
    if kind == "trait":
        m = re.match(r"\s*([A-Za-z_]\w*)", header)
        return frozenset([m.group(1)] if m else [])
    parts = re.split(r"\bfor\b", header.split(" where ")[0])
    names = [re.findall(r"[A-Za-z_]\w*", part)[-1:] for part in parts if part.strip()]
    return frozenset(n for ns in names for n in ns)


def declared_types(text: str) -> dict[str, set[str]]:
    """`ident` -> the type names of its declarations (`store: Arc<dyn MetaStore>`) in a file."""
    out: dict[str, set[str]] = {}
    for m in DECL.finditer(text):
        names = set(re.findall(r"[A-Z][A-Za-z0-9_]*", m.group(2)))
        if names:
            out.setdefault(m.group(1), set()).update(names)
    return out


def functions(crate: str, path: Path) -> list[Fn]:
    text = without_test_items(strip_comments_and_strings(path.read_text()))
    blocks = []
    for b in BLOCK.finditer(text):
        start = b.end() - 1
        blocks.append((start, matching(text, start, "{", "}"), block_owners(b.group(1), b.group(2))))
    types = declared_types(text)
    mentions = frozenset(re.findall(r"\b[A-Z][A-Za-z0-9_]*", text))
    out = []
    for m in FN_DEF.finditer(text):
        i = m.end() - (1 if text[m.end() - 1] == "<" else 0)
        if text[i] == "<":
            i = matching(text, i, "<", ">")
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text) or text[i] != "(":
            continue
        params_end = matching(text, i, "(", ")")
        params = text[i + 1 : params_end - 1]
        is_method = re.match(r"\s*(?:&\s*(?:'\w+\s+)?)?(?:mut\s+)?self\b", params) is not None
        nparams, _ = count_args(text, i)
        if is_method:
            nparams -= 1
        # The body: the first `{` after the signature, unless a `;` (a declaration) comes first.
        j = params_end
        depth = 0
        while j < len(text):
            ch = text[j]
            if ch in "(<[":
                depth += 1
            elif ch in ")>]" and not (ch == ">" and text[j - 1] == "-"):
                depth -= 1
            elif depth <= 0 and ch in "{;":
                break
            j += 1
        if j >= len(text) or text[j] == ";":
            continue
        body = text[j : matching(text, j, "{", "}")]
        inner = [b for b in blocks if b[0] < m.start() < b[1]]
        owners = min(inner, key=lambda b: b[1] - b[0])[2] if inner else frozenset()
        out.append(Fn(crate, path, m.group(1), is_method, nparams, body, owners, types, mentions))
    return out


CALL = re.compile(r"(\.|::|\b)([A-Za-z_][A-Za-z0-9_]*)\s*(?:::<[^()]*?>)?\s*\(")
REF = re.compile(r"::([A-Za-z_][A-Za-z0-9_]*)\s*[,)]")


def calls_in(body: str) -> tuple[set[tuple[str, int, str]], set[tuple[str, int]], set[str]]:
    """(method calls with their receiver's last name, function calls, functions passed by
    path) of a body."""
    methods: set[tuple[str, int, str]] = set()
    free: set[tuple[str, int]] = set()
    for m in CALL.finditer(body):
        name = m.group(2)
        if name in ("fn", "if", "while", "match", "for", "return", "in", "move", "loop"):
            continue
        before = body[max(0, m.start() - 3) : m.start() + len(m.group(1))]
        if before.endswith("fn ") or body[m.end(2) : m.end(2) + 1] == "!":
            continue
        args, _ = count_args(body, m.end() - 1)
        if m.group(1) == ".":
            receiver = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*$", body[: m.start()])
            methods.add((name, args, receiver.group(1) if receiver else ""))
        else:
            free.add((name, args))
    refs = {m.group(1) for m in REF.finditer(body)}
    return methods, free, refs


# ---------------------------------------------------------------------------- crates


@lru_cache(maxsize=1)
def metadata() -> dict:
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--offline"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def linked_packages(crate_dir: Path) -> list[dict]:
    """The packages `crate_dir`'s crate links: itself and its normal dependencies."""
    meta = metadata()
    by_id = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    manifest = str((crate_dir / "Cargo.toml").resolve())
    start = next(p["id"] for p in meta["packages"] if p["manifest_path"] == manifest)
    seen, todo = {start}, [start]
    while todo:
        for dep in nodes[todo.pop()]["deps"]:
            normal = any(k["kind"] is None for k in dep["dep_kinds"])
            if normal and dep["pkg"] not in seen:
                seen.add(dep["pkg"])
                todo.append(dep["pkg"])
    return [by_id[i] for i in seen]


def sdk_of(package: dict) -> Sdk | None:
    if not package["name"].startswith("aws-sdk-"):
        return None
    src = Path(package["manifest_path"]).parent / "src"
    signing = re.search(
        r'fn signing_name\(&self\) -> &\'static str \{\s*"([a-z0-9-]+)"',
        (src / "config.rs").read_text(),
    )
    assert signing, f"{package['name']}: no signing name in src/config.rs"
    ops = {}
    for d in (src / "operation").iterdir():
        if d.is_dir():
            ops[d.name] = "".join(w.capitalize() for w in d.name.split("_"))
    # CamelCase of `list_objects_v2` is ListObjectsV2, as the SDK spells it.
    return Sdk(package["name"], signing.group(1), ops)


def is_workspace(package: dict) -> bool:
    return package["id"] in metadata()["workspace_members"]


@lru_cache(maxsize=None)
def crate_functions(manifest: str, name: str) -> tuple[Fn, ...]:
    src = Path(manifest).parent / "src"
    out: list[Fn] = []
    for path in sorted(src.rglob("*.rs")):
        out.extend(functions(name, path))
    return tuple(out)


def sdk_calls_in(fn: Fn, sdks: list[Sdk], strict: bool = True) -> list[Call]:
    """The SDK calls in `fn`'s body; raises on an operation-named call it cannot place."""
    found = []
    for m in re.finditer(r"\.\s*([a-z_][a-z0-9_]*)\s*\(\s*\)", fn.body):
        op = m.group(1)
        owners = [s for s in sdks if op in s.operations]
        if not owners:
            continue
        receiver = re.sub(r"\s+", "", fn.body[: m.start()])
        if CLIENT_RECEIVER.search(receiver):
            assert len(owners) == 1 or len({s.prefix for s in owners}) == 1, (
                f"{fn.path}: `{op}` is an operation of {[s.crate for s in owners]}"
            )
            found.append(Call(owners[0].prefix, owners[0].operations[op], fn.path, fn.name))
        elif strict and not NOT_SDK_RECEIVERS.search(receiver):
            raise AssertionError(
                f"{fn.path.relative_to(ROOT)}: `.{op}()` in fn {fn.name} looks like an SDK "
                f"call on a receiver this reader does not know (…{receiver[-40:]}); "
                "teach tests/template/rust_calls.py its client or list it in NOT_SDK_RECEIVERS"
            )
    return found


def resolve_method(
    caller: Fn,
    name: str,
    args: int,
    receiver: str,
    methods: dict[tuple[str, int], list[Fn]],
    crate_types: dict[str, dict[str, set[str]]],
) -> list[Fn]:
    """The workspace methods a call `receiver.name(args)` in `caller` may reach."""
    candidates = methods.get((name, args), [])
    if not candidates:
        return []
    # The receiver's declared type (`cache: Arc<dyn Cache>`), in the caller's file, else
    # anywhere in its crate: the methods of that type's blocks; a type none of them
    # belongs to (`files: BTreeMap<..>` calling `values()`) reaches none of them. A
    # generic parameter (`S`) or `Self` tells nothing.
    declared = caller.types.get(receiver) or crate_types.get(caller.crate, {}).get(receiver)
    if declared and not any(len(t) == 1 or t == "Self" for t in declared):
        return [g for g in candidates if g.owners & declared]
    # Otherwise the methods of the traits and types the caller's file names; a file that
    # names none of them reaches them all.
    named = [g for g in candidates if g.owners & caller.mentions]
    return named or candidates


def function_calls(crate_dir: Path) -> Calls:
    """Every SDK call reachable from the non-test code of the crate at `crate_dir`."""
    packages = linked_packages(crate_dir)
    sdks = [s for p in packages if (s := sdk_of(p))]
    own_manifest = str((crate_dir / "Cargo.toml").resolve())
    workspace = [p for p in packages if is_workspace(p)]
    pool: list[Fn] = []
    roots: list[Fn] = []
    for p in workspace:
        fns = crate_functions(p["manifest_path"], p["name"])
        (roots if p["manifest_path"] == own_manifest else pool).extend(fns)
    methods: dict[tuple[str, int], list[Fn]] = {}
    free: dict[tuple[str, int], list[Fn]] = {}
    by_name: dict[str, list[Fn]] = {}
    for f in pool:
        (methods if f.is_method else free).setdefault((f.name, f.params), []).append(f)
        by_name.setdefault(f.name, []).append(f)
    crate_types: dict[str, dict[str, set[str]]] = {}
    for f in roots + pool:
        for ident, names in f.types.items():
            crate_types.setdefault(f.crate, {}).setdefault(ident, set()).update(names)
    parent: dict[int, Fn | None] = {}
    todo: list[tuple[Fn, Fn | None]] = [(r, None) for r in roots]
    result = Calls()
    while todo:
        f, caller = todo.pop(0)
        if id(f) in parent:
            continue
        parent[id(f)] = caller
        chain, g = [], f
        while g is not None:
            chain.append(f"{g.path.relative_to(ROOT)}:{g.name}")
            g = parent[id(g)]
        for c in sdk_calls_in(f, sdks):
            c.via = chain
            result.calls.append(c)
        ms, fs, refs = calls_in(f.body)
        reach: list[Fn] = []
        for name, args, receiver in ms:
            reach.extend(resolve_method(f, name, args, receiver, methods, crate_types))
        for key in fs:
            reach.extend(free.get(key, []))
            # `Type::method(&x, a)` calls a method with `self` spelled out.
            reach.extend(methods.get((key[0], key[1] - 1), []))
        for name in refs:
            # A function passed by path (`.map(Self::decode)`) may be called with any count.
            reach.extend(by_name.get(name, []))
        todo.extend((g, f) for g in reach)
    return result


def all_sdk_calls(crate_dir: Path) -> list[Call]:
    """Every SDK call in the crate's own sources, reachable or not (for the receiver check)."""
    packages = linked_packages(crate_dir)
    sdks = [s for p in packages if (s := sdk_of(p))]
    out = []
    for f in crate_functions(str((crate_dir / "Cargo.toml").resolve()), crate_dir.name):
        out.extend(sdk_calls_in(f, sdks))
    return out


if __name__ == "__main__":
    # `python3 tests/template/rust_calls.py`: each function's actions, and one chain of
    # calls that reaches each.
    for crate in ("origin", "replicator", "asset-copier"):
        print(crate)
        calls = function_calls(ROOT / "crates" / crate)
        for action in sorted(calls.actions()):
            service, name = action.split(":")
            chain = next(
                c.via
                for c in calls.calls
                if c.prefix == service
                and name in ACTION_OF_OPERATION.get((c.prefix, c.operation), [c.operation])
            )
            print(f"  {action}\n      {' <- '.join(chain)}")
