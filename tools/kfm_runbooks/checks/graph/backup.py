"""Graph backups: verify by restoring somewhere safe and comparing; take a fresh one.

A backup folder (`graph.backups`) holds SQLite graph files, one manifest per file and a
`LATEST` pointer naming the current manifest:

    LATEST                          graph-1a2b3c4d5e6f.manifest.json
    graph-1a2b3c4d5e6f.sqlite       the backup (sqlite3 backup API; Neo4j: logical export)
    graph-1a2b3c4d5e6f.manifest.json  {"profile": "kfm.graph-backup-manifest.v1",
        "file", "sha256", "size", "taken_at", "graph_last_write", "content_sha256",
        "nodes", "relationships", "labels", "relationship_types", "method", "source"}

Verification never reads a backup in place beyond hashing it: the file is restored with
the sqlite3 backup API into a fresh scratch folder (deleted afterwards; never the live
graph's path), checked with `PRAGMA integrity_check`, and its content hash and counts
are compared with the manifest and, when no write happened since, with the live graph.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._fs import create_new, publish_new, replace_atomic, sha256_file
from ..._time import now_iso, parse_iso
from ...vocab import Verdict
from .. import BLOCKING, HOLD, Finding
from ..catalog.health import read_json_object
from ..common.files import FileProblem, read_bounded
from ..common.findings import FindingsReport
from .db import ContentDigest, GraphBackend, GraphUnavailable, graph_digest

PROFILE = "kfm.graph-backup-manifest.v1"
POINTER = "LATEST"
MAX_POINTER_BYTES = 4096  # LATEST holds one file name
MANIFEST_SUFFIX = ".manifest.json"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}")
_SHA_RE = re.compile(r"[0-9a-f]{64}")
REQUIRED = ("file", "sha256", "size", "taken_at", "content_sha256", "nodes", "relationships")
# Codes that mean "restoring this backup would not give back the graph it claims".
INTEGRITY_CODES = frozenset(
    {
        "GRAPH_BACKUP_CHECKSUM_MISMATCH",
        "GRAPH_BACKUP_CONTENT_MISMATCH",
        "GRAPH_BACKUP_DIVERGES",
        "GRAPH_BACKUP_FILE_MISSING",
        "GRAPH_BACKUP_MANIFEST_INVALID",
        "GRAPH_BACKUP_PATH_ESCAPE",
        "GRAPH_BACKUP_RESTORE_FAILED",
        "GRAPH_BACKUP_SYMLINK_DENIED",
    }
)


def _hours(later: str, earlier: str) -> float:
    return (parse_iso(later) - parse_iso(earlier)).total_seconds() / 3600.0


def _file_in(folder: Path, name: Any) -> tuple[Path | None, str | None]:
    """A plain file name inside the backup folder, or why it is refused."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or ".." in name:
        return None, "GRAPH_BACKUP_PATH_ESCAPE"
    path = folder / name
    if path.is_symlink():
        return None, "GRAPH_BACKUP_SYMLINK_DENIED"
    if not path.is_file():
        return None, "GRAPH_BACKUP_FILE_MISSING"
    return path, None


def read_pointer(folder: Path | None) -> tuple[str | None, list[Finding]]:
    """The manifest LATEST names, or findings saying why there is none."""
    if folder is None:
        return None, [Finding("GRAPH_BACKUP_NOT_CONFIGURED", "graph.backups", "/", HOLD)]
    data, problem = read_bounded(folder / POINTER, MAX_POINTER_BYTES)
    if problem is FileProblem.MISSING:
        return None, [Finding("GRAPH_BACKUP_MISSING", POINTER, "/", BLOCKING, "no LATEST pointer")]
    if data is None:  # a link (never followed), a FIFO, a folder, too large: refused unread
        why = f"LATEST is refused unread: {problem}"
        return None, [Finding("GRAPH_BACKUP_POINTER_INVALID", POINTER, "/", BLOCKING, why)]
    name = data.decode("utf-8", errors="replace").strip()
    path, code = _file_in(folder, name)
    if path is None or not name.endswith(MANIFEST_SUFFIX):
        why = f"LATEST names {name[:80]!r}: {code or 'not a manifest'}"
        return None, [Finding("GRAPH_BACKUP_POINTER_INVALID", POINTER, "/", BLOCKING, why)]
    return name, []


def _raw_pointer(folder: Path) -> str | None:
    """LATEST's text as it is (valid or not), so an undo can put it back exactly."""
    data, _ = read_bounded(folder / POINTER, MAX_POINTER_BYTES)
    if data is None:  # missing, or not a small regular file (never followed)
        return None
    return data.decode("utf-8", errors="replace").strip() or None


def list_manifests(folder: Path | None) -> list[str]:
    if folder is None or not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.name.endswith(MANIFEST_SUFFIX) and not p.name.startswith(".") and p.is_file()
    )


