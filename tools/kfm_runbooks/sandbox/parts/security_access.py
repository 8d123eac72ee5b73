"""Sandbox part: API access logs, the role policy and the gateway block list (`security_access`).

Ten minutes of ordinary traffic (a steward reading restricted archaeology sites, an
analyst and a viewer browsing layers) in a JSON-lines API log and a combined-format
gateway log. Seeded fault (faulty variant): the analyst account `mallory` probes the
restricted site records (8 denials in 40 s), then gets one through (a 200 on a
restricted record: an enforcement gap), and its token is replayed from two more IPs.
All addresses are documentation ranges (RFC 5737).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import yaml

FOLDER = "security/access"
RUNBOOK = "RBK-security-unauthorized-access"
START = dt.datetime(2026, 6, 1, 10, 0, 0, tzinfo=dt.UTC)
OFFENDER = "mallory"
RESTRICTED = "/api/v1/sites/restricted"

POLICY = {
    "restricted": {RESTRICTED: ["steward", "admin"], "/api/v1/admin": ["admin"]},
    "users": {"alice": "steward", "bob": "analyst", "carol": "viewer", OFFENDER: "analyst"},
    "thresholds": {"denied_burst": 5, "window_seconds": 60, "token_max_ips": 2},
}


def _event(
    seconds: int, user: str, role: str, ip: str, path: str, status: int, token: str
) -> dict[str, Any]:
    moment = START + dt.timedelta(seconds=seconds)
    return {
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "user": user,
        "role": role,
        "ip": ip,
        "method": "GET",
        "path": path,
        "status": status,
        "token_id": token,
    }


def _normal() -> list[dict[str, Any]]:
    events = []
    for minute in range(10):
        base = minute * 60
        events.append(
            _event(
                base + 5,
                "alice",
                "steward",
                "203.0.113.10",
                f"{RESTRICTED}/ks-arch-{minute:04d}",
                200,
                "tok-alice-01",
            )
        )
        events.append(
            _event(
                base + 20,
                "bob",
                "analyst",
                "198.51.100.7",
                f"/api/v1/layers/hydrology-huc12/tiles/{minute}",
                200,
                "tok-bob-01",
            )
        )
        events.append(
            _event(
                base + 41,
                "carol",
                "viewer",
                "192.0.2.31",
                "/api/v1/catalog?page=" + str(minute),
                200 if minute != 6 else 404,
                "tok-carol-01",
            )
        )
    events.append(
        _event(
            250, "bob", "analyst", "198.51.100.7", f"{RESTRICTED}/ks-arch-0007", 403, "tok-bob-01"
        )
    )
    return events


def _attack() -> list[dict[str, Any]]:
    events = [
        _event(
            240 + 5 * i,
            OFFENDER,
            "analyst",
            "203.0.113.66",
            f"{RESTRICTED}/ks-arch-{40 + i:04d}",
            403,
            "tok-mallory-7",
        )
        for i in range(8)
    ]
    events.append(
        _event(
            290,
            OFFENDER,
            "analyst",
            "203.0.113.66",
            f"{RESTRICTED}/ks-arch-0042",
            200,
            "tok-mallory-7",
        )
    )
    events.append(
        _event(
            370,
            OFFENDER,
            "analyst",
            "198.51.100.23",
            "/api/v1/layers/archaeology/tiles/3",
            200,
            "tok-mallory-7",
        )
    )
    events.append(
        _event(
            490,
            OFFENDER,
            "analyst",
            "192.0.2.45",
            "/api/v1/layers/archaeology/tiles/4",
            200,
            "tok-mallory-7",
        )
    )
    return events


def _gateway() -> str:
    lines = []
    for minute in range(0, 10, 2):
        stamp = (START + dt.timedelta(minutes=minute, seconds=7)).strftime(
            "%d/%b/%Y:%H:%M:%S +0000"
        )
        lines.append(
            f'203.0.113.10 - alice [{stamp}] "GET /maps/sites HTTP/1.1" 200 5120 "-" "kfm-web/3"'
        )
        lines.append(
            f'198.51.100.7 - bob [{stamp}] "GET /maps/hydrology HTTP/1.1" 200 2048 "-" "kfm-web/3"'
        )
    return "\n".join(lines) + "\n"


def build(folder: Path, clean: bool) -> tuple[dict[str, Any], list[str]]:
    base = folder / FOLDER
    (base / "logs").mkdir(parents=True, exist_ok=True)
    events = _normal() + ([] if clean else _attack())
    events.sort(key=lambda e: (e["time"], e["user"], e["path"]))
    (base / "logs" / "api-access.jsonl").write_text(
        "".join(json.dumps(e, sort_keys=True) + "\n" for e in events), encoding="utf-8"
    )
    (base / "logs" / "gateway.log").write_text(_gateway(), encoding="utf-8")
    (base / "policy.yaml").write_text(yaml.safe_dump(POLICY, sort_keys=True), encoding="utf-8")
    blocklist = {
        "note": "Gateway block list (read by the API gateway on every request).",
        "entries": [
            {
                "kind": "ip",
                "value": "192.0.2.250",
                "reason": "vulnerability scanner",
                "incident": "INC-20260415-002",
                "added": "2026-04-15T08:00:00.000Z",
            }
        ],
    }
    (base / "blocklist.yaml").write_text(
        yaml.safe_dump(blocklist, sort_keys=False), encoding="utf-8"
    )
    section = {
        "logs": [f"{FOLDER}/logs/api-access.jsonl", f"{FOLDER}/logs/gateway.log"],
        "policy": f"{FOLDER}/policy.yaml",
        "blocklist": f"{FOLDER}/blocklist.yaml",
    }
    faults = (
        []
        if clean
        else [
            f"security: analyst account {OFFENDER} — 8 denied requests in 35 s on restricted "
            "sites, one restricted record served, its token replayed from 3 IPs "
            f"(SEC_ACCESS_DENIED_BURST, SEC_ACCESS_RESTRICTED_GRANTED, SEC_ACCESS_TOKEN_MULTI_IP) "
            f"— {RUNBOOK}"
        ]
    )
    return {"security_access": section}, faults
