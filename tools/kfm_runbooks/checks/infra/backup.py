"""Backups judged from the dump files themselves; the job's status records are optional.

The target's `backups` section names the folder holding the dumps (`path`), their
`format` (custom | directory | tar | plain), the policy (`max_age`: 90m, 26h, 2d) and,
optionally, the tables a dump must hold, a scratch database for a restore drill
(`restore.scratch_dsn_env` / `scratch_dsn_file`) and the job's own records and commands
(`job`: `runs`, `latest`, `run_command`, `fix_command`). Whatever wrote the dumps (the
job's own runner, a plain cron line `pg_dump -Fc ... > file`) does not matter:

- `find_dumps` lists the dumps in `path` (in-progress names ignored), newest first by
  modification time; the newest one's age is judged against `max_age`.
- `read_whole` reads the newest dump end to end: `pg_restore --list` for its table of
  contents, then `pg_restore --file=/dev/null`, which reads every data block (a truncated
  custom dump still lists fine: only a full read finds it). A plain SQL dump can only be
  checked for pg_dump's header and its "dump complete" footer (and its COPY blocks listed):
  whether its statements run is proven by the drill alone, and the check says so.
- `restore_drill` restores it into a database of its own, created (and always dropped) on
  the server the scratch DSN names, then counts the rows of every restored table. Without
  a scratch database the restore claim is HOLD, naming the key. The live database is
  never touched.
- `read_history` (optional extra evidence): the job's status records (JSON lines: run, ok,
  finished, error, file, sha256, counts) and LATEST pointer: a failed last run, a dump whose
  bytes differ from its record, row counts that differ from the drill's.

Recovery runs the command the target names (`job.run_command`), containment
`job.fix_command`; when it names none, the runbook records a manual action instead.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...errors import TargetError
from ...target import Target
from .. import HOLD, INFO, Finding, undoable, verdict
from ..common import json as strict_json
from ..common import secrets as target_secrets
from ..common.files import FileProblemError, read_regular, sha256_file
from ..common.findings import FindingsReport
from .config import InfraConfig, argv, run_command
from .dumps import (
    IN_PROGRESS_SUFFIXES,
    NO_BACKUP,
    UNREADABLE,
    UNVERIFIABLE,
    Dump,
    ReadCheck,
    find_dumps,
    qualified,
    read_whole,
)
from .restore import Drill, restore_drill

__all__ = [
    "IN_PROGRESS_SUFFIXES",
    "NO_BACKUP",
    "UNREADABLE",
    "UNVERIFIABLE",
    "Drill",
    "Dump",
    "ReadCheck",
    "find_dumps",
    "read_whole",
    "restore_drill",
    "run_command",
]

STALE = "INFRA_BACKUP_STALE"
NOT_RESTORABLE = "INFRA_BACKUP_NOT_RESTORABLE"
RESTORE_MISMATCH = "INFRA_BACKUP_RESTORE_MISMATCH"
TABLE_MISSING = "INFRA_BACKUP_TABLE_MISSING"
LAST_RUN_FAILED = "INFRA_BACKUP_LAST_RUN_FAILED"
CHECKSUM = "INFRA_BACKUP_CHECKSUM_MISMATCH"
FILE_MISSING = "INFRA_BACKUP_FILE_MISSING"
MALFORMED = "INFRA_BACKUP_RECORD_MALFORMED"
IN_PROGRESS = "INFRA_BACKUP_IN_PROGRESS_IGNORED"
FORMATS = ("custom", "directory", "tar", "plain")
DEFAULT_PATTERNS = {
    "custom": ("*.dump",),
    "tar": ("*.tar",),
    "plain": ("*.sql", "*.sql.gz"),
    "directory": ("*",),
}
MAX_STATE_BYTES = 16 << 20  # LATEST JSON: refused unread beyond
MAX_HISTORY_BYTES = 256 << 20  # runs.jsonl, read whole
RESTORE_CODES = frozenset({NOT_RESTORABLE, RESTORE_MISMATCH, TABLE_MISSING})


def parse_age(value: Any, where: str) -> float:
    """`max_age` in hours: 90m, 26h, 2d, or a number of hours."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhd])\s*", str(value))
    if not match or float(match.group(1)) <= 0:
        raise TargetError(f"target: '{where}' = {value!r} is not an age: write e.g. 90m, 26h, 2d")
    return float(match.group(1)) * {"m": 1 / 60, "h": 1.0, "d": 24.0}[match.group(2)]


