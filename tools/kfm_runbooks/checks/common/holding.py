"""The reversible hold: a record `{by, at, reason}` placed under a key of a control
document, and lifted by the undo. Persisted shapes are the targets' own (a fetcher reads
`sources[x].hold`, a promotion gate `holds[output]`, a release folder its markers): this
module only decides what a hold record is and whether one is in place, so that every
hold is idempotent the same way. Undo-op names and their arguments live with the domains.

Not the same operation (left in their domains): `catalog_withdraw` moves the record's
bytes into a holding folder and back; the UI withdrawals edit a published registry.
"""

from __future__ import annotations

from typing import Any

from ..._time import now_iso


def record(incident: str, reason: str) -> dict[str, Any]:
    """What a hold says: who (the incident), when (UTC), why."""
    return {"by": incident, "at": now_iso(), "reason": reason}


def is_held(value: Any) -> bool:
    """A hold is in place when its slot holds a record (a mapping), whatever else is there."""
    return isinstance(value, dict)


def place(container: dict[str, Any], key: str, incident: str, reason: str) -> bool:
    """Put a hold record under `key`; False (nothing changed) when one is already there."""
    if is_held(container.get(key)):
        return False
    container[key] = record(incident, reason)
    return True


def lift(container: dict[str, Any], key: str, *, keep_key: bool = False) -> bool:
    """Remove the hold under `key` (or set it to null with `keep_key`); False when none."""
    if not is_held(container.get(key)):
        return False
    if keep_key:
        container[key] = None
    else:
        del container[key]
    return True
