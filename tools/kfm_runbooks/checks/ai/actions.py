"""Containment and recovery steps of the ai runbooks: through the admin interface, or manual.

A step changes the system only through what the target names (`admin.flags_url` /
`admin.command`, the flag names in `focus.flags`, the op in `focus.rebuild_op`) and only
through the recorder's apply gate (`run.action`). When the target names no interface, the
step is recorded as a manual action with the exact instruction for a human
(`run.manual_action`); nothing is ever written to a file the system reads.

Each runbook cell calls `run.action` / `run.manual_action` itself with the `Step` built
here (the apply gate stays visible in the cell); its pre- and post-check is a behaviour
probe (what Focus Mode answers now), never a state file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .focus import FocusSystem, flags_undo, index_undo, manual_instruction


@dataclass(frozen=True)
class Step:
    """One containment / recovery step: how to apply it, or what a human must do."""

    command: str | None  # None: a manual action
    change: Callable[[], Any] | None = None
    undo: Any = None
    instruction: str = ""
    reason: str = ""

    @property
    def manual(self) -> bool:
        return self.command is None


def flag_step(system: FocusSystem, role: str, value: bool) -> Step:
    """Set the flag `focus.flags.<role>` to `value`. The undo sets it back to `not value`:
    the step is only taken when behaviour showed the flag was effectively the other way."""
    found = system.flag_step(role, value)
    if found is None:
        reason = "no flag name" if system.flag_name(role) is None else "no admin interface"
        return Step(None, instruction=manual_instruction(role, value, system), reason=reason)
    changes, how = found
    return Step(
        how,
        change=lambda: system.set_flags(changes),
        undo=flags_undo({name: not v for name, v in changes.items()}),
    )


def rebuild_step(system: FocusSystem) -> Step:
    """Rebuild the retrieval index through the admin op `focus.rebuild_op`."""
    how = system.interface(system.rebuild_op) if system.rebuild_op else None
    if how is None:
        return Step(
            None,
            instruction="Rebuild the Focus Mode retrieval index from the current corpus with "
            "the system's own index job (the target names no focus.rebuild_op / "
            "admin.command), then re-run this runbook to verify",
            reason="no admin interface",
        )
    return Step(how, change=system.rebuild_index, undo=index_undo)


REBUILD_ROLLBACK = (
    "restore the previous index through the admin op focus_restore_index (only when the "
    "rebuild reported the previous bytes); this brings the fault back"
)