@dataclass(frozen=True)
class BackupConfig:
    infra: InfraConfig
    folder: Path
    format: str
    patterns: tuple[str, ...]
    max_age_hours: float
    tables: tuple[str, ...]
    restore: dict[str, Any]
    runs_file: Path | None
    latest_file: Path | None
    run_command: list[str] | None
    fix_command: list[str] | None
    drill_timeout: float = 3600.0
    read_timeout: float = 1800.0

    @classmethod
    def from_target(cls, target: Target) -> BackupConfig:
        infra = InfraConfig.from_target(target)
        part = infra.section("backups")
        if not part:
            raise TargetError(
                f"target {target.path} has no 'backups' section, which this runbook needs: "
                "add backups: {path: <folder of the dumps>, format: custom, max_age: 26h}"
            )
        folder = infra.path(part.get("path"), "backups.path")
        if not folder.is_dir():
            raise TargetError(
                f"target {target.path}: 'backups.path' = {part.get('path')!r} is not a folder "
                f"({folder}): fix the path (the folder the backup job writes its dumps into)"
            )
        fmt = str(part.get("format", "custom"))
        if fmt not in FORMATS:
            raise TargetError(
                f"target {target.path}: 'backups.format' = {fmt!r}: one of {', '.join(FORMATS)}"
            )
        raw = part.get("pattern")
        patterns = DEFAULT_PATTERNS[fmt] if raw is None else raw
        patterns = (patterns,) if isinstance(patterns, str) else patterns
        if not isinstance(patterns, (list, tuple)) or not all(
            isinstance(p, str) and p and "/" not in p for p in patterns
        ):
            raise TargetError(
                f"target {target.path}: 'backups.pattern' must be a file name pattern (or a "
                "list of them) inside backups.path, e.g. '*.dump'"
            )
        tables = part.get("tables") or []
        if not isinstance(tables, list) or not all(isinstance(t, str) and t for t in tables):
            raise TargetError(f"target {target.path}: 'backups.tables' must be a list of names")
        restore = part.get("restore") or {}
        if not isinstance(restore, dict):
            raise TargetError(f"target {target.path}: 'backups.restore' must be a mapping")
        job = part.get("job") or {}
        if not isinstance(job, dict):
            raise TargetError(f"target {target.path}: 'backups.job' must be a mapping")
        return cls(
            infra=infra,
            folder=folder,
            format=fmt,
            patterns=tuple(patterns),
            max_age_hours=parse_age(part.get("max_age", "26h"), "backups.max_age"),
            tables=tuple(qualified(t) for t in tables),
            restore=restore,
            runs_file=infra.optional_path(job, "runs", "backups.job"),
            latest_file=infra.optional_path(job, "latest", "backups.job"),
            run_command=argv(job.get("run_command"), "backups.job.run_command", target),
            fix_command=argv(job.get("fix_command"), "backups.job.fix_command", target),
            drill_timeout=float(restore.get("timeout_s", 3600)),
            read_timeout=float(part.get("read_timeout_s", 1800)),
        )

    @property
    def drill_configured(self) -> bool:
        return any(k in self.restore for k in ("scratch_dsn_env", "scratch_dsn_file"))

    def scratch_dsn(self) -> str | None:
        return target_secrets.resolve(
            self.restore, "scratch_dsn", "backups.restore", self.infra.base
        )

    def pg_tool(self, tool: str) -> str:
        return self.infra.service.pg_bin(tool)


# --- the job's status records (optional) -------------------------------------------------


def read_history(config: BackupConfig) -> tuple[list[dict[str, Any]], int]:
    """Run records, oldest first, and how many lines were malformed; [] without `job.runs`.
    A history that is a link, a FIFO or too large raises `FileProblemError`, unread."""
    if config.runs_file is None:
        return [], 0
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
    runs = [r for r in runs if str(r["run"]) not in removed]
    runs.sort(key=lambda r: str(r.get("started", "")))
    return runs, bad


def read_latest(config: BackupConfig) -> dict[str, Any] | None:
    if config.latest_file is None:
        return None
    try:
        value = strict_json.load_file(config.latest_file, MAX_STATE_BYTES)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _reason(error: str) -> str:
    """A job's error without the run-specific file name."""
    return re.sub(r'"[^"]*"', '"…"', error).strip() or "unknown error"


