"""Backup job failures: the job's configuration, its status records, and a restore drill.

`assess` reads the backup job's configuration and its status records (one per run, see
backup_job.py) and finds: a target folder that does not exist or drifted from the
intended one, a last run that failed (with pg_dump's reason), no good backup, the newest
good backup older than the policy, and a LATEST pointer whose dump is missing or whose
bytes differ from the recorded sha256. `verify_dump` proves the newest good dump restores:
`pg_restore --list` must list every configured table's data, and a restore drill into a
scratch database (created and dropped on the same server, never touching the live
database) must give the row counts recorded when the dump was taken.

Through the apply gate only: `fix_job` points the job back at its intended folder, and
`take_backup` runs the job now and verifies the new dump before it counts; their undo
operations restore the previous configuration, or remove the new dump and put LATEST back.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...errors import TargetError
from ...target import Target
from ...vocab import Verdict
from .. import HOLD, INFO, Finding, undoable, verdict
from ..common import json as strict_json
from ..common.files import FileProblemError, read_regular, sha256_file
from ..common.findings import FindingsReport
from .config import InfraConfig

TARGET_INVALID = "INFRA_BACKUP_TARGET_INVALID"
JOB_DRIFT = "INFRA_BACKUP_JOB_DRIFT"
LAST_RUN_FAILED = "INFRA_BACKUP_LAST_RUN_FAILED"
NO_BACKUP = "INFRA_BACKUP_NONE"
STALE = "INFRA_BACKUP_STALE"
FILE_MISSING = "INFRA_BACKUP_FILE_MISSING"
CHECKSUM = "INFRA_BACKUP_CHECKSUM_MISMATCH"
NOT_RESTORABLE = "INFRA_BACKUP_NOT_RESTORABLE"
RESTORE_MISMATCH = "INFRA_BACKUP_RESTORE_MISMATCH"
UNVERIFIABLE = "INFRA_BACKUP_UNVERIFIABLE"
MALFORMED = "INFRA_BACKUP_RECORD_MALFORMED"
MAX_STATE_BYTES = 16 << 20  # the job and LATEST JSON: refused unread beyond
MAX_HISTORY_BYTES = 256 << 20  # runs.jsonl, read whole
RESTORE_CODES = frozenset({FILE_MISSING, CHECKSUM, NOT_RESTORABLE, RESTORE_MISMATCH})


@dataclass(frozen=True)
class BackupConfig:
    infra: InfraConfig
    root: Path  # the job's relative paths resolve here
    job_file: Path
    runs_file: Path
    latest_file: Path
    max_age_hours: float

    @classmethod
    def from_target(cls, target: Target) -> BackupConfig:
        infra = InfraConfig.from_target(target)
        part = infra.part("backup")
        return cls(
            infra=infra,
            root=infra.path(part.get("root", "."), "infra.backup.root"),
            job_file=infra.path(part.get("job"), "infra.backup.job"),
            runs_file=infra.path(part.get("runs"), "infra.backup.runs"),
            latest_file=infra.path(part.get("latest"), "infra.backup.latest"),
            max_age_hours=float(part.get("max_age_hours", 26)),
        )

    def intended(self) -> dict[str, Any]:
        value = self.infra.reference().get("backup_job")
        return value if isinstance(value, dict) else {}

    def database(self) -> tuple[str, Path] | None:
        """(DSN, PostgreSQL bin folder) of the running database, None when it is down."""
        services = self.infra.services() or {}
        pg = services.get("postgres") or {}
        if not pg.get("dsn") or not pg.get("bin_dir"):
            return None
        return str(pg["dsn"]), Path(pg["bin_dir"])

    def inside(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if Path(rel).is_absolute() or (self.root not in path.parents and path != self.root):
            raise TargetError(f"{rel!r} is not inside the backup root {self.root}")
        return path


def parse_time(value: Any) -> datetime | None:
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def read_job(config: BackupConfig) -> dict[str, Any] | None:
    try:
        value = strict_json.load_file(config.job_file, MAX_STATE_BYTES)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_history(config: BackupConfig) -> tuple[list[dict[str, Any]], int]:
    """Run records (events such as removals applied), and how many lines were malformed.

    A history that is a link, a FIFO or too large raises `FileProblemError`, unread.
    """
    try:
        data = read_regular(config.runs_file, MAX_HISTORY_BYTES)
    except FileNotFoundError:
        return [], 0
    runs: list[dict[str, Any]] = []
    removed: set[str] = set()
    bad = 0
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if not isinstance(row, dict) or "run" not in row:
            bad += 1
        elif row.get("event") == "removed":
            removed.add(str(row["run"]))
        else:
            runs.append(row)
    for row in runs:
        row["removed"] = str(row["run"]) in removed
    runs.sort(key=lambda r: str(r.get("started", "")))
    return runs, bad


def read_latest(config: BackupConfig) -> dict[str, Any] | None:
    try:
        value = strict_json.load_file(config.latest_file, MAX_STATE_BYTES)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _reason(error: str) -> str:
    """pg_dump's error without the run-specific file name."""
    return re.sub(r'"[^"]*"', '"…"', error).strip() or "unknown error"


