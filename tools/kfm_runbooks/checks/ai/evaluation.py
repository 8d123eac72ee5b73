"""Focus Mode's evaluation suite: accuracy and per-dataset hit rates against the minimum.

The evaluation set (live/config.json `focus.evaluation`) pairs questions with the
dataset an answer must cite; `focus.min_eval_accuracy` is the alarm threshold. A
question is a hit when its expected dataset is among the answer's citations. The suite
runs three ways:

- live: through POST /api/v1/focus (what users get);
- offline on the running index file (state/focus_index.json) with the server's own
  retriever — still possible while Focus Mode is disabled;
- offline on a correct build of the reference corpus — the baseline: if that misses
  too, the evaluation set or the corpus is wrong, not the index.

Alarms: `AI_EVAL_ACCURACY_BELOW_MIN` (live accuracy under the threshold),
`AI_EVAL_DATASET_BELOW_MIN` (bias: one dataset's hit rate under the threshold),
`AI_EVAL_DATASET_OVERCITED` (info: a dataset cited for questions about others),
`AI_EVAL_MISS` (one question, expected vs cited), `AI_EVAL_REFERENCE_BELOW_MIN` (the
baseline itself misses), `AI_EVAL_UNAVAILABLE` (HOLD: the suite could not run live).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .. import BLOCKING, HOLD, INFO, Finding
from . import reference as ai_reference
from .focus import FocusSystem


@dataclass(frozen=True)
class EvalResult:
    qid: str
    question: str
    expected: str
    cited: tuple[str, ...]
    status: int  # HTTP status (200 offline)

    @property
    def hit(self) -> bool:
        return self.expected in self.cited

    def as_row(self) -> dict[str, Any]:
        return {
            "question": self.qid,
            "expected": self.expected,
            "cited": list(self.cited),
            "hit": self.hit,
            "status": self.status,
        }


@dataclass(frozen=True)
class Evaluation:
    mode: str  # live / index / reference
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
        """dataset -> questions, hits, hit rate, times cited for other questions."""
        stats: dict[str, dict[str, Any]] = defaultdict(
            lambda: {"questions": 0, "hits": 0, "cited_elsewhere": 0}
        )
        for result in self.usable:
            stats[result.expected]["questions"] += 1
            stats[result.expected]["hits"] += int(result.hit)
            for cited in result.cited:
                if cited != result.expected:
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


def _items(system: FocusSystem) -> list[tuple[str, str, str]]:
    return [
        (f"eval-{n}", str(item.get("question", "")), str(item.get("expected_citation", "")))
        for n, item in enumerate(system.evaluation, 1)
    ]


def run_live(system: FocusSystem) -> Evaluation:
    results = []
    for qid, question, expected in _items(system):
        answer = system.ask(qid, question)
        results.append(EvalResult(qid, question, expected, answer.citations, answer.status))
    return Evaluation("live", results, system.min_accuracy)


def run_offline(system: FocusSystem, index: dict[str, Any] | None, mode: str) -> Evaluation:
    """The suite against an index with the server's retriever (no HTTP)."""
    usable = isinstance(index, dict) and index.get("version") == ai_reference.INDEX_VERSION
    results = []
    for qid, question, expected in _items(system):
        if not usable:
            results.append(EvalResult(qid, question, expected, (), 503))
            continue
        assert isinstance(index, dict)
        cited = tuple(doc_id for doc_id, _ in ai_reference.retrieve(index, question))
        results.append(EvalResult(qid, question, expected, cited, 200))
    return Evaluation(mode, results, system.min_accuracy)


def findings(live: Evaluation, reference: Evaluation) -> list[Finding]:
    found: list[Finding] = []
    if not live.results:
        return [Finding("AI_EVAL_EMPTY", "focus.evaluation", "/", HOLD, "no evaluation set")]
    if live.accuracy is None:
        found.append(
            Finding(
                "AI_EVAL_UNAVAILABLE",
                "evaluation suite",
                "/",
                HOLD,
                f"live accuracy {live.accuracy_text()}",
            )
        )
    elif not live.passed:
        found.append(
            Finding(
                "AI_EVAL_ACCURACY_BELOW_MIN",
                "evaluation suite",
                "/accuracy",
                BLOCKING,
                f"live accuracy {live.accuracy_text()}",
            )
        )
    below = live.passed is False
    for result in live.usable:
        if not result.hit:
            found.append(
                Finding(
                    "AI_EVAL_MISS",
                    result.qid,
                    "/citations",
                    BLOCKING if below else INFO,
                    f"expected {result.expected}, cited {', '.join(result.cited) or 'nothing'}",
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
    if reference.passed is False:
        found.append(
            Finding(
                "AI_EVAL_REFERENCE_BELOW_MIN",
                "evaluation suite",
                "/reference",
                BLOCKING,
                "a correct build of the corpus misses too "
                f"({reference.accuracy_text()}): fix the corpus or the evaluation set",
            )
        )
    return found