def record_for(runs: list[dict[str, Any]], dump: Dump) -> dict[str, Any] | None:
    """The newest successful record naming this dump (by file name)."""
    found = [r for r in runs if r.get("ok") and Path(str(r.get("file", ""))).name == dump.name]
    return found[-1] if found else None


# --- the assessment ----------------------------------------------------------------------


@dataclass
class BackupReport(FindingsReport):
    dumps: list[Dump]
    runs: list[dict[str, Any]]
    latest: dict[str, Any] | None
    newest: Dump | None = None
    findings: list[Finding] = field(default_factory=list)
    read: ReadCheck | None = None
    ignored: list[str] = field(default_factory=list)

    @property
    def age_hours(self) -> float | None:
        return None if self.newest is None else self.newest.age_hours(datetime.now(UTC))


def assess(config: BackupConfig, now: datetime | None = None) -> BackupReport:
    """The dumps in the folder, the newest one's age and whole read, and the records."""
    now = datetime.now(UTC) if now is None else now
    dumps, ignored = find_dumps(config)
    try:
        runs, bad, refused = *read_history(config), None
    except FileProblemError as exc:
        runs, bad, refused = [], 0, exc
    report = BackupReport(dumps, runs, read_latest(config), ignored=ignored)
    add = report.findings.append
    folder = config.infra.rel(config.folder)
    if ignored:
        add(
            Finding(
                IN_PROGRESS,
                folder,
                severity=INFO,
                message=f"{len(ignored)} in-progress file(s) ignored: {', '.join(ignored[:3])}",
            )
        )
    if not dumps:
        patterns = ", ".join(config.patterns)
        add(Finding(NO_BACKUP, folder, message=f"no {config.format} dump ({patterns}) in {folder}"))
    else:
        newest = report.newest = dumps[0]
        if newest.age_hours(now) > config.max_age_hours:
            add(
                Finding(
                    STALE,
                    "newest dump",
                    field="/modified",
                    message=f"older than the {config.max_age_hours:g} h policy",
                )
            )
        report.read = read_whole(config, newest)
        report.findings.extend(report.read.findings)
        if report.read.readable and config.tables:
            absent = [t for t in config.tables if t not in report.read.toc_tables]
            if absent:
                add(
                    Finding(
                        TABLE_MISSING,
                        "newest dump",
                        field="/toc",
                        message=f"no table data for {', '.join(absent)}",
                    )
                )
    _judge_records(config, report, runs, bad, refused)
    return report


def _judge_records(
    config: BackupConfig,
    report: BackupReport,
    runs: list[dict[str, Any]],
    bad: int,
    refused: FileProblemError | None,
) -> None:
    add = report.findings.append
    if config.runs_file is None:
        return
    where = config.infra.rel(config.runs_file)
    if refused is not None:
        add(
            Finding(
                MALFORMED,
                where,
                severity=HOLD,
                message=f"the job's records are refused unread: {refused.reason}",
            )
        )
    if bad:
        add(Finding(MALFORMED, where, severity=INFO, message=f"{bad} unreadable record(s) ignored"))
    if runs and not runs[-1].get("ok"):
        failed = 0
        for row in reversed(runs):
            if row.get("ok"):
                break
            failed += 1
        add(
            Finding(
                LAST_RUN_FAILED,
                "backup job",
                message=f"the job's records: the last {failed} run(s) failed: "
                f"{_reason(str(runs[-1].get('error', '')))}",
            )
        )
    newest = report.newest
    row = None if newest is None else record_for(runs, newest)
    recorded = None if row is None or newest is None or newest.directory else row.get("sha256")
    if newest is not None and recorded and sha256_file(newest.path) != recorded:
        add(
            Finding(
                CHECKSUM,
                "newest dump",
                field="/sha256",
                message="the newest dump's bytes differ from the sha256 its run recorded",
            )
        )
    latest = report.latest
    if latest is not None and latest.get("file"):
        name = Path(str(latest["file"])).name
        if not any(d.name == name for d in report.dumps):
            add(
                Finding(
                    FILE_MISSING,
                    "LATEST",
                    field="/file",
                    message="LATEST names a dump that is gone",
                )
            )


