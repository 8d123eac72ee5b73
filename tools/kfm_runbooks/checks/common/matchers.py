"""KFM's `*.expected_error.txt`: the error an invalid fixture must produce, every dialect.

One matcher for every runbook that reproduces KFM fixtures. KFM has written three
dialects over time, one line each:

    {"kind":"schema","field":"/run_id","keyword":"pattern","contains":"does not match"}
    SCHEMA_INVALID|/|schema constraint failed: required
    enum|pattern|date-time            (jsonschema words: any alternative, anywhere)

The first two name the field and the JSON Schema keyword (and, optionally, text the
message contains); the third lists `|`-separated words of which one must appear in an
error's keyword or message (case, spaces and punctuation ignored, so `additional
properties` matches the keyword `additionalProperties`). Errors are JSON Schema
violations: anything with `keyword`, `message` and a JSON pointer (`pointer` or `field`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import json as strict_json
from .files import FileProblem, read_bounded

SUFFIX = ".expected_error.txt"
MAX_BYTES = 4096
UNREADABLE = "EXPECTED_ERROR_UNREADABLE"
UNPARSEABLE = "EXPECTED_ERROR_UNPARSEABLE"
_PIPE_RE = re.compile(r"SCHEMA_INVALID\|(/[^|]*)\|schema constraint failed: ([A-Za-z]+)")
_WORDS_RE = re.compile(r"[A-Za-z][A-Za-z0-9 _-]*(\|[A-Za-z][A-Za-z0-9 _-]*)*")


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _where(error: Any) -> str:
    return str(getattr(error, "pointer", None) or getattr(error, "field", "") or "/")


@dataclass(frozen=True)
class ExpectedError:
    """One parsed matcher: field + keyword (+ contains), or free alternatives."""

    text: str
    dialect: str  # json | pipe | words
    field: str | None = None
    keyword: str | None = None
    contains: str = ""
    alternatives: tuple[str, ...] = ()

    def matches(self, error: Any) -> bool:
        keyword, message = str(error.keyword), str(error.message)
        if self.dialect == "words":
            haystack = _squash(f"{keyword} {message}")
            return any(_squash(word) in haystack for word in self.alternatives)
        return (
            _where(error) == self.field
            and keyword == self.keyword
            and self.contains.lower() in message.lower()
        )

    def matched_by(self, errors: Iterable[Any]) -> bool:
        return any(self.matches(error) for error in errors)

    @property
    def describe(self) -> str:
        if self.dialect == "words":
            return f"an error mentioning {' or '.join(self.alternatives)}"
        extra = f" containing {self.contains!r}" if self.contains else ""
        return f"{self.keyword} at {self.field}{extra}"


def parse(text: str) -> ExpectedError | None:
    """The matcher a one-line file states, or None when it is in no known dialect."""
    line = text.strip()
    if "\n" in line or not line:
        return None
    if line.startswith("{"):
        value, kind = strict_json.parse(line.encode())
        if kind is None and isinstance(value, dict) and value.get("kind") == "schema":
            field, keyword = value.get("field"), value.get("keyword")
            contains = value.get("contains", "")
            if isinstance(field, str) and isinstance(keyword, str) and isinstance(contains, str):
                return ExpectedError(line, "json", field, keyword, contains)
        return None
    match = _PIPE_RE.fullmatch(line)
    if match:
        return ExpectedError(line, "pipe", match.group(1), match.group(2))
    if _WORDS_RE.fullmatch(line):
        words = tuple(w.strip() for w in line.split("|") if w.strip())
        return ExpectedError(line, "words", alternatives=words)
    return None


def beside(path: Path) -> tuple[ExpectedError | None, str | None]:
    """The matcher beside `x.json` (`x.expected_error.txt`): (matcher, None), (None, code)
    when it is unusable, (None, None) when there is none. Never follows a symlink."""
    candidate = path.with_name(path.name.removesuffix(".json") + SUFFIX)
    data, problem = read_bounded(candidate, MAX_BYTES)
    if problem is FileProblem.MISSING:
        return None, None
    if problem is FileProblem.TOO_LARGE:
        return None, UNPARSEABLE
    if data is None:
        return None, UNREADABLE
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, UNREADABLE
    matcher = parse(text)
    return (matcher, None) if matcher else (None, UNPARSEABLE)
