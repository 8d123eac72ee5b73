"""Sandbox part: an ingest service's settings and log (target section `security_secrets`).

Seeded fault (faulty variant): the service's AWS key pair was written into its settings
file and its bearer token echoed into its debug log. The credentials are obviously fake
(`...SANDBOX...FAKE...`) but match the patterns; they are assembled here at build time so
that this repository holds no credential-shaped literal. The clean variant reads every
credential from secret-store references.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FOLDER = "security/secrets"
RUNBOOK = "RBK-security-secret-exposure"


def fake_credentials() -> dict[str, str]:
    """The sandbox's fake credentials (tests use them to prove they never leak)."""
    return {
        "aws-access-key-id": "AK" + "IA" + "KFMSANDBOX" + "FAKE01",
        "aws-secret-access-key": "KfmSandbox" + "FakeSecret" + "0" * 10 + "NotReal" + "000",
        "bearer-token": "sbx" + "FakeBearer" + "Token" + "0123456789",
    }


def _settings(clean: bool) -> str:
    creds = fake_credentials()
    lines = [
        "# ingest-service settings (KFM sandbox)",
        "KFM_API_URL=https://api.kfm.example/v1",
        "AWS_REGION=us-east-2",
    ]
    if clean:
        lines += [
            "AWS_ACCESS_KEY_ID_REF=vault://kfm/ingest/aws-access-key-id",
            "AWS_SECRET_ACCESS_KEY_REF=vault://kfm/ingest/aws-secret-access-key",
        ]
    else:
        lines += [
            "AWS_ACCESS_KEY_ID=" + creds["aws-access-key-id"],
            "AWS_SECRET_ACCESS_KEY=" + creds["aws-secret-access-key"],
        ]
    lines += ["KFM_DB_PASSWORD_REF=vault://kfm/ingest/db", "BATCH_SIZE=500", ""]
    return "\n".join(lines)


def _log(clean: bool) -> str:
    header = (
        '"Authorization": "<omitted>"'
        if clean
        else '"Authorization": "Bearer ' + fake_credentials()["bearer-token"] + '"'
    )
    return "\n".join(
        [
            "2026-06-01T10:00:00Z INFO  ingest run sbx-001 started (12 items queued)",
            "2026-06-01T10:00:01Z DEBUG POST https://api.kfm.example/v1/items headers={"
            + header
            + "}",
            "2026-06-01T10:00:02Z INFO  12 items accepted, 0 rejected",
            "2026-06-01T10:00:03Z INFO  ingest run sbx-001 finished in 2.9 s",
            "",
        ]
    )


def build(folder: Path, clean: bool) -> tuple[dict[str, Any], list[str]]:
    base = folder / FOLDER
    (base / "ingest-service" / "logs").mkdir(parents=True, exist_ok=True)
    (base / "ingest-service" / "settings.env").write_text(_settings(clean), encoding="utf-8")
    (base / "ingest-service" / "logs" / "api.log").write_text(_log(clean), encoding="utf-8")
    (base / "ingest-service" / "config.yaml").write_text(
        "service: ingest\napi_key_ref: vault://kfm/ingest/api-key\ntimeout_s: 30\n",
        encoding="utf-8",
    )
    section = {
        "paths": [f"{FOLDER}/ingest-service"],
        "quarantine": f"{FOLDER}/.quarantine",
        "rotation": f"{FOLDER}/rotation-checklist.yaml",
    }
    faults = (
        []
        if clean
        else [
            "security: ingest-service/settings.env holds a (fake) AWS key pair and its debug log a "
            f"bearer token (SEC_SECRET_EXPOSED) — {RUNBOOK}"
        ]
    )
    return {"security_secrets": section}, faults
