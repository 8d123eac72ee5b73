"""Focus Mode's "citations required" policy, checked on the running system.

The policy is the file `focus.citation_policy` names (checks/ai/reference.py): whether
answers must cite the data they rest on, extra ids citations may name, and the answers
that are honest abstentions. Citations must resolve to an id the catalog serves
(`focus.catalog_url`), an id of the evaluation set, or one the policy lists. Views:

- answers to questions asked now (the evaluation set, whose questions all rest on a
  dataset): answered without a citation — `AI_ANSWER_UNCITED`; citing an id nobody knows
  — `AI_CITATION_UNKNOWN_ID`; an id that cannot be resolved because the catalog is not
  named or not readable — `AI_CITATION_UNRESOLVED` (HOLD);
- the decision log (`focus.decision_log`), sampled: the same, one finding per client. A
  logged answer without citations is a violation when its question is an evaluation
  question or its logged answer text is not one of the policy's abstentions; when the log
  carries no answer text, an abstention cannot be told apart: `AI_LOGGED_UNCITED_UNVERIFIABLE`
  (HOLD).

Withheld answers (a policy gate refusing an uncited answer) are the containment working:
`AI_ANSWER_WITHHELD`, info. Without a citation policy or an evaluation set nothing can be
proven: `AI_CITATION_POLICY_MISSING` / `AI_EVAL_SET_MISSING` (HOLD).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .. import BLOCKING, HOLD, INFO, Finding
from . import reference as ref
from .focus import Answer, FocusSystem, LogSample

ANSWER_CODES = frozenset({"AI_ANSWER_UNCITED", "AI_CITATION_UNKNOWN_ID"})


@dataclass(frozen=True)
class KnownIds:
    reference: frozenset[str]  # the evaluation set's and the policy's ids
    catalog: frozenset[str] | None  # None: the catalog is not named or not readable
    catalog_note: str = ""

    def __contains__(self, item: object) -> bool:
        return item in self.reference or (self.catalog is not None and item in self.catalog)


def known_ids(system: FocusSystem) -> KnownIds:
    catalog, note = system.catalog_ids()
    ids: set[str] = set()
    if isinstance(system.eval_set, ref.EvalSet):
        ids |= system.eval_set.expected_ids
    if isinstance(system.citation_policy, ref.CitationPolicy):
        ids |= system.citation_policy.known_ids
    return KnownIds(frozenset(ids), catalog, note)


def required(system: FocusSystem) -> bool | None:
    """What the policy says (None: the target names no citation policy)."""
    policy = system.citation_policy
    return policy.citations_required if isinstance(policy, ref.CitationPolicy) else None


def policy_findings(system: FocusSystem) -> list[Finding]:
    """What is missing to judge citations, and what the policy itself says."""
    found = [
        Finding(
            "AI_CITATION_POLICY_MISSING" if m.key.endswith("policy") else "AI_EVAL_SET_MISSING",
            m.key,
            "/",
            HOLD,
            m.message,
        )
        for m in system.missing("citation_policy", "eval_set")
    ]
    if required(system) is False:
        found.append(
            Finding(
                "AI_CITATIONS_NOT_REQUIRED",
                "focus.citation_policy",
                "/citations_required",
                INFO,
                "the citation policy does not require citations: uncited answers are allowed",
            )
        )
    return found


def ask_evaluation(system: FocusSystem) -> list[Answer]:
    """Ask every evaluation question (each rests on a dataset, so it must be cited)."""
    return [system.ask(item.id, item.question) for item in system.questions]


def answer_findings(answers: list[Answer], ids: KnownIds, must_cite: bool = True) -> list[Finding]:
    findings = []
    for answer in answers:
        subject = f"probe {answer.label}"
        if answer.status == 0:
            findings.append(
                Finding("AI_FOCUS_UNREACHABLE", subject, "/", HOLD, "Focus Mode did not answer")
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
        elif answer.answered and not answer.citations and answer.abstained:
            findings.append(
                Finding(
                    "AI_ANSWER_ABSTAINED",
                    subject,
                    "/",
                    INFO,
                    "abstained (a policy abstention needs no citation; see RBK-ai-eval-drift)",
                )
            )
        elif answer.answered and not answer.citations:
            findings.append(
                Finding(
                    "AI_ANSWER_UNCITED",
                    subject,
                    "/citations",
                    BLOCKING if must_cite else INFO,
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
        findings += _resolve(subject, answer.citations, ids)
    return findings


def _resolve(subject: str, citations: tuple[str, ...], ids: KnownIds) -> list[Finding]:
    unknown = sorted({c for c in citations if c not in ids})
    if not unknown:
        return []
    if ids.catalog is None:
        return [
            Finding(
                "AI_CITATION_UNRESOLVED",
                subject,
                "/citations",
                HOLD,
                f"cites {', '.join(unknown)}: not in the evaluation set or the policy, and the "
                f"catalog cannot be asked ({ids.catalog_note})",
            )
        ]
    return [
        Finding(
            "AI_CITATION_UNKNOWN_ID",
            subject,
            "/citations",
            BLOCKING,
            f"cites {cited!r}, which is in neither the catalog nor the reference",
        )
        for cited in unknown
    ]


@dataclass(frozen=True)
class LogReview:
    entries: int  # sampled entries from other clients (the probes are judged live)
    probe_entries: int
    uncited: dict[str, list[str]]  # client -> question hashes answered without citations
    unverifiable: dict[str, int]  # client -> uncited entries without answer text
    unknown: dict[str, list[str]]  # client -> unknown ids cited
    findings: list[Finding]

    def rows(self) -> list[dict[str, Any]]:
        clients = sorted(set(self.uncited) | set(self.unknown) | set(self.unverifiable))
        return [
            {
                "client": client,
                "uncited_answers": len(self.uncited.get(client, [])),
                "unverifiable": self.unverifiable.get(client, 0),
                "unknown_ids": sorted(set(self.unknown.get(client, []))),
            }
            for client in clients
        ]


def log_problems(system: FocusSystem, sample: LogSample | None, what: str) -> list[Finding]:
    if sample is None:
        return [
            Finding(
                "AI_FOCUS_LOG_NOT_NAMED",
                "focus.decision_log",
                "/",
                INFO,
                f"the target names no decision log: {what} not reviewed",
            )
        ]
    found = []
    if sample.missing:
        found.append(
            Finding(
                "AI_FOCUS_LOG_MISSING",
                "focus.decision_log",
                "/",
                HOLD,
                f"{system.log_path()} is missing or not a regular file: {what} not reviewed",
            )
        )
    if sample.malformed:
        found.append(
            Finding(
                "AI_FOCUS_LOG_MALFORMED",
                "focus.decision_log",
                "/",
                HOLD,
                f"{sample.malformed} line(s) could not be read",
            )
        )
    return found


def review_log(system: FocusSystem, sample: LogSample | None, ids: KnownIds) -> LogReview:
    """Uncited answers and unknown citations in the sampled decision log, per client."""
    findings = log_problems(system, sample, "past answers")
    policy = system.citation_policy
    eval_questions = {item.question for item in system.questions}
    uncited: dict[str, list[str]] = defaultdict(list)
    unverifiable: dict[str, int] = defaultdict(int)
    unknown: dict[str, list[str]] = defaultdict(list)
    entries = sample.entries if sample else []
    others = [e for e in entries if not e.probe]
    must_cite = required(system) is not False
    for entry in others:
        if must_cite and entry.answered and not entry.citations:
            key = entry.question_sha256 or f"line {entry.line}"
            if entry.question in eval_questions:
                uncited[entry.client].append(key)
            elif entry.answer is None:
                unverifiable[entry.client] += 1
            elif not (isinstance(policy, ref.CitationPolicy) and policy.abstained(entry.answer)):
                uncited[entry.client].append(key)
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
    for client in sorted(unverifiable):
        findings.append(
            Finding(
                "AI_LOGGED_UNCITED_UNVERIFIABLE",
                f"client {client}",
                "/citations",
                HOLD,
                f"{unverifiable[client]} logged answer(s) without citations; the log carries no "
                "answer text, so an abstention cannot be told from an uncited answer",
            )
        )
    for client in sorted(unknown):
        resolved = ids.catalog is not None
        findings.append(
            Finding(
                "AI_CITATION_UNKNOWN_ID" if resolved else "AI_CITATION_UNRESOLVED",
                f"client {client}",
                "/citations",
                BLOCKING if resolved else HOLD,
                f"logged answers cite {'unknown' if resolved else 'unresolvable'} id(s): "
                f"{', '.join(sorted(set(unknown[client])))}",
            )
        )
    return LogReview(
        len(others),
        len(entries) - len(others),
        dict(uncited),
        dict(unverifiable),
        dict(unknown),
        findings,
    )


def logged(sample: LogSample | None, answers: list[Answer]) -> list[str] | None:
    """Probe questions that did not reach the decision log (None: no log named)."""
    if sample is None:
        return None
    seen = {(e.question[:200], e.citations) for e in sample.entries if e.probe}
    return [
        a.label
        for a in answers
        if a.status in (200, 422, 503) and (a.question[:200], a.citations) not in seen
    ]
