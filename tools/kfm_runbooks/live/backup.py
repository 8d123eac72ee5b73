"""The live sandbox's backup job: real pg_dump backups of the PostGIS database.

    python -m kfm_runbooks.live.backup --folder SANDBOX     # what the nightly schedule runs

One run reads the job's configuration (live/state/backup_job.json: target folder,
database), dumps the database with `pg_dump --format=custom` into the target folder
(written as `.partial`, renamed when complete), and appends a status record to
live/state/backups/runs.jsonl — run id, start and end (UTC), ok or the error, the dump's
file, size and sha256, and the row counts of the configured tables at dump time. A
successful run moves the pointer live/state/backups/LATEST.json to its dump. The sandbox
has no cron daemon: `sandbox up` runs the job once (the first backup), and the
backup-failure fault runs it (the next scheduled run, which fails).

The backup-failure fault (`fault(folder, dsn, on=True)`) points the job at a backup volume
that is not mounted (live/mnt/backup-volume), moves the recorded history 30 hours into the
past (the nightly runs since then are what failed), and runs the job, which fails for real.
Switching it off restores the intended job configuration and runs the job again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .._fs import replace_atomic

JOB = "live/state/backup_job.json"
RUNS = "live/state/backups/runs.jsonl"
LATEST = "live/state/backups/LATEST.json"
BROKEN_DIR = "live/mnt/backup-volume"
FAULT_AGE_HOURS = 30


def _now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _dsn_parts(dsn: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in dsn.split() if "=" in part)


def read_job(folder: Path) -> dict[str, Any]:
    value: dict[str, Any] = json.loads((folder / JOB).read_text())
    return value


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def read_runs(folder: Path) -> list[dict[str, Any]]:
    path = folder / RUNS
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
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
    with path.open("rb") as stream:
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


def backdate(folder: Path, hours: float) -> int:
    """Move the recorded history (records and dump files' mtimes) `hours` into the past."""
    shift = timedelta(hours=hours)
    rows = read_runs(folder)
    for row in rows:
        for key in ("started", "finished"):
            if isinstance(row.get(key), str):
                row[key] = iso(parse_iso(row[key]) - shift)
        dump = folder / str(row.get("file", ""))
        if row.get("file") and dump.is_file():
            stamp = dump.stat().st_mtime - shift.total_seconds()
            os.utime(dump, (stamp, stamp))
    body = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    replace_atomic(folder / RUNS, body.encode())
    return len(rows)


def fault(folder: Path, dsn: str, bin_dir: Path, on: bool, intended: dict[str, Any]) -> None:
    job = read_job(folder)
    if on:
        write_json(folder / JOB, {**job, "target_dir": BROKEN_DIR})
        backdate(folder, FAULT_AGE_HOURS)
    else:
        write_json(folder / JOB, {**job, **intended})
    run_job(folder, dsn, bin_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run one backup of the sandbox database")
    parser.add_argument("--folder", type=Path, required=True)
    args = parser.parse_args()
    services = json.loads((args.folder / "live" / "services.json").read_text())
    record = run_job(
        args.folder, services["postgres"]["dsn"], Path(services["postgres"]["bin_dir"])
    )
    print(json.dumps(record, indent=2, sort_keys=True))
    raise SystemExit(0 if record["ok"] else 1)


if __name__ == "__main__":
    main()