@dataclass
class RestoreCheck:
    """Whether the newest dump restores: the drill and what it proved."""

    dump: str
    findings: list[Finding]
    drill: Drill | None

    @property
    def status(self) -> str:
        return verdict(self.findings)


def verify_restore(config: BackupConfig, report: BackupReport, drill: bool = True) -> RestoreCheck:
    """The restore claim about the newest dump: drilled when a scratch database is named."""
    newest = report.newest
    if newest is None:
        finding = Finding(NO_BACKUP, "backups", message="no dump to restore")
        return RestoreCheck("", [finding], None)
    name = "newest dump"  # the file name is in the restore check's `dump` (evidence)
    if report.read is not None and not report.read.readable:
        finding = Finding(
            NOT_RESTORABLE, name, message="it cannot be read whole, so it cannot restore"
        )
        return RestoreCheck(newest.name, [finding], None)
    if not drill:
        finding = Finding(
            UNVERIFIABLE, name, severity=HOLD, message="restore drill off: not proven"
        )
        return RestoreCheck(newest.name, [finding], None)
    if not config.drill_configured:
        finding = Finding(
            UNVERIFIABLE,
            name,
            severity=HOLD,
            message="no scratch database named (backups.restore.scratch_dsn_env or "
            "scratch_dsn_file): restorability not proven",
        )
        return RestoreCheck(newest.name, [finding], None)
    try:
        dsn = config.scratch_dsn()
    except TargetError as exc:  # named, but unusable (variable unset, file absent or open)
        finding = Finding(UNVERIFIABLE, name, severity=HOLD, message=str(exc))
        return RestoreCheck(newest.name, [finding], None)
    assert dsn is not None
    result = restore_drill(config, newest, dsn)
    findings = []
    if result.held:
        findings.append(Finding(UNVERIFIABLE, name, severity=HOLD, message=str(result.error)))
    elif not result.ok:
        findings.append(
            Finding(
                NOT_RESTORABLE,
                name,
                field="/restore",
                message=f"the restore drill failed: {result.error}",
            )
        )
    else:
        absent = [t for t in config.tables if t not in result.counts]
        if absent:
            findings.append(
                Finding(
                    TABLE_MISSING,
                    name,
                    field="/restore",
                    message=f"not restored: {', '.join(absent)}",
                )
            )
        row = record_for(report.runs, newest)
        recorded = (row or {}).get("counts") or {}
        differ = sorted(t for t, n in recorded.items() if result.counts.get(qualified(str(t))) != n)
        if differ:
            findings.append(
                Finding(
                    RESTORE_MISMATCH,
                    name,
                    field="/counts",
                    message="restored row counts differ from the job's record for "
                    + ", ".join(differ),
                )
            )
    return RestoreCheck(newest.name, findings, result)


# --- the verification checks -------------------------------------------------------------


@dataclass(frozen=True)
class VerificationCheck:
    name: str
    status: str
    detail: str
    examined: int
    in_scope: int = 1
    unit: str = "dumps"


def _status(findings: list[Finding]) -> str:
    return str(verdict(findings))


def verification_checks(
    config: BackupConfig, final: BackupReport, proof: RestoreCheck | None
) -> list[VerificationCheck]:
    """The runbook's verification, from a fresh assessment and the restore proof."""
    folder = config.infra.rel(config.folder)

    def of(*codes: str) -> list[Finding]:
        return [f for f in final.findings if f.code in codes]

    def text(findings: list[Finding], good: str) -> str:
        return (
            "; ".join(f"{f.subject}: {f.message}" for f in findings if f.severity != INFO) or good
        )

    def check(name: str, findings: list[Finding], good: str, unit: str) -> VerificationCheck:
        status = _status(findings)
        return VerificationCheck(name, status, text(findings, good), int(status != "HOLD"), 1, unit)

    none = of(NO_BACKUP)
    out = [
        check("backup-present", none, f"{len(final.dumps)} dump(s) in {folder}", "backup folders"),
        check(
            "backup-freshness",
            none + of(STALE),
            f"the newest dump is within the {config.max_age_hours:g} h policy",
            "dumps",
        ),
    ]
    if final.read is None:
        out.append(check("backup-readable", none, "", "dumps"))
    else:
        read = final.read.findings + of(TABLE_MISSING, CHECKSUM)
        good = f"read whole ({final.read.method})"
        if config.format == "plain":
            good += "; a plain dump's statements are proven by the restore drill only"
        out.append(check("backup-readable", read, good, "dumps"))
    restore = (
        proof.findings
        if proof is not None
        else [Finding(UNVERIFIABLE, "backups", severity=HOLD, message="no restore proof")]
    )
    out.append(
        check(
            "backup-restorable",
            restore,
            "the newest dump restores into a scratch database"
            + (f" with {', '.join(config.tables)}" if config.tables else ""),
            "restore drills",
        )
    )
    if config.runs_file is not None:
        records = of(LAST_RUN_FAILED) + [f for f in of(MALFORMED) if f.severity == HOLD]
        if not final.runs and not records:
            records = [Finding(MALFORMED, "backup job", severity=HOLD, message="no run recorded")]
        out.append(
            check(
                "backup-last-run", records, "the job's last recorded run succeeded", "backup jobs"
            )
        )
    return out