@dataclass
class BackupReport(FindingsReport):
    job: dict[str, Any] | None
    runs: list[dict[str, Any]]
    latest: dict[str, Any] | None
    good: dict[str, Any] | None  # the newest successful run whose dump is intact
    findings: list[Finding] = field(default_factory=list)
    age_hours: float | None = None


def _good(config: BackupConfig, row: dict[str, Any]) -> str | None:
    """Why a successful run's dump cannot be used (None when it is intact)."""
    try:
        dump = config.inside(str(row.get("file", "")))
    except TargetError as exc:
        return str(exc)
    if row.get("removed") or not dump.is_file():
        return "missing"
    if sha256_file(dump) != row.get("sha256"):
        return "checksum"
    return None


def assess(config: BackupConfig, now: datetime | None = None) -> BackupReport:
    now = datetime.now(UTC) if now is None else now
    job = read_job(config)
    try:
        runs, bad, refused = *read_history(config), None
    except FileProblemError as exc:
        runs, bad, refused = [], 0, exc
    report = BackupReport(job, runs, read_latest(config), None)
    add = report.findings.append
    job_name = config.infra.rel(config.job_file)
    if refused is not None:
        add(
            Finding(
                MALFORMED,
                config.infra.rel(config.runs_file),
                severity=HOLD,
                message=f"the run history is refused unread: {refused.reason}",
            )
        )
    if bad:
        add(
            Finding(
                MALFORMED,
                config.infra.rel(config.runs_file),
                severity=INFO,
                message=f"{bad} unreadable status line(s) ignored",
            )
        )
    if job is None:
        add(Finding(TARGET_INVALID, job_name, message="the job configuration is unreadable"))
    else:
        target_dir = str(job.get("target_dir", ""))
        try:
            folder = config.inside(target_dir)
            problem = (
                "does not exist"
                if not folder.exists()
                else "is not a folder"
                if not folder.is_dir()
                else "is not writable"
                if not os.access(folder, os.W_OK)
                else ""
            )
        except TargetError:
            problem = "is outside the backup root"
        if problem:
            add(
                Finding(
                    TARGET_INVALID,
                    job_name,
                    field="/target_dir",
                    message=f"the target folder {target_dir} {problem}",
                )
            )
        intended = config.intended().get("target_dir")
        if intended and intended != target_dir:
            add(
                Finding(
                    JOB_DRIFT,
                    job_name,
                    field="/target_dir",
                    severity=INFO,
                    message=f"target folder {target_dir} differs from the intended {intended}",
                )
            )
    kept = [r for r in runs if not r.get("removed")]  # a removed backup's run is undone
    if kept and not kept[-1].get("ok"):
        failed = 0
        for row in reversed(kept):
            if row.get("ok"):
                break
            failed += 1
        add(
            Finding(
                LAST_RUN_FAILED,
                "last run",
                message=f"the last {failed} run(s) failed: "
                f"{_reason(str(kept[-1].get('error', '')))}",
            )
        )
    successes = [r for r in runs if r.get("ok")]
    for row in reversed(successes):
        if _good(config, row) is None:
            report.good = row
            break
    if report.good is None:
        add(Finding(NO_BACKUP, "backups", message="no intact successful backup on record"))
    else:
        finished = parse_time(report.good.get("finished"))
        if finished is not None:
            report.age_hours = (now - finished).total_seconds() / 3600
        if report.age_hours is None or report.age_hours > config.max_age_hours:
            add(
                Finding(
                    STALE,
                    "newest good backup",
                    field="/finished",
                    message=f"the newest good backup is older than the "
                    f"{config.max_age_hours:g} h policy",
                )
            )
    latest = report.latest
    if latest is not None:
        row = next((r for r in runs if r.get("run") == latest.get("run")), None)
        why = "missing" if row is None else _good(config, row)
        if why == "missing":
            add(
                Finding(
                    FILE_MISSING,
                    "LATEST",
                    field="/file",
                    message="LATEST names a dump that is gone",
                )
            )
        elif why is not None:
            add(
                Finding(
                    CHECKSUM,
                    "LATEST",
                    field="/sha256",
                    message="LATEST's dump differs from its recorded sha256",
                )
            )
    return report


