"""The live sandbox's infrastructure extras, started and stopped by the supervisor.

For a sandbox whose `live/infra.json` exists (written by `sandbox create`), `sandbox up`
also (1) mounts the sandbox's own small data volume (volumes.py: a tmpfs at live/data when
permitted), (2) makes an internal CA and a server certificate with `openssl` and has the
API process serve HTTPS on a second loopback port with it (tls.py; a renewed certificate
is picked up without a restart), and (3) once the database is loaded, runs the backup
job once (backup.py: a real pg_dump). `sandbox down` unmounts the data volume and removes
its mount point (the HTTPS listener lives and dies with the API process).

Three faults act here (supervisor `_apply_external`): `disk-pressure`, `cert-expiry`,
`backup-failure`.
"""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path
from typing import Any

from ...errors import SetupError
from . import backup, tls, volumes

REFERENCE = "live/infra.json"
CA_DIR = "live/tls/ca"
SERVER_DIR = "live/state/tls"
FAULTS = frozenset({"disk-pressure", "cert-expiry", "backup-failure"})
EXPIRING_DAYS = 3


def enabled(folder: Path) -> bool:
    return (folder / REFERENCE).is_file()


def reference(folder: Path) -> dict[str, Any]:
    value: dict[str, Any] = json.loads((folder / REFERENCE).read_text())
    return value


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _issue(folder: Path, days: int) -> None:
    ref = reference(folder)["tls"]
    ca_cert, ca_key = tls.make_ca(folder / CA_DIR, int(ref["ca_days"]))
    tls.issue(
        ca_cert,
        ca_key,
        folder / SERVER_DIR,
        hostname=str(ref["hostname"]),
        ips=tuple(ref["ips"]),
        days=days,
    )


def prepare(folder: Path) -> dict[str, Any]:
    """Before the API starts: the data volume and the TLS material; {} without infra.json."""
    if not enabled(folder):
        return {}
    ref = reference(folder)
    (folder / ref["backup_job"]["target_dir"]).mkdir(parents=True, exist_ok=True)
    volume = volumes.mount(
        folder, int(ref["data_volume"]["size_mib"]), int(ref["data_volume"]["inodes"])
    )
    cert, key = folder / SERVER_DIR / "server.crt", folder / SERVER_DIR / "server.key"
    try:
        tls.load_pair(cert, key)
    except (OSError, ssl.SSLError):
        _issue(folder, int(ref["tls"]["validity_days"]))
    port = _free_port()
    return {
        "data_volume": volume,
        "tls": {
            "port": port,
            "url": f"https://127.0.0.1:{port}",
            "cert": str(cert),
            "key": str(key),
        },
    }


def api_args(extras: dict[str, Any]) -> list[str]:
    """The API's extra arguments for the HTTPS listener."""
    served = extras.get("tls")
    if not served:
        return []
    return [
        "--tls-port",
        str(served["port"]),
        "--tls-cert",
        served["cert"],
        "--tls-key",
        served["key"],
    ]


def started(folder: Path, state: dict[str, Any]) -> None:
    """Once the database answers: the first backup (a real pg_dump)."""
    if not enabled(folder):
        return
    pg = state["postgres"]
    record = backup.run_job(folder, pg["dsn"], Path(pg["bin_dir"]))
    state["backup"] = {"first_run": record["run"], "ok": record["ok"]}


def apply_fault(folder: Path, state: dict[str, Any], name: str, on: bool) -> None:
    if not enabled(folder):
        raise SetupError(f"fault {name} needs a sandbox with live/infra.json: recreate it")
    if name == "disk-pressure":
        volumes.pressure(folder, on)
    elif name == "cert-expiry":
        ref = reference(folder)["tls"]
        _issue(folder, EXPIRING_DAYS if on else int(ref["validity_days"]))
    elif name == "backup-failure":
        pg = state["postgres"]
        intended = reference(folder)["backup_job"]
        backup.fault(folder, pg["dsn"], Path(pg["bin_dir"]), on, intended)


def teardown(folder: Path) -> bool:
    """Unmount the data volume and remove its mount point; True if one was mounted."""
    return volumes.unmount(folder)
