"""Reusable check code that runbook cells call, one module per domain.

Checks are pure functions over a target: they read, they never change anything.
State-changing helpers (quarantine, restore) are separate functions that runbooks only
call through the recorder's apply gate. Everything here is imported inside the kernel,
so it keeps to the standard library and PyYAML.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# The persisted undo-op table and its resolver live in checks/undo.py; re-exported here for
# the modules that mark their undo functions with `@undoable(name)`.
from .undo import UNDO_OPS, UndoFn, UnknownUndoOpError, undo_effect, undo_op, undoable

__all__ = [
    "BLOCKING",
    "HOLD",
    "INFO",
    "UNDO_OPS",
    "Finding",
    "UndoFn",
    "UnknownUndoOpError",
    "undo_effect",
    "undo_op",
    "undoable",
    "verdict",
]


from ..vocab import Severity, Verdict

# The severities by their old names (the values persisted in findings are unchanged).
BLOCKING = Severity.BLOCKING
HOLD = Severity.HOLD
INFO = Severity.INFO


@dataclass(frozen=True, order=True)
class Finding:
    """One fact a check established: a stable code, where, and how bad."""

    code: str
    subject: str
    field: str = "/"
    severity: str = BLOCKING
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "severity": str(self.severity)}


def verdict(findings: list[Finding], error_codes: frozenset[str] = frozenset()) -> Verdict:
    """KFM's fail-closed verdict: ERROR > FAIL (blocking) > HOLD > PASS."""
    if any(item.code in error_codes for item in findings):
        return Verdict.ERROR
    if any(item.severity == BLOCKING for item in findings):
        return Verdict.FAIL
    if any(item.severity == HOLD for item in findings):
        return Verdict.HOLD
    return Verdict.PASS
