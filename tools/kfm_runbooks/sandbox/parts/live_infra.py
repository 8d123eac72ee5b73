"""Sandbox part: the live side's infrastructure (data volume, TLS endpoint, backups).

Writes the reference live/infra.json (the intended data volume size, TLS policy and
backup job configuration, which `sandbox up` and the fault switches read) and the backup
job's configuration live/state/backup_job.json (the sandbox job's own state, which the
backup-failure fault breaks). Everything that is not deterministic — the tmpfs,
certificates and keys, dumps — is made by `sandbox up`, never here.

The target gets production's keys (README, "Pointing runbooks at production" -> infra):
`disk` (the data volume, the database's data_directory, the evidence folder), `tls` (the
API's HTTPS listener: placeholder host until `sandbox up` renders its port; renewed from
the sandbox CA's files) and `backups` (the dump folder; the drill's scratch server is the
sandbox's own PostgreSQL, named by its DSN file; the job's records and its admin
operations `backup_fix` / `backup_run`, services/admin_infra.py). No static fault is
seeded: the infra faults are live faults (`kfm-runbook sandbox fault
disk-pressure|cert-expiry|backup-failure --on`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..services.admin import SCRIPT
from ..services.target_render import DSN_FILE, TLS_HOST

BACKUP_JOB = {
    "target_dir": "live/backups",
    "format": "custom",
    "tables": ["counties", "observations"],
    "schedule": "nightly 02:00 UTC",
}


def reference() -> dict[str, Any]:
    return {
        "data_volume": {"path": "live/data", "size_mib": 16, "inodes": 448},
        "tls": {
            "hostname": "localhost",
            "ips": ["127.0.0.1"],
            "validity_days": 90,
            "ca_days": 3650,
        },
        "backup_job": BACKUP_JOB,
    }


def sections() -> dict[str, Any]:
    admin = SCRIPT.as_posix()
    return {
        "disk": {
            "quarantine": "live/quarantine/disk",
            "volumes": [
                {
                    "name": "data",
                    "path": "live/data",
                    "dedicated": True,
                    "min_free_percent": 15,
                    "min_free_inodes_percent": 10,
                    "reclaimable": {"temp": ["tmp/*.tmp"], "rotated_logs": ["logs/*.log.[0-9]*"]},
                    "reclaim_min_age_minutes": 30,
                },
                {
                    "name": "postgres",
                    "postgres": "data_directory",
                    "min_free_percent": 5,
                    "min_free_inodes_percent": 5,
                },
                {
                    "name": "evidence",
                    "workspace": "10_evidence",
                    "min_free_percent": 5,
                    "min_free_inodes_percent": 5,
                },
            ],
        },
        "tls": [
            {
                "url": TLS_HOST,
                "hostname": "localhost",
                "ca_file": "live/tls/ca/ca.crt",
                "min_days": 14,
                "cert_file": "live/state/tls/server.crt",
                "key_file": "live/state/tls/server.key",
                "renew": {
                    "issuer_cert": "live/tls/ca/ca.crt",
                    "issuer_key": "live/tls/ca/ca.key",
                    "archive": "live/state/tls/archive",
                    "days": 90,
                },
            }
        ],
        "backups": {
            "path": BACKUP_JOB["target_dir"],
            "format": "custom",
            "max_age": "26h",
            "tables": ["public.counties", "public.observations"],
            "restore": {"scratch_dsn_file": DSN_FILE.as_posix()},
            "job": {
                "runs": "live/state/backups/runs.jsonl",
                "latest": "live/state/backups/LATEST.json",
                "fix_command": [admin, "backup_fix"],
                "run_command": [admin, "backup_run"],
            },
        },
    }


def _dump(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


def build(folder: Path, clean: bool) -> tuple[dict[str, Any], list[str]]:
    live = folder / "live"
    _dump(live / "infra.json", reference())
    _dump(live / "state" / "backup_job.json", BACKUP_JOB)
    (folder / str(BACKUP_JOB["target_dir"])).mkdir(parents=True, exist_ok=True)
    return sections(), []
