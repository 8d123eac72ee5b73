"""The project's vocabulary as StrEnums: finding severity, verdict, check status, run
outcome and ledger kind.

Each value equals the string that was persisted before the enums existed (ledger
entries, checks.md, scraps, findings), so old workspaces read the same and new ones
write the same bytes. A member *is* that string: it compares, hashes, formats, JSON-
encodes and even `repr`s as the plain value, so notebook outputs are unchanged. Light:
standard library only (the in-kernel recorder imports it).
"""

from __future__ import annotations

from enum import StrEnum


class _Word(StrEnum):
    def __repr__(self) -> str:
        return repr(self.value)


class Severity(_Word):
    """How bad a finding is: blocking fails a check, hold withholds a PASS, info informs."""

    BLOCKING = "blocking"
    HOLD = "hold"
    INFO = "info"


class Verdict(_Word):
    """KFM's fail-closed verdict of a judged item: ERROR > FAIL > HOLD > PASS."""

    PASS = "PASS"  # noqa: S105 (a verdict, not a password)
    HOLD = "HOLD"
    FAIL = "FAIL"
    ERROR = "ERROR"


class CheckStatus(_Word):
    """A verification check's status as `run.check(...)` records it."""

    PASS = "PASS"  # noqa: S105 (a verdict, not a password)
    FAIL = "FAIL"
    HOLD = "HOLD"


class RunOutcome(_Word):
    """How a run ended, as the ledger's run entry records it."""

    PASSED = "passed"
    FAILED = "failed"
    HOLD = "hold"
    UNVERIFIED = "unverified"
    ERRORED = "errored"
    TIMEOUT = "timeout"
    KERNEL_DIED = "kernel-died"
    INTERRUPTED = "interrupted"
    ABORTED = "aborted"


class LedgerKind(_Word):
    """The `kind` of a ledger entry (persisted: never rename a value)."""

    INCIDENT_OPENED = "incident.opened"
    INCIDENT_RESOLVED = "incident.resolved"
    RUN_STARTED = "run.started"
    RUN = "run"
    SESSION_OPENED = "session.opened"
    SESSION_SEALED = "session.sealed"
    ACTION = "action"
    ROLLBACK = "rollback"
    CHECK = "check"
    FINDING = "finding"
    CODE = "code"  # the code a kernel ran: version, Python, environment, module digests
    CONNECTIONS = "connections"  # hosts a run connected to (HTTP, PostgreSQL, TLS, commands)
    EVIDENCE = "evidence"
    STATUS = "status"
    SEVERITY = "severity"
    ASSIGN = "assign"
    NOTES = "notes"
    COMMS_UPDATE = "comms.update"
    POSTMORTEM = "postmortem"
    REPORT = "report"
    INTEGRITY_FLAGGED = "integrity.flagged"
    INTEGRITY_CLEARED = "integrity.cleared"
    GATE_WAIVED = "gate.waived"
    FIX_ABANDONED = "fix.abandoned"  # a PR-first fix that will not be merged, and why
    PUBLISH_INTENT = "publish.intent"
    PUBLISH_TORN = "publish.torn"
    RECOVERED = "recovered"
