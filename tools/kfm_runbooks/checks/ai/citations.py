"""Focus Mode's "citations required" policy, checked on the running system.

KFM's policy: an answer that rests on KFM data cites it, and every citation resolves to a
document of the retrieval corpus or an item of the catalog. Three views of it:

- the policy switch: state/flags.json `citations_required` against the reference
  (live/config.json) — `AI_CITATIONS_POLICY_OFF`;
- answers to questions asked now (the evaluation set, whose questions all rest on a
  dataset): answered without a citation — `AI_ANSWER_UNCITED`; citing an id that is
  neither in the corpus nor in the catalog — `AI_CITATION_UNKNOWN_ID`;
- the decision log (logs/focus.jsonl), sampled: the same two codes, one finding per
  client. A logged answer without citations is a violation only when a correct index
  would have cited something for its question (otherwise it was an honest "no dataset
  matches", which needs no citation).

Withheld answers (the policy gate `block_uncited_answers` refusing an uncited answer) are
the containment working: `AI_ANSWER_WITHHELD`, info. When the API cannot be asked or
Focus Mode is disabled, nothing can be proven: `AI_FOCUS_UNREACHABLE` /
`AI_FOCUS_DISABLED` (HOLD).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .. import BLOCKING, HOLD, INFO, Finding
from .focus import Answer, FocusSystem, LogSample

POLICY_CODES = frozenset({"AI_CITATIONS_POLICY_OFF"})
ANSWER_CODES = frozenset({"AI_ANSWER_UNCITED", "AI_CITATION_UNKNOWN_ID"})
FLAGS = "state/flags.json"


@dataclass(frozen=True)
class KnownIds:
    corpus: frozenset[str]
    catalog: frozenset[str] | None  # None: the catalog API could not be read

    def __contains__(self, item: object) -> bool:
        return item in self.corpus or (self.catalog is not None and item in self.catalog)


def known_ids(system: FocusSystem) -> KnownIds:
    catalog = system.catalog_ids()
    return KnownIds(frozenset(system.corpus_ids), None if catalog is None else frozenset(catalog))


def policy_findings(system: FocusSystem) -> list[Finding]:
    """The policy switches in the running state against the reference."""
    findings = []
    if system.flag("citations_required") != system.reference_flag("citations_required"):
        findings.append(
            Finding(
                "AI_CITATIONS_POLICY_OFF",
                FLAGS,
                "/citations_required",
                BLOCKING,
                "the running system does not require citations (reference: required)",
            )
        )
    if system.flag("block_uncited_answers"):
        findings.append(
            Finding(
                "AI_UNCITED_ANSWERS_BLOCKED",
                FLAGS,
                "/block_uncited_answers",
                INFO,
                "the policy gate withholds uncited answers (containment is on)",
            )
        )
    return findings


def ask_evaluation(system: FocusSystem) -> list[Answer]:
    """Ask every evaluation question (each rests on a dataset, so it must be cited)."""
    return [
        system.ask(f"eval-{n}", str(item.get("question", "")))
        for n, item in enumerate(system.evaluation, 1)
    ]


def answer_findings(answers: list[Answer], ids: KnownIds) -> list[Finding]:
    findings = []
    for answer in answers:
        subject = f"probe {answer.label}"
        if answer.status == 0:
            findings.append(
                Finding("AI_FOCUS_UNREACHABLE", subject, "/", HOLD, "the API did not answer")
            )
        elif answer.disabled:
            findings.append(
                Finding("AI_FOCUS_DISABLED", subject, "/", HOLD, "Focus Mode is disabled")
            )
        elif answer.withheld_uncited:
            findings.append(
                Finding(
                    "AI_ANSWER_WITHHELD",
                    subject,
                    "/",
                    INFO,
                    "the policy gate withheld an uncited answer",
                )
            )
        elif answer.answered and not answer.citations:
            findings.append(
                Finding(
                    "AI_ANSWER_UNCITED",
                    subject,
                    "/citations",
                    BLOCKING,
                    "answered from KFM data without citing it",
                )
            )
        elif not answer.answered and not answer.blocked_by_gate:
            findings.append(
                Finding(
                    "AI_FOCUS_PROBE_FAILED",
                    subject,
                    "/",
                    HOLD,
                    f"HTTP {answer.status}: {answer.error or 'no answer'}",
                )
            )
        for cited in answer.citations:
            if cited not in ids:
                findings.append(
                    Finding(
                        "AI_CITATION_UNKNOWN_ID",
                        subject,
                        "/citations",
                        BLOCKING,
                        f"cites {cited!r}, which is in neither the corpus nor the catalog",
                    )
                )
    return findings


@dataclass(frozen=True)
class LogReview:
    entries: int  # sampled entries from other clients (the probes are judged live)
    probe_entries: int
    uncited: dict[str, list[str]]  # client -> question hashes answered without citations
    unknown: dict[str, list[str]]  # client -> unknown ids cited
    findings: list[Finding]

    def rows(self) -> list[dict[str, Any]]:
        clients = sorted(set(self.uncited) | set(self.unknown))
        return [
            {
                "client": client,
                "uncited_answers": len(self.uncited.get(client, [])),
                "unknown_ids": sorted(set(self.unknown.get(client, []))),
            }
            for client in clients
        ]


def review_log(system: FocusSystem, sample: LogSample, ids: KnownIds) -> LogReview:
    """Uncited answers and unknown citations in the sampled decision log, per client."""
    findings: list[Finding] = []
    if sample.missing:
        findings.append(
            Finding(
                "AI_FOCUS_LOG_MISSING",
                "logs/focus.jsonl",
                "/",
                HOLD,
                "no decision log: past answers cannot be reviewed",
            )
        )
    if sample.malformed:
        findings.append(
            Finding(
                "AI_FOCUS_LOG_MALFORMED",
                "logs/focus.jsonl",
                "/",
                HOLD,
                f"{sample.malformed} line(s) could not be read",
            )
        )
    uncited: dict[str, list[str]] = defaultdict(list)
    unknown: dict[str, list[str]] = defaultdict(list)
    others = [e for e in sample.entries if not e.probe]
    for entry in others:
        if entry.answered and not entry.citations and system.expected_docs(entry.question):
            uncited[entry.client].append(entry.question_sha256 or f"line {entry.line}")
        unknown[entry.client].extend(c for c in entry.citations if c not in ids)
    unknown = defaultdict(list, {k: v for k, v in unknown.items() if v})
    for client in sorted(uncited):
        hashes = sorted(set(uncited[client]))
        findings.append(
            Finding(
                "AI_ANSWER_UNCITED",
                f"client {client}",
                "/citations",
                BLOCKING,
                f"{len(uncited[client])} logged answer(s) without citations "
                f"(questions {', '.join(hashes[:5])}{' …' if len(hashes) > 5 else ''})",
            )
        )
    for client in sorted(unknown):
        findings.append(
            Finding(
                "AI_CITATION_UNKNOWN_ID",
                f"client {client}",
                "/citations",
                BLOCKING,
                f"logged answers cite unknown id(s): {', '.join(sorted(set(unknown[client])))}",
            )
        )
    return LogReview(
        len(others),
        len(sample.entries) - len(others),
        dict(uncited),
        dict(unknown),
        findings,
    )


def logged(sample: LogSample, answers: list[Answer]) -> list[str]:
    """Probe questions that did not reach the decision log (empty: all were logged)."""
    seen = {(e.question, e.citations) for e in sample.entries if e.probe}
    return [
        a.label
        for a in answers
        if a.status in (200, 422, 503) and (a.question[:200], a.citations) not in seen
    ]