def restore_scratch(path: Path) -> tuple[ContentDigest | None, list[str], str | None]:
    """Restore a backup file into a scratch folder and read it: (digest, problems, error)."""
    from .sqlite_backend import SqliteGraph

    with tempfile.TemporaryDirectory(prefix="kfm-graph-restore-") as tmp:
        dest = Path(tmp) / "restored.sqlite"
        try:
            source = SqliteGraph.open(path)
            try:
                source.backup_to(dest)
            finally:
                source.close()
            restored = SqliteGraph.open(dest)
            try:
                problems = restored.integrity()
                digest = graph_digest(restored)
            finally:
                restored.close()
        except (GraphUnavailable, sqlite3.DatabaseError, ValueError) as exc:
            return None, [], str(exc).splitlines()[0].replace(str(path), path.name)
    return digest, problems, None


@dataclass
class BackupReport(FindingsReport):
    manifest: str
    file: str | None = None
    taken_at: str | None = None
    graph_last_write: str | None = None
    lag_hours: float | None = None
    restored: ContentDigest | None = None
    recorded: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest,
            "file": self.file,
            "taken_at": self.taken_at,
            "graph_last_write": self.graph_last_write,
            "lag_hours": None if self.lag_hours is None else round(self.lag_hours, 2),
            "restored_nodes": self.restored.nodes if self.restored else None,
            "restored_relationships": self.restored.rels if self.restored else None,
            "content_matches_manifest": (
                None
                if self.restored is None
                else self.restored.sha256 == self.recorded.get("content_sha256")
            ),
            "outcome": self.outcome,
            "codes": self.codes,
        }


def _manifest(folder: Path, name: str, report: BackupReport) -> dict[str, Any] | None:
    def add(code: str, message: str = "") -> None:
        report.findings.append(Finding(code, name, "/", BLOCKING, message))

    path, code = _file_in(folder, name)
    if path is None:
        add(code or "GRAPH_BACKUP_FILE_MISSING", "manifest")
        return None
    document, read_code = read_json_object(path)
    if document is None:
        add("GRAPH_BACKUP_MANIFEST_INVALID", read_code or "")
        return None
    missing = [key for key in REQUIRED if key not in document]
    if (
        document.get("profile") != PROFILE
        or missing
        or not isinstance(document.get("sha256"), str)
        or not _SHA_RE.fullmatch(document["sha256"])
    ):
        add("GRAPH_BACKUP_MANIFEST_INVALID", f"not a {PROFILE} manifest {missing or ''}".strip())
        return None
    return document


def verify(
    folder: Path,
    manifest_name: str,
    *,
    live: ContentDigest | None,
    live_last_write: str | None,
    max_lag_hours: float,
    now: str | None = None,
) -> BackupReport:
    """Everything that can be proven about one backup without touching the live graph."""
    report = BackupReport(manifest_name)

    def add(code: str, message: str, severity: str = BLOCKING) -> None:
        report.findings.append(Finding(code, manifest_name, "/", severity, message))

    document = _manifest(folder, manifest_name, report)
    if document is None:
        return report
    report.recorded = document
    report.file = str(document["file"])
    report.taken_at = str(document["taken_at"])
    report.graph_last_write = str(document.get("graph_last_write") or document["taken_at"])
    path, code = _file_in(folder, document["file"])
    if path is None:
        add(code or "GRAPH_BACKUP_FILE_MISSING", f"backup file {report.file!r}")
        return report
    size, digest = path.stat().st_size, sha256_file(path)
    if size != document["size"] or digest != document["sha256"]:
        add("GRAPH_BACKUP_CHECKSUM_MISMATCH", "backup bytes differ from the manifest's sha256")
    restored, problems, error = restore_scratch(path)
    if error is not None:
        add("GRAPH_BACKUP_RESTORE_FAILED", f"restore into a scratch folder failed: {error}")
    elif problems:
        add("GRAPH_BACKUP_RESTORE_FAILED", f"restored copy fails integrity_check: {problems[0]}")
    report.restored = restored
    if restored is not None and (
        restored.sha256 != document["content_sha256"]
        or restored.nodes != document["nodes"]
        or restored.rels != document["relationships"]
    ):
        add(
            "GRAPH_BACKUP_CONTENT_MISMATCH",
            "restored content differs from the manifest "
            f"({restored.nodes} nodes / {restored.rels} relationships restored, manifest "
            f"{document['nodes']} / {document['relationships']})",
        )
    reference = live_last_write or now or now_iso()
    try:
        report.lag_hours = _hours(reference, report.graph_last_write)
    except ValueError:
        add("GRAPH_BACKUP_MANIFEST_INVALID", "taken_at / graph_last_write is not UTC ISO 8601")
        return report
    if report.lag_hours > max_lag_hours:
        add(
            "GRAPH_BACKUP_STALE",
            f"the graph changed {report.lag_hours:.1f} h after this backup "
            f"(allowed {max_lag_hours:g} h)",
        )
    same_moment = live_last_write is not None and live_last_write == report.graph_last_write
    if same_moment and live is not None and document["content_sha256"] != live.sha256:
        add("GRAPH_BACKUP_DIVERGES", "no write since the backup, yet its content differs")
    return report


