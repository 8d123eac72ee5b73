"""Sandbox part: how the sandbox's services are described, with production's keys.

Writes the `remote`, `api` (URL, roles with token files, access log, metrics) and `admin`
sections. URLs use the placeholder host `sandbox-api.invalid` until `sandbox up`
renders the real port (services/target_render.py). The role tokens are fake and
deterministic (live.TOKENS) but still named by reference: live/secrets/<role>.token,
mode 0600, exactly as a production target names its secrets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..services import admin
from ..services.target_render import API_HOST, TLS_HOST, write_secret
from .live import TOKENS


def build(folder: Path, clean: bool) -> tuple[dict[str, Any], list[str]]:
    roles: dict[str, Any] = {}
    for token, role in sorted(TOKENS.items(), key=lambda item: item[1]):
        path = Path("live") / "secrets" / f"{role}.token"
        write_secret(folder / path, token)
        roles[role] = {"token_file": path.as_posix()}
    roles["anonymous"] = {}
    return {
        # The placeholder hosts (RFC 2606 `.invalid`: they never resolve) are allowed so a
        # run before `sandbox up` finds the services unreachable (HOLD), as it would find
        # any service that is down, instead of refusing a host (a cell error).
        "remote": {"allow": [API_HOST.split("//")[1], TLS_HOST.split("//")[1]]},
        "api": {
            "url": API_HOST,
            "health_path": "/health",
            "roles": roles,
            "access_log": {"path": "live/logs/access.log", "format": "combined"},
            "metrics": {
                "url": f"{API_HOST}/metrics",
                "requests_metric": "kfm_http_requests_total",
                "status_label": "status",
                "route_label": "path",
            },
        },
        "admin": {"flags_url": f"{API_HOST}/admin/flags", "command": admin.install(folder)},
    }, []
