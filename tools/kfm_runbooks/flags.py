"""Integrity flags: raised when integrity or provenance could not be proven, cleared when
it is proven again (`integrity.flagged` / `integrity.cleared` ledger entries).

Raised by a HOLD run (seal), a failed `verify --record`, recovery; the lifecycle refuses to
lower severity or resolve while one is open (lifecycle.py, resolve.py).
"""

from __future__ import annotations

from typing import Any

from .history import History
from .layout import TIMELINE, Workspace, timeline_line
from .vocab import LedgerKind


def flag_locked(
    workspace: Workspace, source: str, reason: str | None, actor: str
) -> dict[str, Any] | None:
    """Raise (reason given) or clear (reason None) the integrity flag of `source`.

    Ledger + timeline only; returns the new entry, or None when nothing changed. Lock held.
    """
    current = History.read(workspace).open_flags.get(source)
    if reason is None:
        if current is None:
            return None
        line = f"integrity proven again: {source} (by {actor})"
        return workspace.record(
            LedgerKind.INTEGRITY_CLEARED, {"source": source}, actor, {TIMELINE: timeline_line(line)}
        )
    if current == reason:
        return None
    line = f"⚠ integrity unproven ({source}): {reason} — severity cannot be lowered until proven"
    return workspace.record(
        LedgerKind.INTEGRITY_FLAGGED,
        {"source": source, "reason": reason},
        actor,
        {TIMELINE: timeline_line(line)},
    )
