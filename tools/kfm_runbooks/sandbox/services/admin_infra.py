"""The sandbox's admin operations for its backup job (see admin.py).

    backup_fix   point the job back at its intended folder (what mounting the backup
                 volume again is on a real host); {} when it already is
    backup_run   run the job once now (a real pg_dump into its folder, a status record)

The target names them as `backups.job.fix_command` / `run_command`
(`live/bin/kfm-sandbox-admin backup_fix`), exactly as a production target names its own
commands (`systemctl start mnt-backup.mount`, `systemctl start kfm-backup.service`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .backup_job import JOB, read_job, run_job, write_json

SERVICES = Path("live") / "services.json"
REFERENCE = Path("live") / "infra.json"


def backup_fix(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    intended = json.loads((folder / REFERENCE).read_text())["backup_job"]
    job = read_job(folder)
    if job.get("target_dir") == intended["target_dir"]:
        return {"changed": False, "target_dir": job.get("target_dir")}
    write_json(folder / JOB, {**job, "target_dir": intended["target_dir"]})
    (folder / str(intended["target_dir"])).mkdir(parents=True, exist_ok=True)
    return {
        "changed": True,
        "previous": job.get("target_dir"),
        "target_dir": intended["target_dir"],
    }


def backup_run(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    services = json.loads((folder / SERVICES).read_text())
    pg = services["postgres"]
    record = run_job(folder, str(pg["dsn"]), Path(pg["bin_dir"]))
    if not record.get("ok"):
        raise ValueError(f"the backup run failed: {record.get('error')}")
    return {"run": record["run"], "file": record["file"], "size": record["size"]}


OPS = {"backup_fix": backup_fix, "backup_run": backup_run}
