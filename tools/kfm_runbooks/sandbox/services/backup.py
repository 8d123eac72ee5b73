"""The live sandbox's backup job: real pg_dump backups of the PostGIS database.

The job runner itself is backup_job.py (the sandbox's own job); this module is the
sandbox's schedule around it, and its fault.

    python -m kfm_runbooks.sandbox.services.backup --folder SANDBOX  # the nightly schedule runs

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
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..._fs import replace_atomic
from .backup_job import (
    JOB,
    LATEST,
    RUNS,
    iso,
    parse_iso,
    read_job,
    read_runs,
    run_job,
    write_json,
)

__all__ = ["JOB", "LATEST", "RUNS", "backdate", "fault", "main", "read_job", "run_job"]

BROKEN_DIR = "live/mnt/backup-volume"
FAULT_AGE_HOURS = 30


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