# --- acting through what the target names ------------------------------------------------


def newest_name(config: BackupConfig) -> str | None:
    dumps, _ = find_dumps(config)
    return dumps[0].name if dumps else None


def take_backup(config: BackupConfig) -> dict[str, Any]:
    """Run the job now (`backups.job.run_command`) and read the new dump whole; raises when
    the run leaves no new dump or the new dump does not read whole."""
    if config.run_command is None:
        raise TargetError("backups.job.run_command is not set: take the backup by hand")
    before = find_dumps(config)[0]
    previous = (before[0].name, before[0].mtime) if before else None
    result = run_command(config.infra, config.run_command, "backups.job.run_command")
    after = find_dumps(config)[0]
    if not after or (after[0].name, after[0].mtime) == previous:
        raise RuntimeError("the backup command exited 0 but wrote no new dump into backups.path")
    read = read_whole(config, after[0], "new dump")
    if not read.readable:
        raise RuntimeError(
            "the new dump does not read whole: " + "; ".join(f.message for f in read.findings)
        )
    return {
        "command": result["command"],
        "exit": result["exit"],
        "file": after[0].name,
        "bytes": after[0].size,
        "toc_tables": read.toc_tables,
    }


def manual_fix_instruction(config: BackupConfig, report: BackupReport) -> str:
    reason = ""
    if report.runs and not report.runs[-1].get("ok"):
        reason = f" Its last recorded run failed: {_reason(str(report.runs[-1].get('error', '')))}."
    return (
        f"Make the backup job write its dumps into {config.folder} again.{reason} Check that "
        f"the destination is mounted, writable and has room (`df -h {config.folder}`), and "
        "that the job's schedule and configuration point there; then run the job once (see "
        "the recovery step) and re-run this runbook."
    )


def manual_run_instruction(config: BackupConfig) -> str:
    flag = {"custom": "-Fc", "directory": "-Fd", "tar": "-Ft", "plain": "-Fp"}[config.format]
    return (
        "Run the backup job now (its scheduler's `run now`, e.g. `systemctl start "
        f"<backup unit>`), or by hand: `pg_dump {flag} --file={config.folder}/"
        f'<db>-$(date -u +%Y%m%dT%H%M%SZ).dump "$DSN"` (write to a .partial name and '
        "rename when pg_dump exits 0); then re-run RBK-infra-backup-failure to verify it."
    )


@undoable("infra.restore_backup_job")
def _undo_restore_backup_job(target: Target, previous: dict[str, Any]) -> dict[str, Any]:
    """Retired with issue 17 (the runbook no longer edits a job's configuration file): the
    name stays for old ledgers and says what to do by hand."""
    raise TargetError(
        "infra.restore_backup_job is retired: put the backup job's previous configuration "
        f"back by hand: {json.dumps(previous, sort_keys=True)}"
    )


@undoable("infra.remove_backup")
def _undo_remove_backup(
    target: Target, run: str, file: str, previous_latest: dict[str, Any] | None
) -> dict[str, Any]:
    """Remove a dump a runbook's backup run wrote (a file inside `backups.path`)."""
    config = BackupConfig.from_target(target)
    dump = (config.folder / Path(file).name).resolve()
    if dump.parent != config.folder or dump.is_symlink():
        raise TargetError(f"{file!r} is not a dump inside {config.folder}")
    existed = dump.is_file()
    dump.unlink(missing_ok=True)
    return {"removed": existed, "run": run, "file": dump.name}
