"""Incident workspaces: create, open, list `INC-YYYYMMDD-###/` folders (layout: layout.py).

A new workspace is assembled in a hidden temp folder and renamed into place while the
root's sequence lock is held, so two `incident new` at once get two different ids and no
reader ever sees a half-built workspace.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydantic import ValidationError

from . import incident as incident_mod
from . import ledger, paths, redact
from ._fs import file_lock, sha256_bytes
from ._time import utc_now
from .errors import IncidentNotFoundError, InputError, RunbookError, WorkspaceError
from .ids import INCIDENT_ID_RE, check_incident_id
from .layout import (
    CHECKS,
    COMMANDS,
    LAYOUT_DIRS,
    METRICS,
    ROLLBACK,
    TIMELINE,
    Workspace,
    default_actor,
    timeline_line,
)

ROOT_ENV = paths.ROOT_ENV


def resolve_root(root: str | Path | None = None) -> Path:
    """--root / $KFM_INCIDENT_ROOT / nearest incident_cases/ above cwd / ./incident_cases
    (paths.incident_root: never inside the installation)."""
    return paths.incident_root(root).path


def open_workspace(incident_id: str, root: str | Path | None = None) -> Workspace:
    check_incident_id(incident_id)
    workspace = Workspace(resolve_root(root), incident_id)
    if not workspace.path.is_dir():
        raise IncidentNotFoundError(
            f"incident {incident_id} not found under {workspace.root}: "
            "check the id with `kfm-runbook incident list` or pass --root"
        )
    missing = [d for d in LAYOUT_DIRS if not (workspace.path / d).is_dir()]
    if missing:
        raise WorkspaceError(
            f"{workspace.path} is not a complete incident workspace (missing {', '.join(missing)})"
        )
    return workspace


def _next_sequence(root: Path, day: str) -> int:
    taken = [
        int(match.group(2))
        for child in root.iterdir()
        if (match := INCIDENT_ID_RE.fullmatch(child.name)) and match.group(1) == day
    ]
    return max(taken, default=0) + 1


def _headers(record: incident_mod.Incident) -> dict[str, str]:
    """The first bytes of each record people read (layout.VIEWS)."""
    return {
        TIMELINE: (
            f"# Timeline — {record.id}: {record.title}\n\n"
            "Append-only. UTC. One line per event; the ledger (10_evidence/ledger.jsonl) holds "
            "the hashes.\n\n"
        ),
        COMMANDS: (
            f"# Commands — {record.id}\n\nEvery state-changing step: actor, command, "
            "pre-check, post-check (append-only).\n"
        ),
        ROLLBACK: (
            f"# Rollback plan — {record.id}\n\nOne entry per applied change, written when it "
            "was applied (append-only).\n"
        ),
        CHECKS: (
            f"# Verification checks — {record.id}\n\nOne section per runbook run (append-only).\n"
        ),
        METRICS: f"# Metrics — {record.id}\n\nOne section per runbook run (append-only).\n",
    }


def _write_layout(
    folder: Path,
    record: incident_mod.Incident,
    actor: str,
    declared: str,
    require_signatures: bool = False,
) -> None:
    for sub in LAYOUT_DIRS:
        (folder / sub).mkdir(parents=True, exist_ok=True)
    text = record.to_yaml()
    (folder / "00_meta" / "incident.yaml").write_text(text, encoding="utf-8")
    (folder / "10_evidence" / "hashes.sha256").write_bytes(b"")
    views = _headers(record)
    views[TIMELINE] += timeline_line(declared)
    staged = Workspace(folder.parent, folder.name)
    for rel in views:
        (folder / rel).write_bytes(b"")
    entry = ledger.append(
        folder / "10_evidence" / "ledger.jsonl",
        kind="incident.opened",
        incident=record.id,
        actor=actor,
        data={
            "title": record.title,
            "severity": record.severity,
            "roles": record.roles.model_dump(exclude_none=True),
            "record": record.model_dump(mode="json"),
            "incident_yaml_sha256": sha256_bytes(text.encode()),
            **({"require_signatures": True} if require_signatures else {}),
        },
        views=views,
    )
    staged.apply_views(entry)


def create_incident(
    title: str,
    severity: str,
    *,
    commander: str | None = None,
    summary: str = "",
    root: str | Path | None = None,
    actor: str | None = None,
    incident_id: str | None = None,
    require_signatures: bool = False,
) -> Workspace:
    """Allocate the next INC-YYYYMMDD-### under the root and build its workspace.

    `incident_id` pins the id instead (imports, fixed-id test fixtures); it must be free.
    """
    base = resolve_root(root)
    base.mkdir(parents=True, exist_ok=True)
    actor = actor or default_actor()
    now = utc_now()
    day = f"{now:%Y%m%d}"
    with file_lock(base / ".incident-seq.lock"):
        if incident_id is not None:
            check_incident_id(incident_id)
            if (base / incident_id).exists():
                raise InputError(f"incident {incident_id} already exists under {base}")
        else:
            sequence = _next_sequence(base, day)
            if sequence > 999:
                raise InputError(f"more than 999 incidents on {day}: archive or use --root")
            incident_id = f"INC-{day}-{sequence:03d}"
        try:
            record = incident_mod.Incident.model_validate(
                redact.clean(
                    {
                        "id": incident_id,
                        "title": title,
                        "severity": severity,
                        "roles": {"IC": commander} if commander else {},
                        "timestamps": {"declared": now, "detected": now},
                        "summary": summary,
                    }
                )
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise InputError(f"invalid incident {where}: {first['msg']}") from exc
        staging = Path(tempfile.mkdtemp(prefix=".new-incident-", dir=base))
        declared = f"Incident declared: {record.title} ({record.severity}) by {actor}" + (
            f"; IC {commander}" if commander else ""
        )
        try:
            _write_layout(staging, record, actor, declared, require_signatures)
            staging.chmod(0o755)
            staging.rename(base / incident_id)
        except BaseException:
            _remove_tree(staging)
            raise
    return Workspace(base, incident_id)


def _remove_tree(folder: Path) -> None:
    if not folder.exists():
        return
    for child in sorted(folder.rglob("*"), reverse=True):
        if child.is_dir() and not child.is_symlink():
            child.rmdir()
        else:
            child.unlink()
    folder.rmdir()


def list_incidents(root: str | Path | None = None) -> list[incident_mod.Incident | RunbookError]:
    """Every incident under the root, oldest first; one whose record cannot be trusted
    (edited incident.yaml, damaged ledger) is listed as the error that says so."""
    base = resolve_root(root)
    if not base.is_dir():
        return []
    found: list[incident_mod.Incident | RunbookError] = []
    for child in sorted(base.iterdir()):
        if INCIDENT_ID_RE.fullmatch(child.name) and child.is_dir():
            try:
                found.append(Workspace(base, child.name).load())
            except RunbookError as exc:
                found.append(exc)
    return found
