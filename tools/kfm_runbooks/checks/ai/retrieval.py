"""Focus Mode's retrieval side: the index file against the corpus, /health, 503s.

The retrieval index (state/focus_index.json) is what Focus Mode answers from; the
reference corpus (live/config.json `focus.corpus`) is what it must be built from. Its
status, compared with a correct build (`checks/ai/reference.build_index`):

- `AI_INDEX_MISSING`           no index file (Focus Mode answers 503)
- `AI_INDEX_UNREADABLE`        not JSON, or not an object
- `AI_INDEX_VERSION_MISMATCH`  a version the server does not serve (503)
- `AI_INDEX_CORPUS_MISMATCH`   its corpus_sha256 is not the reference corpus's
- `AI_INDEX_DOCS_MISMATCH`     its documents are not the corpus's documents
- `AI_INDEX_WEIGHTS_DRIFT`     built with other weights than "overlap" (answers cite the
                               wrong data: see RBK-ai-eval-drift)

Symptoms on the running system: /health's `retrieval` check (`AI_HEALTH_RETRIEVAL_DEGRADED`)
and Focus Mode answering 503 "retrieval index unavailable" (`AI_FOCUS_503`); the access
log gives the 503s over time (for a plot; counts there depend on traffic).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .. import BLOCKING, HOLD, INFO, Finding
from . import reference as ai_reference
from .focus import Answer, FocusSystem

INDEX = "state/focus_index.json"
AVAILABILITY = frozenset({"AI_INDEX_MISSING", "AI_INDEX_UNREADABLE", "AI_INDEX_VERSION_MISMATCH"})
CONTENT = frozenset({"AI_INDEX_CORPUS_MISMATCH", "AI_INDEX_DOCS_MISMATCH"})
WEIGHTS = frozenset({"AI_INDEX_WEIGHTS_DRIFT"})


@dataclass(frozen=True)
class IndexStatus:
    present: bool
    readable: bool
    version: Any
    weights: Any
    corpus_sha256: Any
    docs: tuple[str, ...]
    file_sha256: str | None
    expected_version: int
    expected_corpus_sha256: str
    expected_docs: tuple[str, ...]
    matches_build: bool  # byte-for-byte what a correct build writes

    def findings(self, weights_severity: str = BLOCKING) -> list[Finding]:
        if not self.present:
            return [
                Finding("AI_INDEX_MISSING", INDEX, "/", BLOCKING, "the retrieval index is gone")
            ]
        if not self.readable:
            return [
                Finding("AI_INDEX_UNREADABLE", INDEX, "/", BLOCKING, "not a JSON object: unusable")
            ]
        found = []
        if self.version != self.expected_version:
            found.append(
                Finding(
                    "AI_INDEX_VERSION_MISMATCH",
                    INDEX,
                    "/version",
                    BLOCKING,
                    f"version {self.version!r}, the server serves {self.expected_version}",
                )
            )
        if self.corpus_sha256 != self.expected_corpus_sha256:
            found.append(
                Finding(
                    "AI_INDEX_CORPUS_MISMATCH",
                    INDEX,
                    "/corpus_sha256",
                    BLOCKING,
                    "built from another corpus than the reference "
                    f"({str(self.corpus_sha256)[:12]}… vs {self.expected_corpus_sha256[:12]}…)",
                )
            )
        if self.docs != self.expected_docs:
            missing = sorted(set(self.expected_docs) - set(self.docs))
            extra = sorted(set(self.docs) - set(self.expected_docs))
            found.append(
                Finding(
                    "AI_INDEX_DOCS_MISMATCH",
                    INDEX,
                    "/docs",
                    BLOCKING,
                    f"missing {missing or '-'}, not in the corpus {extra or '-'}",
                )
            )
        if self.weights != "overlap":
            found.append(
                Finding(
                    "AI_INDEX_WEIGHTS_DRIFT",
                    INDEX,
                    "/weights",
                    weights_severity,
                    f"built with weights {self.weights!r} (correct: 'overlap')",
                )
            )
        return found

    @property
    def needs_rebuild_for_availability(self) -> bool:
        """Missing, unreadable, unservable, or not built from the reference corpus."""
        codes = {f.code for f in self.findings()}
        return bool(codes & (AVAILABILITY | CONTENT))

    def as_dict(self) -> dict[str, Any]:
        return {
            "present": self.present,
            "readable": self.readable,
            "version": self.version,
            "weights": self.weights,
            "corpus_sha256": self.corpus_sha256,
            "expected_corpus_sha256": self.expected_corpus_sha256,
            "docs": list(self.docs),
            "file_sha256": self.file_sha256,
            "matches_build": self.matches_build,
        }


def index_status(system: FocusSystem) -> IndexStatus:
    expected = system.expected_index()
    raw = system.index_bytes()
    value: Any = None
    if raw is not None:
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            value = None
    readable = isinstance(value, dict)
    index = value if isinstance(value, dict) else {}
    docs = index.get("docs")
    return IndexStatus(
        present=raw is not None,
        readable=readable,
        version=index.get("version"),
        weights=index.get("weights"),
        corpus_sha256=index.get("corpus_sha256"),
        docs=tuple(sorted(str(d) for d in docs)) if isinstance(docs, dict) else (),
        file_sha256=None if raw is None else hashlib.sha256(raw).hexdigest(),
        expected_version=ai_reference.INDEX_VERSION,
        expected_corpus_sha256=str(expected["corpus_sha256"]),
        expected_docs=tuple(sorted(expected["docs"])),
        matches_build=readable and index == expected,
    )


def health_findings(status: int, body: dict[str, Any]) -> list[Finding]:
    if status == 0:
        return [Finding("AI_HEALTH_UNREACHABLE", "GET /health", "/", HOLD, "no answer")]
    checks = body.get("checks", {}) if isinstance(body.get("checks"), dict) else {}
    found = []
    if checks.get("retrieval") != "ok":
        found.append(
            Finding(
                "AI_HEALTH_RETRIEVAL_DEGRADED",
                "GET /health",
                "/checks/retrieval",
                BLOCKING,
                f"retrieval {checks.get('retrieval', 'not reported')!r} (HTTP {status})",
            )
        )
    for name in sorted(set(checks) - {"retrieval"}):
        if checks[name] != "ok":
            found.append(
                Finding(
                    "AI_HEALTH_OTHER_DEGRADED",
                    "GET /health",
                    f"/checks/{name}",
                    INFO,
                    f"{name}: {checks[name]} (not retrieval: see the api / infra runbooks)",
                )
            )
    return found


def answer_findings(answers: list[Answer]) -> list[Finding]:
    """Focus Mode's answers to the probe questions: 503s are the outage."""
    total = len(answers)
    no_index = [a.label for a in answers if a.index_unavailable]
    disabled = [a.label for a in answers if a.disabled]
    failed = [
        a.label
        for a in answers
        if a.status not in (200, 422) and a.label not in no_index + disabled
    ]
    found = []
    if no_index:
        found.append(
            Finding(
                "AI_FOCUS_503",
                "POST /api/v1/focus",
                "/",
                BLOCKING,
                f"{len(no_index)} of {total} questions answered 503 'retrieval index unavailable'",
            )
        )
    if disabled:
        found.append(
            Finding(
                "AI_FOCUS_DISABLED",
                "POST /api/v1/focus",
                "/",
                HOLD,
                f"{len(disabled)} of {total} questions: Focus Mode is disabled by the operators",
            )
        )
    if failed:
        found.append(
            Finding(
                "AI_FOCUS_PROBE_FAILED",
                "POST /api/v1/focus",
                "/",
                HOLD,
                f"{len(failed)} of {total} questions got no usable answer",
            )
        )
    return found


def focus_timeline(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Focus Mode requests per second and status, from parsed access-log rows."""
    counts: Counter[tuple[dt.datetime, int]] = Counter()
    for row in rows:
        if row.get("path") != "/api/v1/focus":
            continue
        try:
            when = dt.datetime.strptime(str(row.get("time")), "%d/%b/%Y:%H:%M:%S %z")
        except ValueError:
            continue
        counts[(when, int(row.get("status", 0)))] += 1
    return [
        {"time": when, "status": status, "requests": n}
        for (when, status), n in sorted(counts.items())
    ]
