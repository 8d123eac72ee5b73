"""Sandbox part: the live side's infrastructure (data volume, TLS endpoint, backups).

Writes the reference live/infra.json (the intended data volume size, TLS policy and
backup job configuration, which `sandbox up` and the fault switches read) and the backup
job's configuration live/state/backup_job.json (the running system's state, which the
backup-failure fault breaks and RBK-infra-backup-failure repairs). Everything that is
not deterministic — the tmpfs, certificates and keys, dumps — is made by `sandbox up`,
never here. The target's `infra` section tells the infra runbooks where to look and which
thresholds apply. No static fault is seeded: the infra faults are live faults
(`kfm-runbook sandbox fault disk-pressure|cert-expiry|backup-failure --on`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def section() -> dict[str, Any]:
    return {
        "reference": "live/infra.json",
        "services": "live/services.json",
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
                    "service": "postgres",
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
        "tls": {
            "service": "tls",
            "hostname": "localhost",
            "ca_file": "live/tls/ca/ca.crt",
            "issuer_cert": "live/tls/ca/ca.crt",
            "issuer_key": "live/tls/ca/ca.key",
            "cert_file": "live/state/tls/server.crt",
            "key_file": "live/state/tls/server.key",
            "archive": "live/state/tls/archive",
            "min_days": 14,
            "renew_days": 90,
        },
        "backup": {
            "job": "live/state/backup_job.json",
            "runs": "live/state/backups/runs.jsonl",
            "latest": "live/state/backups/LATEST.json",
            "max_age_hours": 26,
        },
    }


def _dump(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


def build(folder: Path, clean: bool) -> tuple[dict[str, Any], list[str]]:
    live = folder / "live"
    _dump(live / "infra.json", reference())
    _dump(live / "state" / "backup_job.json", BACKUP_JOB)
    return {"infra": section()}, []
