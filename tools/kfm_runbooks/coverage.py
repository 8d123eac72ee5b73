"""Coverage: what a verification check had in scope and what it actually verified.

A check may PASS only when everything in scope was verified and the scope is not empty;
anything else is HOLD (or FAIL when the check found a fault in what it did examine). The
recorder enforces this (`Recorder.check(..., examined=, in_scope=)`), so no runbook has to
write the condition itself, and `kfm-runbook lint` (RB076) flags a verification cell that
records a check without stating its coverage.

Verdict tables (`Recorder.table(..., verdict=COLUMN)`) are judged with `row_status`: a row
whose verdict is not a recognised pass or fail value is HOLD, never PASS.

Imported inside the kernel: standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PASS, FAIL, HOLD = "PASS", "FAIL", "HOLD"
_PASS_VALUES = frozenset({"pass", "ok", "allow", "online", "match", "reproduced"})
_FAIL_VALUES = frozenset({"fail", "error", "deny", "mismatch", "failed"})


@dataclass(frozen=True)
class Coverage:
    """`examined` of `in_scope` things (`unit`) were verified (judged good or bad)."""

    examined: int
    in_scope: int
    unit: str = "items"

    def __post_init__(self) -> None:
        for name in ("examined", "in_scope"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"coverage {name} must be a count (int >= 0), not {value!r}")
        if self.examined > self.in_scope:
            raise ValueError(
                f"coverage says {self.examined} examined of only {self.in_scope} in scope: "
                "count what was in scope, then what of it was verified"
            )
        if not isinstance(self.unit, str) or not self.unit.strip():
            raise ValueError("coverage unit must name what was counted (e.g. 'assets')")

    @property
    def complete(self) -> bool:
        """Everything in scope was verified, and there was something in scope."""
        return self.in_scope > 0 and self.examined == self.in_scope

    @property
    def gap(self) -> str:
        """Why this coverage cannot carry a PASS ('' when it can)."""
        if self.in_scope == 0:
            return f"nothing in scope (0 {self.unit}): an empty scope is never PASS"
        if self.examined < self.in_scope:
            missing = self.in_scope - self.examined
            return f"{missing} of {self.in_scope} {self.unit} in scope could not be verified"
        return ""

    def text(self) -> str:
        return f"verified {self.examined} of {self.in_scope} {self.unit}"

    def as_dict(self) -> dict[str, Any]:
        return {"examined": self.examined, "in_scope": self.in_scope, "unit": self.unit}


def judge(status: str, coverage: Coverage | None) -> tuple[str, str]:
    """(status, reason): a PASS without complete coverage becomes HOLD with the reason."""
    if status != PASS:
        return status, ""
    if coverage is None:
        return HOLD, "no coverage stated: a PASS must say what it verified (examined / in_scope)"
    if not coverage.complete:
        return HOLD, coverage.gap
    return PASS, ""


def row_status(value: Any) -> str:
    """PASS / FAIL / HOLD of one verdict-table cell (unknown values are HOLD)."""
    if value is True:
        return PASS
    if value is False:
        return FAIL
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _PASS_VALUES:
            return PASS
        if lowered in _FAIL_VALUES:
            return FAIL
    return HOLD