# --- restorability -------------------------------------------------------------------------


def _dsn_with(dsn: str, **changes: str) -> str:
    parts = dict(part.split("=", 1) for part in dsn.split() if "=" in part)
    parts.update(changes)
    return " ".join(f"{k}={v}" for k, v in parts.items())


def list_toc(dump: Path, bin_dir: Path) -> tuple[list[str], str | None]:
    """`pg_restore --list`: the table-data entries, or the error."""
    result = subprocess.run(
        [str(bin_dir / "pg_restore"), "--list", str(dump)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        return [], _reason((result.stderr.strip().splitlines() or ["pg_restore failed"])[-1])
    tables = []
    for line in result.stdout.splitlines():
        match = re.search(r"TABLE DATA (\S+) (\S+) ", line + " ")
        if match and not line.startswith(";"):
            tables.append(f"{match.group(1)}.{match.group(2)}")
    return tables, None


def restore_drill(dump: Path, dsn: str, bin_dir: Path, tables: list[str]) -> dict[str, Any]:
    """Restore into a scratch database on the same server, count rows, drop it."""
    import psycopg
    from psycopg import sql

    scratch = f"kfm_restore_drill_{secrets.token_hex(4)}"
    started = time.monotonic()
    result: dict[str, Any] = {"ok": False, "counts": {}, "error": None}
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
        try:
            done = subprocess.run(
                [
                    str(bin_dir / "pg_restore"),
                    "--no-owner",
                    "--exit-on-error",
                    "--jobs=2",
                    f"--dbname={_dsn_with(dsn, dbname=scratch)}",
                    str(dump),
                ],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if done.returncode != 0:
                lines = done.stderr.strip().splitlines() or ["pg_restore failed"]
                result["error"] = _reason(lines[-1])
            else:
                with psycopg.connect(_dsn_with(dsn, dbname=scratch), connect_timeout=5) as conn:
                    for table in tables:
                        row = conn.execute(
                            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
                        ).fetchone()
                        result["counts"][table] = int(row[0]) if row else 0
                result["ok"] = True
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch))
            )
    result["seconds"] = round(time.monotonic() - started, 2)
    return result


@dataclass
class DumpCheck:
    run: str
    findings: list[Finding]
    toc_tables: list[str]
    drill: dict[str, Any] | None

    @property
    def status(self) -> str:
        return verdict(self.findings)


