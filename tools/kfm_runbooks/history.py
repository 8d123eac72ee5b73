"""What happened in an incident, read back from its ledger (facts only, each with its entry).

Comms updates, postmortems, the resolve gate, `incident show` and the report all read the
same views, so they never disagree about what ran, what changed and what was rolled back.
"""

from __future__ import annotations

import datetime as dt
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


def describe(entry: dict[str, Any]) -> str:
    """One factual line for an entry (postmortem timeline, report)."""
    data = entry.get("data", {})
    kind = entry.get("kind")
    if kind == LedgerKind.INCIDENT_OPENED:
        return f"incident declared: {data.get('title')} ({data.get('severity')})"
    if kind in RUN_KINDS:
        runbook = (data.get("runbook") or {}).get("id")
        what = "session sealed" if kind == LedgerKind.SESSION_SEALED else "run"
        return (
            f"{what} {data.get('run_id')} {runbook} → {data.get('outcome')} ({data.get('detail')})"
        )
    if kind == LedgerKind.ACTION:
        state = "applied" if data.get("ok") else f"FAILED ({data.get('error')})"
        return f"action {data.get('action_id')} {state}: {data.get('title')}"
    if kind == LedgerKind.ROLLBACK:
        return f"rollback of {data.get('action_id')}: {data.get('title')}"
    if kind == LedgerKind.STATUS:
        return f"status {data.get('from')} → {data.get('to')}: {data.get('note')}"
    if kind == LedgerKind.SEVERITY:
        return f"severity {data.get('from')} → {data.get('to')}: {data.get('reason')}"
    if kind == LedgerKind.ASSIGN:
        return f"{data.get('role')}: {data.get('from') or '-'} → {data.get('to')}"
    if kind == LedgerKind.NOTES:
        return "; ".join(
            f"{k.replace('_', ' ')}: {v}"
            for k, v in data.items()
            if k not in ("incident_yaml_sha256", "record")
        )
    if kind == LedgerKind.FINDING:
        return f"finding {data.get('code')} on {data.get('subject')} (run {data.get('run_id')})"
    if kind == LedgerKind.CHECK:
        return f"check {data.get('name')} {data.get('status')} (run {data.get('run_id')})"
    if kind == LedgerKind.EVIDENCE:
        return f"evidence saved: {data.get('path')}"
    if kind == LedgerKind.INTEGRITY_FLAGGED:
        return f"integrity unproven ({data.get('source')}): {data.get('reason')}"
    if kind == LedgerKind.INTEGRITY_CLEARED:
        return f"integrity proven again ({data.get('source')})"
    if kind == LedgerKind.COMMS_UPDATE:
        return f"{data.get('audience')} update published (next due {data.get('next_update_due')})"
    if kind == LedgerKind.SESSION_OPENED:
        return f"session {data.get('session_id')} opened for {data.get('runbook', {}).get('id')}"
    if kind == LedgerKind.POSTMORTEM:
        return "postmortem drafted"
    if kind == LedgerKind.INCIDENT_RESOLVED:
        return "incident resolved"
    if kind == RUN_STARTED:
        mode = "APPLY" if data.get("apply") else "read-only"
        runbook = (data.get("runbook") or {}).get("id")
        return f"run {data.get('run_id')} {runbook} started ({mode})"
    if kind == LedgerKind.GATE_WAIVED:
        return f"{data.get('runbook')}'s FAIL/HOLD waived for resolve: {data.get('reason')}"
    if kind == LedgerKind.PUBLISH_TORN:
        return f"publication torn by a kill: lost {', '.join(data.get('lost') or [])}"
    if kind == LedgerKind.RECOVERED:
        return "leftovers of killed runs removed (recovery)"
    if kind == LedgerKind.REPORT:
        return f"report written: {data.get('path')}"
    return str(kind)
