"""The sandbox's target describes the running sandbox with the same keys as production.

`sandbox create` writes the target with placeholder hosts, because ports are only known
when `sandbox up` starts the services:

    http://sandbox-api.invalid   the sandbox API (`.invalid` never resolves: RFC 2606)
    https://sandbox-tls.invalid  the TLS endpoint

and keeps that text as live/target.template.yaml. `render` (called by `up` once the
services answer) writes target.yaml from the template with the real loopback URLs, the
PostgreSQL client folder, and the DSN into live/secrets/postgres.dsn (mode 0600: the
target names it by reference, like any secret). Before the first `up`, the placeholder
hosts (listed in the target's remote.allow) do not resolve: service runbooks find the
services unreachable and HOLD, as they would for any service that is down.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ..._fs import replace_atomic

API_HOST = "http://sandbox-api.invalid"
TLS_HOST = "https://sandbox-tls.invalid"
TEMPLATE = Path("live") / "target.template.yaml"
DSN_FILE = Path("live") / "secrets" / "postgres.dsn"


def write_secret(path: Path, value: str) -> None:
    """A secret file, owner-only from its creation (never world-readable, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    tmp.replace(path)


def render(folder: Path, state: dict[str, Any]) -> Path:
    """Write target.yaml for the services in `state` (services.json); returns its path."""
    template = folder / TEMPLATE
    text = template.read_text(encoding="utf-8")
    api = state.get("api") or {}
    if api.get("url"):
        text = text.replace(API_HOST, str(api["url"]).rstrip("/"))
    tls = state.get("tls") or {}
    if tls.get("url"):
        text = text.replace(TLS_HOST, str(tls["url"]).rstrip("/"))
    data = yaml.safe_load(text)
    postgres = state.get("postgres") or {}
    if isinstance(data, dict) and postgres.get("dsn"):
        write_secret(folder / DSN_FILE, str(postgres["dsn"]))
        section = data.setdefault("postgres", {})
        section["dsn_file"] = DSN_FILE.as_posix()
        if postgres.get("bin_dir"):
            section["bin_dir"] = str(postgres["bin_dir"])
    comments = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    out = comments + yaml.safe_dump(data, sort_keys=False)
    replace_atomic(folder / "target.yaml", out.encode())
    return folder / "target.yaml"