def verify_dump(
    config: BackupConfig,
    row: dict[str, Any],
    tables: list[str],
    subject: str = "newest good backup",
) -> DumpCheck:
    """Prove a successful run's dump restores to what was recorded when it was taken."""
    run = subject
    database = config.database()
    if database is None:
        finding = Finding(
            UNVERIFIABLE,
            run,
            severity=HOLD,
            message="the database is not running: pg_restore and the drill need it",
        )
        return DumpCheck(run, [finding], [], None)
    dsn, bin_dir = database
    dump = config.inside(str(row.get("file", "")))
    listed, error = list_toc(dump, bin_dir)
    findings = []
    if error is not None:
        findings.append(Finding(NOT_RESTORABLE, run, message=f"pg_restore cannot read it: {error}"))
        return DumpCheck(run, findings, [], None)
    absent = [t for t in tables if f"public.{t}" not in listed]
    if absent:
        findings.append(
            Finding(
                NOT_RESTORABLE, run, field="/toc", message=f"no table data for {', '.join(absent)}"
            )
        )
    drill = restore_drill(dump, dsn, bin_dir, tables)
    if not drill["ok"]:
        findings.append(
            Finding(
                NOT_RESTORABLE,
                run,
                field="/restore",
                message=f"the restore drill failed: {drill['error']}",
            )
        )
    else:
        recorded = row.get("counts") or {}
        differ = [t for t in tables if drill["counts"].get(t) != recorded.get(t)]
        if differ:
            findings.append(
                Finding(
                    RESTORE_MISMATCH,
                    run,
                    field="/counts",
                    message=f"restored row counts differ for {', '.join(differ)}",
                )
            )
    return DumpCheck(run, findings, listed, drill)


# --- repairs (through the apply gate) and their undo ---------------------------------------


def write_job(config: BackupConfig, value: dict[str, Any]) -> dict[str, Any]:
    from ..._fs import replace_atomic

    previous = read_job(config)
    replace_atomic(config.job_file, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())
    return {"previous": previous, "now": value}


def fix_job(config: BackupConfig) -> dict[str, Any]:
    """Point the job at its intended target folder (other settings kept)."""
    intended = config.intended()
    if not intended.get("target_dir"):
        raise TargetError("no intended backup job configuration in the target's reference")
    current = read_job(config) or {}
    return write_job(config, {**current, "target_dir": intended["target_dir"]})


def take_backup(config: BackupConfig, tables: list[str]) -> dict[str, Any]:
    """Run the backup job now; the new dump counts only once it verifies, else LATEST is
    put back and the change fails."""
    from . import backup_job as backup

    database = config.database()
    if database is None:
        raise TargetError("the database is not running: cannot take a backup")
    previous = read_latest(config)
    record = backup.run_job(config.root, *database)
    if not record.get("ok"):
        raise RuntimeError(f"the backup run failed: {_reason(str(record.get('error', '')))}")
    check = verify_dump(config, record, tables, "new backup")
    if check.status != Verdict.PASS:
        remove_backup(config, str(record["run"]), str(record["file"]), previous)
        raise RuntimeError(
            "the new backup does not verify: " + "; ".join(f.message for f in check.findings)
        )
    return {
        "run": record["run"],
        "file": record["file"],
        "sha256": record["sha256"],
        "counts": record.get("counts"),
        "restore_drill": check.drill,
        "previous_latest": previous,
    }


def remove_backup(
    config: BackupConfig, run: str, file: str, previous_latest: dict[str, Any] | None
) -> dict[str, Any]:
    """Undo `take_backup`: delete its dump, mark the run removed, put LATEST back."""
    from ..._fs import replace_atomic

    dump = config.inside(file)
    existed = dump.is_file()
    dump.unlink(missing_ok=True)
    runs, _ = read_history(config)
    if not any(r.get("run") == run and r.get("removed") for r in runs):
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with config.runs_file.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"event": "removed", "run": run, "time": stamp}) + "\n")
    current = read_latest(config)
    if current is not None and current.get("run") == run:
        if previous_latest:
            body = json.dumps(previous_latest, indent=2, sort_keys=True) + "\n"
            replace_atomic(config.latest_file, body.encode())
        else:
            config.latest_file.unlink()
    return {"removed": existed, "run": run, "latest": read_latest(config)}


@undoable("infra.restore_backup_job")
def _undo_restore_backup_job(target: Target, previous: dict[str, Any]) -> dict[str, Any]:
    """Put the backup job's previous configuration back."""
    return write_job(BackupConfig.from_target(target), previous)


@undoable("infra.remove_backup")
def _undo_remove_backup(
    target: Target, run: str, file: str, previous_latest: dict[str, Any] | None
) -> dict[str, Any]:
    """Remove a backup a runbook took and point LATEST back where it was."""
    return remove_backup(BackupConfig.from_target(target), run, file, previous_latest)
