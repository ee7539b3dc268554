"""The reader of SDK calls (rust_calls.py) on small sources: what it must find and what
it must not confuse with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from rust_calls import (
    Fn,
    Sdk,
    count_args,
    functions,
    resolve_method,
    sdk_calls_in,
    strip_comments_and_strings,
)


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("f()", 0),
        ("f(a)", 1),
        ("f(a, b)", 2),
        ("f(a, b,)", 2),
        ("f((a, b))", 1),
        ("f(|a, b| a + b, c)", 2),
        ("f(move |a, b| a, c)", 2),
        ("f(x::<A, B>(), y)", 2),
        ("f(vec![1, 2], [3, 4], {5})", 3),
        ("f(\n    a,\n    b,\n)", 2),
    ],
)
def test_arguments_are_counted_at_the_top_level(call: str, args: int) -> None:
    assert count_args(call, call.index("("))[0] == args


def test_comments_and_strings_hide_nothing_but_themselves() -> None:
    src = 'let a = "x.put_object()"; // .get_item()\n/* .scan() */ let c = \'"\'; b.go()'
    out = strip_comments_and_strings(src)
    assert "put_object" not in out and "get_item" not in out and "scan" not in out
    assert "b.go()" in out


SOURCE = """
pub trait Store {
    async fn put(&self, key: &str, body: Body, sha: Option<&str>) -> Result<()>;
    async fn get(&self, key: &str) -> Result<()> { self.read(key).await }
}
impl Store for S3 {
    async fn put(&self, key: &str, body: Body, sha: Option<&str>) -> Result<()> {
        self.client().await.put_object().bucket(b).send().await
    }
}
impl<T: Clone> Cache<T> {
    pub fn put(&mut self, key: &str, v: T) {}
}
fn free(a: u8) -> u8 { a }
#[cfg(test)]
mod tests {
    fn only_in_tests() {}
}
"""


def test_functions_know_their_block_and_count_parameters_without_self(tmp_path: Path) -> None:
    p = tmp_path / "lib.rs"
    p.write_text(SOURCE)
    found = {(f.name, f.params, f.is_method, tuple(sorted(f.owners))) for f in functions("x", p)}
    assert found == {
        ("get", 1, True, ("Store",)),
        ("put", 3, True, ("S3", "Store")),
        ("put", 2, True, ("Cache",)),
        ("free", 1, False, ()),
    }


S3 = Sdk("aws-sdk-s3", "s3", {"put_object": "PutObject", "get_object": "GetObject"})
DDB = Sdk("aws-sdk-dynamodb", "dynamodb", {"query": "Query", "get_item": "GetItem"})


def fn(body: str) -> Fn:
    return Fn("x", Path(__file__), "f", False, 0, body)


@pytest.mark.parametrize(
    ("body", "found"),
    [
        ("self.client().await.put_object().send()", ["s3:PutObject"]),
        ("self.client\n    .get()\n    .await\n    .get_item()", ["dynamodb:GetItem"]),
        ("client.query().table_name(t)", ["dynamodb:Query"]),
        ("let q = parts.uri.query().unwrap_or(\"\")", []),
        ("self.get_object(key)", []),
    ],
)
def test_sdk_calls_are_calls_on_a_client(body: str, found: list[str]) -> None:
    calls = sdk_calls_in(fn(body), [S3, DDB])
    assert [f"{c.prefix}:{c.operation}" for c in calls] == found


def test_an_operation_on_an_unknown_receiver_is_an_error_not_a_miss() -> None:
    with pytest.raises(AssertionError, match="teach tests/template/rust_calls.py"):
        sdk_calls_in(fn("let out = sdk.put_object().send()"), [S3, DDB])


def test_a_typed_receiver_reaches_only_its_type_s_methods(tmp_path: Path) -> None:
    p = tmp_path / "lib.rs"
    p.write_text(SOURCE)
    fns = functions("x", p)
    methods: dict[tuple[str, int], list[Fn]] = {}
    for f in fns:
        if f.is_method:
            methods.setdefault((f.name, f.params), []).append(f)
    caller = Fn("y", p, "c", False, 0, "", frozenset(), {"cache": {"Arc", "Cache"}, "bucket": {"Arc", "Store"}})
    # `cache.put(k, v)` has two arguments: the cache's put, never the store's three.
    assert [g.owners for g in resolve_method(caller, "put", 2, "cache", methods, {})] == [frozenset({"Cache"})]
    assert {g.owners for g in resolve_method(caller, "put", 3, "bucket", methods, {})} == {frozenset({"S3", "Store"})}
    # A receiver of a type none of the candidates belongs to reaches none of them.
    other = Fn("y", p, "c", False, 0, "", frozenset(), {"files": {"BTreeMap", "String"}})
    assert resolve_method(other, "put", 2, "files", methods, {}) == []
    # An undeclared receiver in a file naming no candidate's type reaches them all.
    unknown = Fn("y", p, "c", False, 0, "", frozenset(), {})
    assert len(resolve_method(unknown, "put", 3, "x", methods, {})) == 1
