"""`kfm-runbook update`: the seed's minimal comms update, rendered from the incident's state.

    Status · Impact · Start time · Current hypothesis · Actions taken · Next update

Internal updates link every action and run to its evidence (run ids, notebook sha256,
ACT ids). Public updates carry only what the public may read: no paths, no ids of
internal evidence, no commands, no operator names. Every update is scrubbed of secrets. Each update
is written to 00_meta/updates/ (never overwritten), hashed into the ledger with the time
the next one is due (severity cadence: Sev0 15 min, Sev1 30 min, Sev2 hourly, Sev3 daily).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import redact
from ._fs import sha256_bytes
from ._time import iso, utc_now
from .errors import InputError
from .evidence import publish_locked
from .history import History
from .layout import TIMELINE, default_actor, timeline_line
from .lifecycle import CADENCE, next_update_due
from .recovery import open_for_update
from .workspace import open_workspace

AUDIENCES = ("internal", "public")


@dataclass(frozen=True)
class Update:
    path: Path
    text: str
    next_due: str
    ledger_head: str


def _short(stamp: str) -> str:
    return stamp.replace(".000Z", "Z")


def render(incident_id: str, audience: str, root: str | Path | None = None) -> tuple[str, str]:
    """(markdown text, next update due) without writing anything."""
    if audience not in AUDIENCES:
        raise InputError(f"audience must be one of {', '.join(AUDIENCES)}")
    workspace = open_workspace(incident_id, root)
    record = workspace.load()
    history = History.read(workspace)
    now = utc_now()
    due = iso(now + CADENCE[record.severity])
    public = audience == "public"
    started = record.timestamps.detected or record.timestamps.declared
    lines = [
        f"# {'Public' if public else 'Internal'} update — {record.title}",
        "",
        f"- **Status:** {record.status}",
        f"- **Severity:** {record.severity}",
        f"- **Impact:** {record.impact or 'being assessed'}",
        f"- **Start time:** {_short(iso(started))}",
        f"- **Current hypothesis:** {record.hypothesis or 'under investigation'}",
        "- **Actions taken:**",
    ]
    actions = []
    rolled_back = history.rolled_back_ids
    for entry in history.applied_actions:
        data = entry["data"]
        undone = " (since rolled back)" if data.get("action_id") in rolled_back else ""
        if public:
            actions.append(f"  - {data.get('title')}{undone}")
        else:
            actions.append(
                f"  - {data.get('title')}{undone} — {data.get('action_id')}, run "
                f"{data.get('run_id')}, ledger #{entry['seq']} `{str(entry['hash'])[:12]}`"
            )
    for entry in history.runs:
        data = entry["data"]
        runbook = (data.get("runbook") or {}).get("id")
        if public:
            actions.append(f"  - checks run: {data.get('outcome')}")
        else:
            notebook: dict[str, str] = next(
                (o for o in data.get("outputs", []) if o["path"].endswith(".ipynb")), {}
            )
            actions.append(
                f"  - {runbook} {data.get('run_id')} → **{data.get('outcome')}**: "
                f"evidence `{notebook.get('path')}` sha256 `{str(notebook.get('sha256'))[:16]}…`"
            )
    lines += actions or ["  - none yet"]
    if not public:
        flags = history.open_flags
        if flags:
            lines.append(
                "- **Integrity:** unproven — " + "; ".join(f"{k}: {v}" for k, v in flags.items())
            )
        roles = ", ".join(f"{k} {v}" for k, v in record.roles.model_dump().items() if v)
        lines.append(f"- **Roles:** {roles or 'unassigned'}")
        lines.append(f"- **Ledger head:** `{history.head}`")
    lines += [f"- **Next update:** {_short(due)} (UTC)", ""]
    return redact.clean("\n".join(lines)), due


def publish(
    incident_id: str,
    audience: str = "internal",
    root: str | Path | None = None,
    actor: str | None = None,
) -> Update:
    actor = actor or default_actor()
    workspace = open_for_update(incident_id, root, actor)
    text, due = render(incident_id, audience, root)
    folder = workspace.meta / "updates"
    folder.mkdir(exist_ok=True)
    stamp = utc_now().strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"UPDATE-{stamp}.{audience}.md"
    rel = path.relative_to(workspace.path).as_posix()
    data = text.encode()
    line = f"{audience} update published by {actor}; next due {_short(due)}"
    with workspace.locked():
        entry = publish_locked(
            workspace,
            [(rel, data)],
            "comms.update",
            {
                "audience": audience,
                "path": rel,
                "sha256": sha256_bytes(data),
                "next_update_due": due,
            },
            actor,
            {TIMELINE: timeline_line(line)},
        )
    return Update(path, text, due, str(entry["hash"]))


def overdue(incident_id: str, root: str | Path | None = None) -> str | None:
    """A warning when the next update is overdue (per severity cadence), else None."""
    workspace = open_workspace(incident_id, root)
    record = workspace.load()
    if record.status == "Resolved":
        return None
    history = History.read(workspace)
    due = next_update_due(record, history.last_update_time)
    now = utc_now()
    if now <= due:
        return None
    late = int((now - due).total_seconds() // 60)
    return (
        f"next {record.severity} update was due {_short(iso(due))} ({late} min ago): "
        f"`kfm-runbook update {incident_id}`"
    )
