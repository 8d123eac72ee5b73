"""What a Focus Mode system is judged against: files the target names, nothing else.

Three reference files, each named in the target's `focus` section (paths relative to the
target file) and read as YAML or JSON:

- `focus.eval_set` — the evaluation set, the reference for answers::

      min_accuracy: 0.9                  # required, 0..1
      questions:                         # required, at least one
        - id: groundwater                # optional (default q1, q2, ...)
          question: Which dataset describes groundwater levels?
          expected_citations: [kfm-hydro-wells]   # a hit cites at least one of these
          expected_answer: aquifer       # optional: the answer must contain this (any case)

  (`expected_citation: <id>` is accepted for a single id.)
- `focus.citation_policy` — what "citations required" means::

      citations_required: true           # every answer resting on data cites it
      known_ids: [extra-id, ...]         # optional: ids a citation may name besides the
                                         # catalog's (focus.catalog_url) and the eval set's
      abstentions: ["No KFM dataset matches this question."]  # answers that need none
- `focus.gate_policy` — the input gate against prompt injection::

      enforced: true                     # the gate must block what a pattern matches
      blocked_patterns: ["ignore (all )?(previous|prior) instructions", ...]  # regexes

A file the target does not name is not guessed: the caller gets `Missing(key, why)` and
the runbook HOLDs naming the key. A named file that is unreadable or malformed is bad
input (`TargetError`, one line naming the key and the problem).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ...errors import TargetError
from ..common.files import FileProblemError, read_regular

MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class Missing:
    """A reference the target does not name: the check it feeds is HOLD."""

    key: str
    why: str

    @property
    def message(self) -> str:
        return f"the target names no {self.key} ({self.why}): add it to the target"


@dataclass(frozen=True)
class EvalItem:
    id: str
    question: str
    expected: tuple[str, ...]
    expected_answer: str = ""


@dataclass(frozen=True)
class EvalSet:
    path: Path
    items: tuple[EvalItem, ...]
    min_accuracy: float

    @property
    def expected_ids(self) -> frozenset[str]:
        return frozenset(i for item in self.items for i in item.expected)


@dataclass(frozen=True)
class CitationPolicy:
    path: Path
    citations_required: bool
    known_ids: frozenset[str]
    abstentions: tuple[str, ...]

    def abstained(self, text: str) -> bool:
        return text.strip() in self.abstentions


@dataclass(frozen=True)
class GatePolicy:
    path: Path
    enforced: bool
    patterns: tuple[str, ...]

    def matched(self, question: str) -> str | None:
        """The first blocked pattern `question` matches (case-insensitive), or None."""
        for pattern in self.patterns:
            if re.search(pattern, question, re.IGNORECASE):
                return pattern
        return None


def _load(path: Path, key: str) -> dict[str, Any]:
    try:
        data = read_regular(path, MAX_BYTES)
    except FileNotFoundError as exc:
        raise TargetError(
            f"'{key}' = {path} does not exist: fix the path or remove the key"
        ) from exc
    except (FileProblemError, OSError) as exc:
        raise TargetError(f"'{key}' ({path}) cannot be read: {exc}") from exc
    try:
        value = yaml.safe_load(data.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).split("\n")[0]
        raise TargetError(f"'{key}' ({path}) is not valid YAML/JSON: {first}") from exc
    if not isinstance(value, dict):
        raise TargetError(f"'{key}' ({path}) must be a mapping (see the README's ### ai)")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise TargetError(f"{where} must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def load_eval_set(path: Path) -> EvalSet:
    key = "focus.eval_set"
    raw = _load(path, key)
    minimum = raw.get("min_accuracy")
    if isinstance(minimum, bool) or not isinstance(minimum, int | float) or not 0 <= minimum <= 1:
        raise TargetError(f"'{key}' ({path}): min_accuracy must be a number from 0 to 1")
    questions = raw.get("questions")
    if not isinstance(questions, list) or not questions:
        raise TargetError(f"'{key}' ({path}): questions must be a non-empty list")
    items = []
    for number, item in enumerate(questions, 1):
        where = f"'{key}' ({path}) question {number}"
        if not isinstance(item, dict) or not isinstance(item.get("question"), str):
            raise TargetError(f"{where}: needs a 'question' string")
        expected = _strings(
            item.get("expected_citations", item.get("expected_citation")),
            f"{where}: expected_citations",
        )
        if not expected:
            raise TargetError(f"{where}: expected_citations must name at least one id")
        answer = item.get("expected_answer", "")
        if not isinstance(answer, str):
            raise TargetError(f"{where}: expected_answer must be a string")
        items.append(
            EvalItem(str(item.get("id", f"q{number}")), item["question"], expected, answer)
        )
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise TargetError(f"'{key}' ({path}): question ids must be unique")
    return EvalSet(path, tuple(items), float(minimum))


def load_citation_policy(path: Path) -> CitationPolicy:
    key = "focus.citation_policy"
    raw = _load(path, key)
    required = raw.get("citations_required")
    if not isinstance(required, bool):
        raise TargetError(f"'{key}' ({path}): citations_required must be true or false")
    return CitationPolicy(
        path,
        required,
        frozenset(_strings(raw.get("known_ids"), f"'{key}' ({path}): known_ids")),
        _strings(raw.get("abstentions"), f"'{key}' ({path}): abstentions"),
    )


def load_gate_policy(path: Path) -> GatePolicy:
    key = "focus.gate_policy"
    raw = _load(path, key)
    enforced = raw.get("enforced")
    if not isinstance(enforced, bool):
        raise TargetError(f"'{key}' ({path}): enforced must be true or false")
    patterns = _strings(raw.get("blocked_patterns"), f"'{key}' ({path}): blocked_patterns")
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise TargetError(
                f"'{key}' ({path}): pattern {pattern!r} is not a regex: {exc}"
            ) from exc
    if not patterns:
        raise TargetError(f"'{key}' ({path}): blocked_patterns must name at least one pattern")
    return GatePolicy(path, enforced, patterns)
