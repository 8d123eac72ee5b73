"""Focus Mode's retrieval side, as the running system shows it: health, 503s, the log.

A retrieval outage is judged by what the system answers, never by reading its index
(an index's format is the system's own business):

- `AI_FOCUS_503`                 evaluation questions answered 503 (retrieval unavailable)
- `AI_FOCUS_DISABLED`            HOLD: Focus Mode is switched off, retrieval unproven
- `AI_FOCUS_PROBE_FAILED`        HOLD: no usable answer for another reason
- `AI_HEALTH_RETRIEVAL_DEGRADED` the health endpoint's retrieval component (named by
                                 `focus.health_check`) is not "ok"
- `AI_HEALTH_UNREACHABLE`        HOLD: the health endpoint named in the target is down

The decision log gives the outage over time (for a plot; counts depend on traffic).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from .. import BLOCKING, HOLD, INFO, Finding
from .focus import Answer, LogSample

OK_WORDS = frozenset({"ok", "up", "healthy", "pass", "green"})


def health_ok(value: Any) -> bool:
    if isinstance(value, dict):
        value = value.get("status", value.get("state"))
    return isinstance(value, str) and value.strip().lower() in OK_WORDS


def health_findings(status: int, body: dict[str, Any], component: str | None) -> list[Finding]:
    """The health reply; only the component the target names can decide anything."""
    if status == 0:
        return [Finding("AI_HEALTH_UNREACHABLE", "health", "/", HOLD, "no answer")]
    checks = body.get("checks", {}) if isinstance(body.get("checks"), dict) else {}
    found = []
    if component is not None and not health_ok(checks.get(component)):
        found.append(
            Finding(
                "AI_HEALTH_RETRIEVAL_DEGRADED",
                "health",
                f"/checks/{component}",
                BLOCKING,
                f"{component} {checks.get(component, 'not reported')!r} (HTTP {status})",
            )
        )
    for name in sorted(set(checks) - {component}):
        if not health_ok(checks[name]):
            found.append(
                Finding(
                    "AI_HEALTH_OTHER_DEGRADED",
                    "health",
                    f"/checks/{name}",
                    INFO,
                    f"{name}: {checks[name]} (not retrieval: see the api / infra runbooks)",
                )
            )
    return found


def answer_findings(answers: list[Answer]) -> list[Finding]:
    """Focus Mode's answers to the evaluation questions: 503s are the outage."""
    total = len(answers)
    no_index = [a.label for a in answers if a.index_unavailable]
    disabled = [a.label for a in answers if a.disabled]
    failed = [
        a.label
        for a in answers
        if not a.answered
        and not a.blocked_by_gate
        and not a.withheld_uncited
        and a.label not in no_index + disabled
    ]
    found = []
    if no_index:
        found.append(
            Finding(
                "AI_FOCUS_503",
                "focus.url",
                "/",
                BLOCKING,
                f"{len(no_index)} of {total} questions answered 503 (retrieval unavailable)",
            )
        )
    if disabled:
        found.append(
            Finding(
                "AI_FOCUS_DISABLED",
                "focus.url",
                "/",
                HOLD,
                f"{len(disabled)} of {total} questions: Focus Mode is disabled by the operators",
            )
        )
    if failed:
        found.append(
            Finding(
                "AI_FOCUS_PROBE_FAILED",
                "focus.url",
                "/",
                HOLD,
                f"{len(failed)} of {total} questions got no usable answer",
            )
        )
    return found


def log_timeline(sample: LogSample | None) -> list[dict[str, Any]]:
    """Decisions per second from the decision log: answered vs failed (error logged)."""
    counts: Counter[tuple[dt.datetime, str]] = Counter()
    for entry in sample.entries if sample else []:
        try:
            when = dt.datetime.fromisoformat(entry.time.replace("Z", "+00:00"))
        except ValueError:
            continue
        counts[(when, "answered" if entry.answered else "failed")] += 1
    return [
        {"time": when, "outcome": outcome, "requests": n}
        for (when, outcome), n in sorted(counts.items())
    ]
