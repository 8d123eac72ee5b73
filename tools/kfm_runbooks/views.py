"""The records people read, which are views of the ledger: where they live, and the one
line format of the timeline (light: kernel-safe).

Every byte appended to these files is first recorded in the ledger entry it belongs to
(layout.py); `verify` rebuilds each file from the ledger and compares.
"""

from __future__ import annotations

from . import redact
from ._time import iso, utc_now

TIMELINE = "00_meta/timeline.md"
COMMANDS = "20_actions/commands.md"
ROLLBACK = "20_actions/rollback.md"
CHECKS = "30_verification/checks.md"
METRICS = "30_verification/metrics.md"
VIEWS = (TIMELINE, COMMANDS, ROLLBACK, CHECKS, METRICS)


def timeline_line(text: str, when: str | None = None) -> str:
    """One timeline event: `- <UTC> — <text>`; newlines flattened (one event, one line),
    after scrubbing (a multi-line key must still be whole when it is looked for)."""
    flat = " ".join(redact.clean(text).split())
    stamp = (when or iso(utc_now())).replace(".000Z", "Z")
    return f"- {stamp} — {flat}\n"
