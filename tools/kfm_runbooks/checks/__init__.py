"""Reusable check code that runbook cells call, one module per domain.

Checks are pure functions over a target: they read, they never change anything.
State-changing helpers (quarantine, restore) are separate functions that runbooks only
call through the recorder's apply gate. Everything here is imported inside the kernel,
so it keeps to the standard library and PyYAML.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

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


# --- undo operations -------------------------------------------------------------------
# A state-changing step records how to undo itself as {"op": name, "args": {...}}; the
# `kfm-runbook rollback` command looks the op up here and runs it through the same
# apply gate and evidence trail. Only registered functions can ever be called this way.

UndoFn = Callable[..., dict[str, Any]]
UNDO_OPS: dict[str, UndoFn] = {}


def undoable(name: str) -> Callable[[UndoFn], UndoFn]:
    def register(function: UndoFn) -> UndoFn:
        UNDO_OPS[name] = function
        return function

    return register


def undo_op(name: str) -> UndoFn:
    """The registered undo function `<module>.<op>` (imports checks/<module>.py)."""
    import importlib

    module = name.split(".", 1)[0]
    if not module.isidentifier():
        raise KeyError(name)
    importlib.import_module(f"{__name__}.{module}")
    return UNDO_OPS[name]


EFFECT_KEYS = (
    "restored",
    "reinstated",
    "republished",
    "withdrawn",
    "resumed",
    "released",
    "cleared",
    "removed",
    "dropped",
    "reinstalled",
    "lifted",
    "frozen",
    "deleted",
    "deleted_nodes",
    "deleted_rels",
)


def undo_effect(result: Any) -> bool | None:
    """Whether an undo operation changed anything, as its result says: `changed`, else the
    effects it reports (`restored`, `dropped`, `removed`, ...: a change when any is true,
    non-zero or non-empty, a no-op when all are not), else `previous` against `value` /
    `now`. None when the result does not say."""
    if not isinstance(result, dict):
        return None
    if isinstance(result.get("changed"), bool):
        return bool(result["changed"])
    effects = [result[key] for key in EFFECT_KEYS if key in result]
    if effects:
        return any(v.strip() if isinstance(v, str) else v for v in effects)
    for key in ("value", "now"):
        if key in result and "previous" in result:
            return bool(result[key] != result["previous"])
    return None
