"""checks.common.json: strict parsing and the one RFC 6901 pointer implementation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kfm_runbooks.checks.common import json as cj
from kfm_runbooks.checks.common.files import FileProblem, FileProblemError

from . import hostile


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


@pytest.mark.parametrize("kind", hostile.KINDS)
def test_load_file_refuses_links_fifos_and_oversized_files(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "doc.json"
    hostile.plant(path, kind, b'{"a": 1}', 1024)
    with pytest.raises(FileProblemError) as caught:
        cj.load_file(path, 1024)
    assert (
        caught.value.problem
        == {
            "symlink": FileProblem.LINK,
            "oversize": FileProblem.TOO_LARGE,
            "fifo": FileProblem.NOT_REGULAR,
        }[kind]
    )


def test_load_file_reads_strict_json_and_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_bytes(b'{"a": 1}')
    assert cj.load_file(path, 1024) == {"a": 1}
    path.write_bytes(b'{"a": 1, "a": 2}')
    with pytest.raises(cj.JsonFileError, match="DUPLICATE_KEY"):
        cj.load_file(path, 1024)
    with pytest.raises(FileNotFoundError):  # "absent means default" callers keep working
        cj.load_file(tmp_path / "none.json", 1024)
