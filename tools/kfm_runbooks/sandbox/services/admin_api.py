"""The sandbox's admin operations for the api domain (run by `kfm-sandbox-admin OP`).

A production API has its own admin interface; the sandbox's changes the running server's
state files under live/state/, which its server re-reads on every request:

    get_flags        {}                      -> the running feature flags
    enforce_roles    {"enforce": true}       -> {"enforce_roles", "previous", "changed"}
    block_client     {"client": "203.0.113.9"}   -> {"client", "blocked", "changed"}
    unblock_client   {"client": ...}         -> {"client", "blocked", "changed"}
    blocked_clients  {}                      -> {"clients": [...]}

Every operation is idempotent; a loopback or malformed address is never blocked.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..._fs import replace_atomic


def _state(folder: Path, name: str, default: dict[str, Any]) -> dict[str, Any]:
    path = folder / "live" / "state" / name
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return dict(default)
    if not isinstance(value, dict):
        raise ValueError(f"live/state/{name} is not a JSON object")
    return value


def _write(folder: Path, name: str, value: dict[str, Any]) -> None:
    data = (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()
    replace_atomic(folder / "live" / "state" / name, data)


def get_flags(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    return _state(folder, "flags.json", {})


def enforce_roles(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    enforce = args.get("enforce")
    if not isinstance(enforce, bool):
        raise ValueError('enforce_roles needs {"enforce": true | false}')
    authz = _state(folder, "authz.json", {"enforce_roles": True})
    previous = authz.get("enforce_roles", True) is not False
    if previous != enforce or "enforce_roles" not in authz:
        _write(folder, "authz.json", {**authz, "enforce_roles": enforce})
    return {"enforce_roles": enforce, "previous": previous, "changed": previous != enforce}


def _client(args: dict[str, Any]) -> str:
    client = args.get("client")
    try:
        address = ipaddress.ip_address(str(client))
    except ValueError:
        raise ValueError(f"refusing {client!r}: not an IP address") from None
    if address.is_loopback or address.is_unspecified:
        raise ValueError(f"refusing to block {client}: loopback or unspecified")
    return str(address)


def _clients(folder: Path) -> tuple[dict[str, Any], set[str]]:
    value = _state(folder, "blocklist.json", {"clients": []})
    clients = value.get("clients", [])
    if not isinstance(clients, list):
        raise ValueError("live/state/blocklist.json: clients is not a list")
    return value, {str(c) for c in clients}


def block_client(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    client = _client(args)
    value, current = _clients(folder)
    if client in current:
        return {"client": client, "blocked": True, "changed": False}
    _write(folder, "blocklist.json", {**value, "clients": sorted(current | {client})})
    return {"client": client, "blocked": True, "changed": True}


def unblock_client(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    client = _client(args)
    value, current = _clients(folder)
    if client not in current:
        return {"client": client, "blocked": False, "changed": False}
    _write(folder, "blocklist.json", {**value, "clients": sorted(current - {client})})
    return {"client": client, "blocked": False, "changed": True}


def blocked_clients(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    return {"clients": sorted(_clients(folder)[1])}


OPS: dict[str, Callable[[Path, dict[str, Any]], dict[str, Any]]] = {
    "get_flags": get_flags,
    "enforce_roles": enforce_roles,
    "block_client": block_client,
    "unblock_client": unblock_client,
    "blocked_clients": blocked_clients,
}
