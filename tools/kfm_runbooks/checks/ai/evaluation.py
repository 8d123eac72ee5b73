"""Focus Mode's evaluation suite: accuracy and per-dataset hit rates against the minimum.

The evaluation set (`focus.eval_set`, see checks/ai/reference.py) pairs questions with the
dataset(s) an answer must cite (and optionally a phrase it must contain); its
`min_accuracy` is the alarm threshold. A question is a hit when one of its expected ids is
among the answer's citations (and the answer contains the expected phrase). The suite runs
through `focus.url`: what users get. There is no offline replay: the index and retriever
of a system are its own business, judged only by what it answers.

Alarms: `AI_EVAL_ACCURACY_BELOW_MIN` (accuracy under the threshold),
`AI_EVAL_DATASET_BELOW_MIN` (bias: one dataset's hit rate under the threshold),
`AI_EVAL_DATASET_OVERCITED` (info: a dataset cited for questions about others),
`AI_EVAL_MISS` (one question, expected vs cited), `AI_EVAL_UNAVAILABLE` (HOLD: some
questions got no answer), `AI_EVAL_SET_MISSING` (HOLD: the target names no evaluation set).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .. import BLOCKING, HOLD, INFO, Finding
from . import reference as ref
from .focus import FocusSystem


@dataclass(frozen=True)
class EvalResult:
    qid: str
    question: str
    expected: tuple[str, ...]
    cited: tuple[str, ...]
    status: int  # HTTP status (0: unreachable)
    text_ok: bool = True  # the answer contains the expected phrase (or none is expected)

    @property
    def hit(self) -> bool:
        return bool(set(self.expected) & set(self.cited)) and self.text_ok

    def as_row(self) -> dict[str, Any]:
        return {
            "question": self.qid,
            "expected": list(self.expected),
            "cited": list(self.cited),
            "hit": self.hit,
            "status": self.status,
        }


@dataclass(frozen=True)
class Evaluation:
    results: list[EvalResult]
    minimum: float

    @property
    def usable(self) -> list[EvalResult]:
        return [r for r in self.results if r.status == 200]

    @property
    def complete(self) -> bool:
        return bool(self.results) and len(self.usable) == len(self.results)

    @property
    def accuracy(self) -> float | None:
        if not self.complete:
            return None
        return sum(r.hit for r in self.results) / len(self.results)

    @property
    def passed(self) -> bool | None:
        accuracy = self.accuracy
        return None if accuracy is None else accuracy >= self.minimum

    def per_dataset(self) -> dict[str, dict[str, Any]]:
        """dataset (the first expected id) -> questions, hits, hit rate, cited elsewhere."""
        stats: dict[str, dict[str, Any]] = defaultdict(
            lambda: {"questions": 0, "hits": 0, "cited_elsewhere": 0}
        )
        for result in self.usable:
            stats[result.expected[0]]["questions"] += 1
            stats[result.expected[0]]["hits"] += int(result.hit)
            for cited in result.cited:
                if cited not in result.expected:
                    stats[cited]["cited_elsewhere"] += 1
        for value in stats.values():
            value["hit_rate"] = value["hits"] / value["questions"] if value["questions"] else None
        return {k: dict(v) for k, v in sorted(stats.items())}

    def accuracy_text(self) -> str:
        accuracy = self.accuracy
        if accuracy is None:
            return f"unavailable ({len(self.usable)} of {len(self.results)} answered)"
        hits = sum(r.hit for r in self.results)
        return f"{hits}/{len(self.results)} = {accuracy:.2f} (minimum {self.minimum:.2f})"


def run_live(system: FocusSystem) -> Evaluation | None:
    """Every evaluation question through focus.url (None: the target names no eval set)."""
    if not isinstance(system.eval_set, ref.EvalSet):
        return None
    results = []
    for item in system.eval_set.items:
        answer = system.ask(item.id, item.question)
        text_ok = not item.expected_answer or item.expected_answer.lower() in answer.text.lower()
        results.append(
            EvalResult(
                item.id, item.question, item.expected, answer.citations, answer.status, text_ok
            )
        )
    return Evaluation(results, system.eval_set.min_accuracy)


def missing_findings(system: FocusSystem) -> list[Finding]:
    return [
        Finding("AI_EVAL_SET_MISSING", m.key, "/", HOLD, m.message)
        for m in system.missing("eval_set")
    ]


def findings(live: Evaluation) -> list[Finding]:
    found: list[Finding] = []
    if live.accuracy is None:
        found.append(
            Finding(
                "AI_EVAL_UNAVAILABLE",
                "evaluation suite",
                "/",
                HOLD,
                f"accuracy {live.accuracy_text()}",
            )
        )
    elif not live.passed:
        found.append(
            Finding(
                "AI_EVAL_ACCURACY_BELOW_MIN",
                "evaluation suite",
                "/accuracy",
                BLOCKING,
                f"accuracy {live.accuracy_text()}",
            )
        )
    below = live.passed is False
    for result in live.usable:
        if not result.hit:
            detail = "" if result.text_ok else " (the expected phrase is missing)"
            found.append(
                Finding(
                    "AI_EVAL_MISS",
                    result.qid,
                    "/citations",
                    BLOCKING if below else INFO,
                    f"expected {' or '.join(result.expected)}, "
                    f"cited {', '.join(result.cited) or 'nothing'}{detail}",
                )
            )
    for dataset, stats in live.per_dataset().items():
        rate = stats["hit_rate"]
        if rate is not None and rate < live.minimum:
            found.append(
                Finding(
                    "AI_EVAL_DATASET_BELOW_MIN",
                    dataset,
                    "/hit_rate",
                    BLOCKING,
                    f"hit rate {stats['hits']}/{stats['questions']} below {live.minimum:.2f}",
                )
            )
        if stats["cited_elsewhere"] > stats["questions"]:
            found.append(
                Finding(
                    "AI_EVAL_DATASET_OVERCITED",
                    dataset,
                    "/citations",
                    INFO,
                    f"cited for {stats['cited_elsewhere']} question(s) about other datasets",
                )
            )
    return found
