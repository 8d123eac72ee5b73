"""Read-side views of an incident for operators: what `incident show` prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .history import History
from .recovery import refuse_damaged
from .workspace import open_workspace


def incident_summary(incident_id: str, root: str | Path | None = None) -> dict[str, Any]:
    """The incident record, its runs (from the ledger) and the ledger head."""
    workspace = open_workspace(incident_id, root)
    refuse_damaged(workspace)
    record = workspace.load()
    history = History.read(workspace)
    runs = [
        {
            "run_id": e["data"].get("run_id"),
            "runbook": (e["data"].get("runbook") or {}).get("id"),
            "outcome": e["data"].get("outcome"),
            "ended": e["data"].get("ended"),
            "actor": e.get("actor"),
        }
        for e in history.runs
    ]
    from .comms import overdue

    return {
        "incident": record.model_dump(mode="json"),
        "integrity_flags": history.open_flags,
        "update_overdue": overdue(incident_id, root),
        "path": str(workspace.path),
        "runs": runs,
        "ledger_entries": len(history.entries),
        "ledger_head": history.head,
    }
