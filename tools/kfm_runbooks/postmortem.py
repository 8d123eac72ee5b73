"""`kfm-runbook postmortem`: 90_postmortem/postmortem.md and action_items.md from evidence.

Facts come from the ledger only — every timeline line names its ledger entry (seq and
hash prefix) — and the people fill in what evidence cannot know (root cause narrative,
what went well / badly). Required for Sev0/Sev1, whenever an applied action was rolled
back, and whenever integrity was flagged (data integrity at risk). Written once: the
files then belong to the people editing them, and are never overwritten. The resolve gate
wants them filled in (`postmortem_gaps`): every section people write has text beyond the
draft's `_(…)_` placeholders, and action_items.md has at least one item with an owner and
a due date.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from . import redact
from ._fs import sha256_bytes
from .errors import InputError
from .evidence import publish_locked
from .history import DETAIL_KINDS, History, describe
from .layout import TIMELINE, Workspace, default_actor, timeline_line
from .recovery import open_for_update


@dataclass(frozen=True)
class Postmortem:
    postmortem: Path
    action_items: Path
    required: list[str]


SECTIONS = ("Summary", "Impact", "Root cause", "What went well", "What went badly")
_PLACEHOLDER = re.compile(r"_\([^)]*\)_")
_FILLER = re.compile(r"[\s\-*#>|`_.:]+")


def _sections(text: str) -> dict[str, str]:
    """`## Heading` -> its body, for every second-level heading."""
    found: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            found[current] = ""
        elif current is not None:
            found[current] += line + "\n"
    return found


def _filled(body: str) -> bool:
    return bool(_FILLER.sub("", _PLACEHOLDER.sub("", body)))


def _owned_items(text: str) -> int:
    rows = [r for r in text.splitlines() if r.startswith("|") and not r.startswith("|--")]
    count = 0
    for row in rows[1:]:  # the first row is the header
        cells = [c.strip() for c in row.strip("|").split("|")]
        if (
            len(cells) >= 4
            and all(_filled(cell) for cell in cells[1:4])
            and cells[2] not in ("_owner_", "owner")
            and cells[3] not in ("_due_", "due (UTC)")
        ):
            count += 1
    return count


def postmortem_gaps(workspace: Workspace) -> str | None:
    """What keeps the postmortem from counting as written (None when it does)."""
    folder = workspace.postmortem
    paths = (folder / "postmortem.md", folder / "action_items.md")
    if not paths[0].is_file():
        return f"`kfm-runbook postmortem {workspace.incident_id}`, then fill it in"
    try:
        sections = _sections(paths[0].read_text(encoding="utf-8"))
        items = paths[1].read_text(encoding="utf-8") if paths[1].is_file() else ""
    except (OSError, UnicodeDecodeError) as exc:
        return f"90_postmortem/ is unreadable ({exc})"
    empty = [name for name in SECTIONS if not _filled(sections.get(name, ""))]
    gaps = []
    if empty:
        gaps.append(f"fill in the sections {', '.join(empty)} of 90_postmortem/postmortem.md")
    if not _owned_items(items):
        gaps.append(
            "give at least one action item in 90_postmortem/action_items.md an owner and a due date"
        )
    return "; ".join(gaps) or None


def required_reasons(workspace: Workspace, history: History | None = None) -> list[str]:
    """Why a postmortem is required ([] when it is not)."""
    history = history or History.read(workspace)
    reasons = []
    high = sorted(history.severities_held & {"Sev0", "Sev1"})
    if high:
        reasons.append(f"severity {high[0]} was held")
    if history.rollbacks:
        reasons.append(f"{len(history.rollbacks)} applied action(s) were rolled back")
    if history.integrity_ever_flagged:
        reasons.append("data integrity / provenance was flagged unproven")
    return reasons


def _stamp(entry: dict[str, object]) -> str:
    return str(entry["time"]).replace(".000Z", "Z")


def render(workspace: Workspace) -> tuple[str, str, list[str]]:
    record = workspace.load()
    history = History.read(workspace)
    reasons = required_reasons(workspace, history)
    lines = [
        f"# Postmortem — {record.id}: {record.title}",
        "",
        f"Severity {record.severity} (held: {', '.join(sorted(history.severities_held))}) · "
        f"status {record.status} · declared {record.timestamps.declared.isoformat()} · "
        f"ledger head `{history.head}`",
        "",
        "Required because: " + ("; ".join(reasons) if reasons else "not required (written anyway)"),
        "",
        "## Summary",
        "",
        record.summary or "_(write two or three sentences)_",
        "",
        "## Impact",
        "",
        record.impact or "_(who/what was affected, for how long; measured, not vibes)_",
        "",
        "## Root cause",
        "",
        record.root_cause
        or f"_(not recorded yet: `kfm-runbook incident note {record.id} --root-cause ...`)_",
        "",
        "## Timeline (from the ledger; facts only)",
        "",
        "| time (UTC) | ledger | event | by |",
        "|---|---|---|---|",
    ]
    for entry in history.entries:
        if entry["kind"] in DETAIL_KINDS:
            continue  # summarised below, per run
        event = describe(entry).replace("|", "\\|")
        lines.append(
            f"| {_stamp(entry)} | #{entry['seq']} `{str(entry['hash'])[:10]}` | {event} | "
            f"{entry['actor']} |"
        )
    lines += [
        "",
        "## Runbooks run",
        "",
        "| run | runbook | outcome | checks | evidence |",
        "|---|---|---|---|---|",
    ]
    for entry in history.runs:
        data = entry["data"]
        checks = ", ".join(f"{c['name']} {c['status']}" for c in data.get("checks", []))
        notebook: dict[str, str] = next(
            (o for o in data.get("outputs", []) if o["path"].endswith(".ipynb")), {}
        )
        lines.append(
            f"| {data.get('run_id')} | {(data.get('runbook') or {}).get('id')} | "
            f"{data.get('outcome')} | {checks or '-'} | `{notebook.get('path')}` "
            f"`{str(notebook.get('sha256'))[:12]}` |"
        )
    rolled_back = history.rolled_back_ids
    lines += [
        "",
        "## Actions applied",
        "",
        "| action | what | run | rolled back |",
        "|---|---|---|---|",
    ]
    for entry in history.applied_actions:
        data = entry["data"]
        back = "yes" if data.get("action_id") in rolled_back else "no"
        lines.append(
            f"| {data.get('action_id')} | {data.get('title')} | {data.get('run_id')} | {back} |"
        )
    findings = Counter(
        (e["data"].get("runbook"), e["data"].get("code"), e["data"].get("severity"))
        for e in history.of("finding")
    )
    lines += ["", "## Findings", "", "| runbook | code | severity | count |", "|---|---|---|---:|"]
    for (runbook, code, severity), count in sorted(findings.items(), key=str):
        lines.append(f"| {runbook} | {code} | {severity} | {count} |")
    lines += [
        "",
        "## What went well",
        "",
        "- _(fill in)_",
        "",
        "## What went badly",
        "",
        "- _(fill in)_",
        "",
        "## Action items",
        "",
        "See [action_items.md](action_items.md).",
        "",
    ]
    items = [
        f"# Action items — {record.id}",
        "",
        "Track each item to done; `type` is prevent, detect, mitigate or process.",
        "",
        "| # | action | owner | due (UTC) | type | status |",
        "|---:|---|---|---|---|---|",
    ]
    number = 0
    for entry in history.runs:
        data = entry["data"]
        if data.get("outcome") in ("failed", "hold", "errored", "timeout", "kernel-died"):
            number += 1
            runbook = (data.get("runbook") or {}).get("id")
            items.append(
                f"| {number} | Harden against what {runbook} found "
                f"({data.get('outcome')}, run {data.get('run_id')}) | _owner_ | _due_ | "
                "prevent | open |"
            )
    for action_id in sorted(rolled_back):
        number += 1
        items.append(
            f"| {number} | Understand why {action_id} had to be rolled back | _owner_ | "
            "_due_ | process | open |"
        )
    if number == 0:
        items.append(
            "| 1 | _(add the hardening tasks the runbooks list)_ | _owner_ | _due_ | "
            "prevent | open |"
        )
    return redact.clean("\n".join(lines) + "\n"), redact.clean("\n".join(items) + "\n"), reasons


def write(incident_id: str, root: str | Path | None = None, actor: str | None = None) -> Postmortem:
    actor = actor or default_actor()
    workspace = open_for_update(incident_id, root, actor)
    folder = workspace.postmortem
    paths = (folder / "postmortem.md", folder / "action_items.md")
    existing = [p.name for p in paths if p.exists()]
    if existing:
        raise InputError(
            f"{', '.join(existing)} already exist in 90_postmortem/: they are edited by people "
            "and never overwritten; edit them"
        )
    with workspace.locked():
        text, items, reasons = render(workspace)
        publish_locked(
            workspace,
            [
                (f"90_postmortem/{paths[0].name}", text.encode()),
                (f"90_postmortem/{paths[1].name}", items.encode()),
            ],
            "postmortem",
            {
                "required": reasons,
                "postmortem_sha256": sha256_bytes(text.encode()),
                "action_items_sha256": sha256_bytes(items.encode()),
            },
            actor,
            {TIMELINE: timeline_line(f"postmortem drafted by {actor} (90_postmortem/)")},
        )
    return Postmortem(paths[0], paths[1], reasons)
