"""Containment and recovery steps of the ai runbooks: through the admin interface, or manual.

A step changes the system only through what the target names (`admin.flags_url` /
`admin.command`, the flag names in `focus.flags`, the op in `focus.rebuild_op`) and only
through the recorder's apply gate (`run.action`). When the target names no interface, the
step is recorded as a manual action with the exact instruction for a human
(`run.manual_action`); nothing is ever written to a file the system reads.

`observe` is how the step is checked before and after: a behaviour probe (what Focus Mode
answers now), never a state file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .focus import FocusSystem, flags_undo, index_undo, manual_instruction


def flag(
    run: Any,
    system: FocusSystem,
    role: str,
    value: bool,
    title: str,
    *,
    observe: Callable[[], Any],
    rollback: str,
) -> Any:
    """Set the flag `focus.flags.<role>` to `value` (the undo sets it back to `not value`:
    the step is only taken when behaviour showed the flag was effectively the other way)."""
    step = system.flag_step(role, value)
    if step is None:
        return run.manual_action(title, manual_instruction(role, value, system))
    changes, how = step
    return run.action(
        title,
        command=how,
        precheck=observe,
        change=lambda: system.set_flags(changes),
        postcheck=observe,
        rollback=rollback,
        undo=flags_undo({name: not v for name, v in changes.items()}),
    )


def rebuild(run: Any, system: FocusSystem, title: str, *, observe: Callable[[], Any]) -> Any:
    """Rebuild the retrieval index through the admin op `focus.rebuild_op`."""
    how = system.interface(system.rebuild_op) if system.rebuild_op else None
    if how is None:
        return run.manual_action(
            title,
            "Rebuild the Focus Mode retrieval index from the current corpus with the "
            "system's own index job (the target names no focus.rebuild_op / admin.command), "
            "then re-run this runbook to verify",
        )
    return run.action(
        title,
        command=how,
        precheck=observe,
        change=system.rebuild_index,
        postcheck=observe,
        rollback="restore the previous index through the admin op focus_restore_index "
        "(only when the rebuild reported the previous bytes); this brings the fault back",
        undo=index_undo,
    )
