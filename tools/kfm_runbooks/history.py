"""What happened in an incident, read back from its ledger (facts only, each with its entry).

Comms updates, postmortems, the resolve gate, `incident show` and the report all read the
same views, so they never disagree about what ran, what changed and what was rolled back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import ledger
from ._time import parse_iso
from .layout import Workspace
from .vocab import LedgerKind

RUN_KINDS = ("run", "session.sealed")
RUN_STARTED = LedgerKind.RUN_STARTED
# Entries a human timeline leaves out: summarised per run, or bookkeeping of a publication.
DETAIL_KINDS = ("finding", "check", "cell", "code", "publish.intent")


@dataclass(frozen=True)
class History:
    entries: list[dict[str, Any]]
    problems: list[str]

    @classmethod
    def read(cls, workspace: Workspace) -> History:
        """The ledger's entries; DamagedError (pointing to `verify`) when it does not verify:
        no view is ever built on a damaged or edited ledger."""
        return cls(ledger.read_valid(workspace.ledger), [])

    @property
    def head(self) -> str | None:
        return str(self.entries[-1]["hash"]) if self.entries else None

    def of(self, *kinds: str) -> list[dict[str, Any]]:
        return [e for e in self.entries if e.get("kind") in kinds]

    @property
    def runs(self) -> list[dict[str, Any]]:
        """Headless runs and sealed JupyterLab sessions, in ledger order."""
        return self.of(*RUN_KINDS)

    @property
    def open_runs(self) -> list[dict[str, Any]]:
        """`run.started` entries whose run was never sealed (running, or its runner died)."""
        ended = {
            str(e["data"].get("run_id"))
            for e in self.entries
            if e.get("kind") in ("run", "publish.torn")
        }
        return [e for e in self.of(RUN_STARTED) if str(e["data"].get("run_id")) not in ended]

    def started_entry(self, run_id: str) -> dict[str, Any] | None:
        """The first entry a runner wrote for `run_id` before its kernel started
        (`run.started` for a headless run, `session.opened` for a JupyterLab session)."""
        for entry in self.entries:
            data = entry["data"]
            if (entry["kind"] == RUN_STARTED and data.get("run_id") == run_id) or (
                entry["kind"] == LedgerKind.SESSION_OPENED and data.get("session_id") == run_id
            ):
                return entry
        return None

    @property
    def applied_actions(self) -> list[dict[str, Any]]:
        return [e for e in self.of("action") if e["data"].get("applied") and e["data"].get("ok")]

    @property
    def rollbacks(self) -> list[dict[str, Any]]:
        return [e for e in self.of("rollback") if e["data"].get("ok")]

    @property
    def rolled_back_ids(self) -> set[str]:
        return {str(e["data"].get("action_id")) for e in self.rollbacks}

    @property
    def last_change_seq(self) -> int | None:
        """Seq of the last entry that changed the target (applied action or rollback)."""
        changes = self.applied_actions + self.rollbacks
        return max((int(e["seq"]) for e in changes), default=None)

    @property
    def last_update_time(self) -> dt.datetime | None:
        updates = self.of("comms.update")
        return parse_iso(updates[-1]["time"]) if updates else None

    @property
    def severities_held(self) -> set[str]:
        held = {str(self.entries[0]["data"].get("severity"))} if self.entries else set()
        held |= {str(e["data"].get("to")) for e in self.of("severity")}
        return held

    @property
    def open_flags(self) -> dict[str, str]:
        """Integrity flags still open: source -> reason (replayed from the ledger)."""
        flags: dict[str, str] = {}
        for entry in self.of("integrity.flagged", "integrity.cleared"):
            source = str(entry["data"].get("source"))
            if entry["kind"] == LedgerKind.INTEGRITY_FLAGGED:
                flags[source] = str(entry["data"].get("reason"))
            else:
                flags.pop(source, None)
        return flags

    @property
    def integrity_ever_flagged(self) -> bool:
        return bool(self.of("integrity.flagged"))


def _run_line(kind: str, d: dict[str, Any]) -> str:
    runbook = (d.get("runbook") or {}).get("id")
    what = "session sealed" if kind == LedgerKind.SESSION_SEALED else "run"
    return f"{what} {d.get('run_id')} {runbook} → {d.get('outcome')} ({d.get('detail')})"


def _action_line(d: dict[str, Any]) -> str:
    state = "applied" if d.get("ok") else f"FAILED ({d.get('error')})"
    if d.get("manual"):
        state = "MANUAL (handed to a human, not done by the run)"
    return f"action {d.get('action_id')} {state}: {d.get('title')}"


def _started_line(d: dict[str, Any]) -> str:
    mode = "APPLY" if d.get("apply") else "read-only"
    return f"run {d.get('run_id')} {(d.get('runbook') or {}).get('id')} started ({mode})"


def _notes_line(d: dict[str, Any]) -> str:
    hidden = ("incident_yaml_sha256", "record")
    return "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in d.items() if k not in hidden)


# ledger kind -> one factual line from the entry's data (kinds not listed: the kind itself)
_LINES: dict[str, Callable[[dict[str, Any]], str]] = {
    LedgerKind.INCIDENT_OPENED: lambda d: (
        f"incident declared: {d.get('title')} ({d.get('severity')})"
    ),
    LedgerKind.RUN: lambda d: _run_line(LedgerKind.RUN, d),
    LedgerKind.SESSION_SEALED: lambda d: _run_line(LedgerKind.SESSION_SEALED, d),
    LedgerKind.ACTION: _action_line,
    LedgerKind.ROLLBACK: lambda d: f"rollback of {d.get('action_id')}: {d.get('title')}",
    LedgerKind.STATUS: lambda d: f"status {d.get('from')} → {d.get('to')}: {d.get('note')}",
    LedgerKind.SEVERITY: lambda d: f"severity {d.get('from')} → {d.get('to')}: {d.get('reason')}",
    LedgerKind.ASSIGN: lambda d: f"{d.get('role')}: {d.get('from') or '-'} → {d.get('to')}",
    LedgerKind.NOTES: _notes_line,
    LedgerKind.FINDING: lambda d: (
        f"finding {d.get('code')} on {d.get('subject')} (run {d.get('run_id')})"
    ),
    LedgerKind.CHECK: lambda d: f"check {d.get('name')} {d.get('status')} (run {d.get('run_id')})",
    LedgerKind.CODE: lambda d: (
        f"code of run {d.get('run_id')}: {d.get('package')} {d.get('version')}, "
        f"{d.get('python')}, {len(d.get('modules') or {})} modules"
    ),
    LedgerKind.CONNECTIONS: lambda d: (
        f"run {d.get('run_id')} connected "
        f"{len(d.get('connections') or []) + (d.get('not_listed') or 0)} time(s): "
        + ", ".join(sorted({str(c.get("where")) for c in d.get("connections") or []})[:3])
    ),
    LedgerKind.FIX_ABANDONED: lambda d: (
        f"PR-first fix {d.get('action_id')} ({d.get('branch')}) abandoned: {d.get('reason')}"
    ),
    LedgerKind.EVIDENCE: lambda d: f"evidence saved: {d.get('path')}",
    LedgerKind.INTEGRITY_FLAGGED: lambda d: (
        f"integrity unproven ({d.get('source')}): {d.get('reason')}"
    ),
    LedgerKind.INTEGRITY_CLEARED: lambda d: f"integrity proven again ({d.get('source')})",
    LedgerKind.COMMS_UPDATE: lambda d: (
        f"{d.get('audience')} update published (next due {d.get('next_update_due')})"
    ),
    LedgerKind.SESSION_OPENED: lambda d: (
        f"session {d.get('session_id')} opened for {d.get('runbook', {}).get('id')}"
    ),
    LedgerKind.POSTMORTEM: lambda d: "postmortem drafted",
    LedgerKind.INCIDENT_RESOLVED: lambda d: "incident resolved",
    LedgerKind.RUN_STARTED: _started_line,
    LedgerKind.GATE_WAIVED: lambda d: (
        f"{d.get('runbook')}'s FAIL/HOLD waived for resolve: {d.get('reason')}"
    ),
    LedgerKind.PUBLISH_TORN: lambda d: (
        f"publication torn by a kill: lost {', '.join(d.get('lost') or [])}"
    ),
    LedgerKind.RECOVERED: lambda d: "leftovers of killed runs removed (recovery)",
    LedgerKind.REPORT: lambda d: f"report written: {d.get('path')}",
}


def describe(entry: dict[str, Any]) -> str:
    """One factual line for an entry (postmortem timeline, report)."""
    kind = entry.get("kind")
    line = _LINES.get(str(kind))
    return line(entry.get("data", {})) if line else str(kind)
