"""The sandbox's backup job: a real pg_dump backup, with its status record.

One run reads the job's configuration (`JOB` under the sandbox folder: target folder,
tables), dumps the database with `pg_dump --format=custom` into the target folder (written
as `.partial`, renamed when complete), and appends a status record to `RUNS` — run id,
start and end (UTC), ok or the error, the dump's file, size and sha256, and the row counts
of the configured tables at dump time. A successful run moves the pointer `LATEST` to its
dump. `sandbox up` and the backup-failure fault run it (backup.py), and so does the
admin operation `backup_run` (admin_infra.py), which the sandbox target names as
`backups.job.run_command`. The runbook never calls it: it judges the dump files, whatever
wrote them. psycopg is imported only when a run counts rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..._fs import open_regular, replace_atomic
from ...checks.common import json as strict_json
from ...checks.common.files import read_regular

JOB = "live/state/backup_job.json"
RUNS = "live/state/backups/runs.jsonl"
LATEST = "live/state/backups/LATEST.json"
MAX_STATE_BYTES = 16 << 20
MAX_HISTORY_BYTES = 256 << 20


def _now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _dsn_parts(dsn: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in dsn.split() if "=" in part)


def read_job(folder: Path) -> dict[str, Any]:
    value = strict_json.load_file(folder / JOB, MAX_STATE_BYTES)
    if not isinstance(value, dict):
        raise ValueError(f"{folder / JOB}: not a JSON object")
    return value


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def read_runs(folder: Path) -> list[dict[str, Any]]:
    try:  # a link, a FIFO or an oversized history raises FileProblemError, unread
        data = read_regular(folder / RUNS, MAX_HISTORY_BYTES)
    except FileNotFoundError:
        return []
    rows = []
    for line in data.decode("utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def append_run(folder: Path, record: dict[str, Any]) -> None:
    path = folder / RUNS
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record, sort_keys=True) + "\n")
        out.flush()
        os.fsync(out.fileno())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with os.fdopen(open_regular(path), "rb") as stream:  # links refused: OSError
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _counts(dsn: str, tables: list[str]) -> dict[str, int]:
    import psycopg
    from psycopg import sql

    counts: dict[str, int] = {}
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        for table in tables:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            ).fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts


def run_job(folder: Path, dsn: str, bin_dir: Path) -> dict[str, Any]:
    """One backup run; returns (and appends) its status record. Never raises for a failed
    dump: a failure is a record with ok=false and pg_dump's error."""
    folder = folder.resolve()
    job = read_job(folder)
    started = _now()
    run_id = f"BKP-{started.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
    target_dir = str(job.get("target_dir", ""))
    tables = [str(t) for t in job.get("tables", [])]
    record: dict[str, Any] = {
        "run": run_id,
        "started": iso(started),
        "target_dir": target_dir,
        "database": _dsn_parts(dsn).get("dbname", ""),
    }
    name = f"kfm-{started.strftime('%Y%m%dT%H%M%SZ')}-{run_id[-6:]}.dump"
    out = folder / target_dir / name
    partial = out.with_name(out.name + ".partial")
    try:
        counts = _counts(dsn, tables)
        result = subprocess.run(
            [str(bin_dir / "pg_dump"), "--format=custom", f"--file={partial}", dsn],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines() or ["pg_dump failed without output"]
            raise RuntimeError(lines[-1].replace(str(folder) + "/", ""))
        partial.replace(out)
        record.update(
            ok=True,
            file=str(out.relative_to(folder)),
            size=out.stat().st_size,
            sha256=_sha256(out),
            counts=counts,
        )
    except Exception as exc:  # a failed run is a status record, not a crash of the job
        partial.unlink(missing_ok=True)
        record.update(ok=False, error=str(exc) or type(exc).__name__)
    record["finished"] = iso(_now())
    append_run(folder, record)
    if record["ok"]:
        write_json(
            folder / LATEST,
            {"run": run_id, "file": record["file"], "sha256": record["sha256"]},
        )
    return record