def _manifest_bytes(value: dict[str, Any]) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def _export(db: GraphBackend, dest: Path) -> str:
    """Write `db` into a new SQLite graph file: physical copy or logical export."""
    from .sqlite_backend import SqliteGraph

    if isinstance(db, SqliteGraph):
        db.backup_to(dest)
        return "sqlite3-backup-api"
    out = SqliteGraph.create(dest)
    try:
        out.insert_nodes(db.nodes())
        out.insert_rels(db.rels())
    finally:
        out.close()
    return "logical-export"


def take_backup(
    db: GraphBackend, folder: Path, *, taken_at: str | None = None, max_tries: int = 20
) -> dict[str, Any]:
    """A fresh backup, proven to restore to the live content, then made LATEST.

    Never overwrites: the file is written beside its final name, restored and compared,
    then published with a link. Re-running with an unchanged graph reuses the backup.
    """
    folder.mkdir(parents=True, exist_ok=True)
    live = graph_digest(db)
    last = db.last_write()
    previous = _raw_pointer(folder)
    base = f"graph-{live.sha256[:12]}"
    for existing in list_manifests(folder):
        if not existing.startswith(base):
            continue
        check = verify(folder, existing, live=live, live_last_write=last, max_lag_hours=1e9)
        if check.outcome == Verdict.PASS and check.recorded.get("content_sha256") == live.sha256:
            if previous != existing:
                replace_atomic(folder / POINTER, f"{existing}\n".encode())
            return {"created": False, "manifest": existing, "previous": previous}
    name = next(
        n
        for n in [base] + [f"{base}-{i}" for i in range(2, max_tries)]
        if not (folder / f"{n}.sqlite").exists() and not (folder / f"{n}{MANIFEST_SUFFIX}").exists()
    )
    tmp = folder / f".{name}.{secrets.token_hex(4)}.partial"
    try:
        method = _export(db, tmp)
        restored, problems, error = restore_scratch(tmp)
        if error or problems or restored is None or restored.sha256 != live.sha256:
            raise RuntimeError(
                "the fresh backup does not restore to the live content (the graph changed "
                "during the backup, or the copy is unsound): nothing published"
            )
        sha, size = sha256_file(tmp), tmp.stat().st_size
        publish_new(tmp, folder / f"{name}.sqlite")
    finally:
        tmp.unlink(missing_ok=True)
    stamp = taken_at or now_iso()
    manifest = {
        "profile": PROFILE,
        "file": f"{name}.sqlite",
        "sha256": sha,
        "size": size,
        "taken_at": stamp,
        "graph_last_write": last or stamp,
        "method": method,
        "source": db.location,
        **live.as_dict(),
    }
    create_new(folder / f"{name}{MANIFEST_SUFFIX}", _manifest_bytes(manifest))
    replace_atomic(folder / POINTER, f"{name}{MANIFEST_SUFFIX}\n".encode())
    return {
        "created": True,
        "manifest": f"{name}{MANIFEST_SUFFIX}",
        "file": f"{name}.sqlite",
        "previous": previous,
        "content_sha256": live.sha256,
    }


def point_latest(folder: Path, manifest: str) -> dict[str, Any]:
    """Make LATEST name `manifest` (an existing manifest in the folder); idempotent."""
    path, code = _file_in(folder, manifest)
    if path is None or not manifest.endswith(MANIFEST_SUFFIX):
        raise ValueError(f"{manifest!r} is not a manifest in the backup folder ({code})")
    previous = _raw_pointer(folder)
    if previous != manifest:
        replace_atomic(folder / POINTER, f"{manifest}\n".encode())
    return {"previous": previous, "manifest": manifest, "changed": previous != manifest}


def restore_pointer(folder: Path, previous: str | None, created: list[str]) -> dict[str, Any]:
    """Undo `take_backup`: LATEST back to what it was; the new backup's files removed."""
    before = _raw_pointer(folder)
    if previous:
        replace_atomic(folder / POINTER, f"{previous}\n".encode())
    else:
        (folder / POINTER).unlink(missing_ok=True)
    removed = []
    for name in created:
        path, _ = _file_in(folder, name)
        if path is not None and name != previous:
            path.unlink()
            removed.append(name)
    changed = before != (previous or None) or bool(removed)
    return {"pointer": previous, "removed": sorted(removed), "changed": changed}


def timeline(reports: list[BackupReport], live_last_write: str | None) -> list[dict[str, Any]]:
    """For the plot: each backup's graph_last_write relative to the live graph's, hours."""
    out = []
    for report in reports:
        if report.graph_last_write and live_last_write:
            try:
                hours = -_hours(live_last_write, report.graph_last_write)
            except ValueError:
                continue
            out.append({"manifest": report.manifest, "hours": hours, "outcome": report.outcome})
    return out
