"""checks.common.json: strict parsing and the one RFC 6901 pointer implementation."""

from __future__ import annotations

from typing import Any

import pytest

from kfm_runbooks.checks.common import json as cj


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b'{"a": 1, "a": 2}', "DUPLICATE_KEY"),
        (b'{"a": NaN}', "NONFINITE_NUMBER"),
        (b'{"a": 1e999}', "NONFINITE_NUMBER"),
        (b"\xff{}", "NOT_UTF8"),
        (b"{", "INVALID"),
        (b"[" * 100_000 + b"]" * 100_000, "TOO_DEEP"),
    ],
)
def test_strict_parse_names_the_problem_and_never_raises(data: bytes, kind: str) -> None:
    assert cj.parse(data) == (None, kind)


def test_strict_parse_accepts_plain_json() -> None:
    assert cj.parse('{"é": [1, 2.5, null]}'.encode()) == ({"é": [1, 2.5, None]}, None)


@pytest.mark.parametrize(
    ("parts", "text"),
    [
        ((), "/"),  # KFM's findings name the whole document "/"
        (("a",), "/a"),
        (("a/b", "m~n", 0), "/a~1b/m~0n/0"),
        (("",), "/"),
        (("~1",), "/~01"),  # escape order: ~ first, so "~1" never decodes to "/"
    ],
)
def test_pointer_escapes_per_rfc6901(parts: tuple[Any, ...], text: str) -> None:
    assert cj.pointer(parts) == text


def test_tokens_invert_pointer_and_reject_relative_text() -> None:
    assert cj.tokens("/a~1b/m~0n/0") == ["a/b", "m~n", "0"]
    assert cj.tokens("/~01") == ["~1"]
    with pytest.raises(ValueError):
        cj.tokens("a/b")


def test_set_at_replaces_in_place_with_a_copy() -> None:
    document: dict[str, Any] = {"a/b": [{"x": 1}, {"x": 2}], "": {"k": 0}}
    value = {"deep": [1]}
    cj.set_at(document, "/a~1b/1/x", value)
    cj.set_at(document, "//k", 5)  # the empty key, which lstrip-based copies lost
    value["deep"].append(2)
    assert document == {"a/b": [{"x": 1}, {"x": {"deep": [1]}}], "": {"k": 5}}
    with pytest.raises(KeyError):
        cj.set_at(document, "/missing/x", 1)
    node, key = cj.parent_of(document, "/a~1b/0")
    assert key == 0 and node is document["a/b"]
