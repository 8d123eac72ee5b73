"""Unauthorized data access: access logs against a role -> resource policy; a block list.

Logs are JSON lines (`time`, `user`, `role`, `ip`, `method`, `path`, `status`,
`token_id`) or the combined log format (`ip - user [time] "GET /path HTTP/1.1" status
size ...`, roles then come from the policy's `users` map). Query strings are dropped
and raw tokens are reduced to fingerprints on reading: nothing credential-shaped is
kept. Findings (one per offender):

- `SEC_ACCESS_DENIED_BURST`      >= N denied (401/403) from one principal (or IP) in W s
- `SEC_ACCESS_RESTRICTED_GRANTED` a 2xx on a restricted resource for a role not allowed
- `SEC_ACCESS_TOKEN_MULTI_IP`    one token used from more distinct IPs than allowed
- `SEC_ACCESS_LOG_UNPARSED`      lines that could not be read (HOLD: not verifiable)

Containment adds the offender (user, IP or token) to the block list the gateway reads,
one entry per offender, reversibly and idempotently; verification re-derives the
offenders from the logs and passes only when every one of them is blocked.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._time import now_iso, parse_iso
from ...target import Target
from .. import BLOCKING, HOLD, Finding, undoable
from .base import fingerprint, read_bytes, read_yaml, rel, write_yaml

DENIED = frozenset({401, 403})
CODES = (
    "SEC_ACCESS_DENIED_BURST",
    "SEC_ACCESS_RESTRICTED_GRANTED",
    "SEC_ACCESS_TOKEN_MULTI_IP",
)
BLOCK_KINDS = ("user", "ip", "token")
_COMBINED = re.compile(
    r'^(?P<ip>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>\S+)'
    r'(?: [^"]*)?" (?P<status>\d{3}) \S+'
)
_TOKEN_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@dataclass(frozen=True, order=True)
class Event:
    time: dt.datetime
    ip: str
    user: str  # "-" when anonymous
    role: str
    method: str
    path: str  # without query string
    status: int
    token: str = ""  # token id or fingerprint, never a raw token
    source: str = ""  # log file and line, for evidence

    @property
    def principal(self) -> tuple[str, str]:
        """Who to hold responsible: the user when known, else the client IP."""
        return ("user", self.user) if self.user not in ("", "-") else ("ip", self.ip)


@dataclass(frozen=True)
class Policy:
    restricted: dict[str, frozenset[str]]  # path prefix -> roles allowed
    users: dict[str, str]  # user -> role, for logs without roles
    denied_burst: int = 5
    window_s: int = 60
    token_max_ips: int = 2

    def restricted_prefix(self, path: str) -> str | None:
        """The restricted prefix `path` falls under (longest wins), or None."""
        best: str | None = None
        for prefix in self.restricted:
            base = prefix.rstrip("/")
            if (path == base or path.startswith(base + "/")) and (
                best is None or len(base) > len(best.rstrip("/"))
            ):
                best = prefix
        return best


@dataclass(frozen=True)
class AccessConfig:
    base: Path
    logs: tuple[Path, ...]
    policy: Path
    blocklist: Path

    @classmethod
    def from_target(cls, target: Target) -> AccessConfig:
        target.section("security_access")
        policy = target.resolve("security_access", "policy")
        blocklist = target.resolve("security_access", "blocklist")
        assert policy is not None and blocklist is not None
        return cls(
            target.base, tuple(target.resolve_many("security_access", "logs")), policy, blocklist
        )


def load_policy(config: AccessConfig) -> tuple[Policy | None, list[Finding]]:
    doc, code = read_yaml(config.policy)
    subject = rel(config.policy, config.base)
    if code is not None or not isinstance(doc, dict) or not isinstance(doc.get("restricted"), dict):
        return None, [
            Finding(
                code or "SEC_ACCESS_POLICY_INVALID",
                subject,
                "/",
                HOLD,
                "no usable `restricted:` map: restricted access cannot be judged",
            )
        ]
    restricted = {
        str(prefix): frozenset(str(r) for r in (roles or []))
        for prefix, roles in doc["restricted"].items()
        if isinstance(roles, list | type(None))
    }
    users = {str(k): str(v) for k, v in (doc.get("users") or {}).items()}
    limits = doc.get("thresholds") if isinstance(doc.get("thresholds"), dict) else {}
    assert isinstance(limits, dict)

    def number(key: str, default: int) -> int:
        value = limits.get(key, default)
        return (
            value
            if isinstance(value, int) and not isinstance(value, bool) and value > 0
            else default
        )

    return (
        Policy(
            restricted,
            users,
            denied_burst=number("denied_burst", 5),
            window_s=number("window_seconds", 60),
            token_max_ips=number("token_max_ips", 2),
        ),
        [],
    )


# --- reading logs ---------------------------------------------------------------------


def _clean_ip(value: Any) -> str:
    text = str(value or "").strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return "invalid"


def _token(record: dict[str, Any]) -> str:
    """A token's id (`token_id`, `jti`: not secret) or a raw token's fingerprint."""
    ident = _first(record, "token_id", "jti", "token_fp")
    if isinstance(ident, str) and _TOKEN_ID.fullmatch(ident):
        return ident
    raw = _first(record, "token", "access_token")
    if raw is None and ident is not None:
        raw = ident
    return fingerprint(str(raw)) if raw not in (None, "") else ""


def _first(record: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if record.get(key) not in (None, ""):
            return record[key]
    return None


def _from_json(line: str, policy: Policy | None, source: str) -> Event | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    moment = _first(record, "time", "ts", "timestamp", "@timestamp")
    status = _first(record, "status", "status_code")
    path = _first(record, "path", "uri", "url")
    if not isinstance(moment, str) or not isinstance(path, str):
        return None
    try:
        when = parse_iso(moment)
        code = int(status)
    except (TypeError, ValueError):
        return None
    user = str(_first(record, "user", "principal", "sub") or "-")
    role = _first(record, "role")
    if role is None:
        role = (policy.users.get(user) if policy else None) or "anonymous"
    return Event(
        when,
        _clean_ip(_first(record, "ip", "client_ip", "remote_addr")),
        user,
        str(role),
        str(_first(record, "method") or "GET"),
        path.split("?", 1)[0],
        code,
        _token(record),
        source,
    )


def _from_combined(line: str, policy: Policy | None, source: str) -> Event | None:
    match = _COMBINED.match(line)
    if not match:
        return None
    try:
        when = dt.datetime.strptime(match["time"], "%d/%b/%Y:%H:%M:%S %z").astimezone(dt.UTC)
    except ValueError:
        return None
    user = match["user"]
    role = (policy.users.get(user) if policy else None) or "anonymous"
    return Event(
        when,
        _clean_ip(match["ip"]),
        user,
        role,
        match["method"],
        match["path"].split("?", 1)[0],
        int(match["status"]),
        "",
        source,
    )


def read_events(
    config: AccessConfig, policy: Policy | None
) -> tuple[list[Event], list[Finding], int]:
    """Every event of every log, sorted by time; unreadable lines become one HOLD per log."""
    events: list[Event] = []
    problems: list[Finding] = []
    lines_total = 0
    for log in config.logs:
        subject = rel(log, config.base)
        data, code = read_bytes(log)
        if data is None:
            problems.append(
                Finding(code or "SEC_FILE_READ_ERROR", subject, "/", HOLD, "log not read")
            )
            continue
        bad: list[int] = []
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            lines_total += 1
            parse = _from_json if line.lstrip().startswith("{") else _from_combined
            event = parse(line, policy, f"{subject}:{number}")
            if event is None:
                bad.append(number)
            else:
                events.append(event)
        if bad:
            problems.append(
                Finding(
                    "SEC_ACCESS_LOG_UNPARSED",
                    subject,
                    f":{bad[0]}",
                    HOLD,
                    f"{len(bad)} line(s) not understood: those requests are unverified",
                )
            )
    return sorted(events), problems, lines_total


# --- detection --------------------------------------------------------------------------


@dataclass
class Offender:
    kind: str  # user | ip | token
    value: str
    codes: set[str] = field(default_factory=set)

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.value


@dataclass
class AccessScan:
    events: list[Event]
    findings: list[Finding]
    offenders: list[Offender]
    lines: int

    def offenders_for(self, code: str) -> list[Offender]:
        return [o for o in self.offenders if code in o.codes]


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bursts(
    events: list[Event], policy: Policy
) -> Iterator[tuple[tuple[str, str], int, Event, Event]]:
    by_source: dict[tuple[str, str], list[Event]] = {}
    for event in events:
        if event.status in DENIED:
            by_source.setdefault(event.principal, []).append(event)
    window = dt.timedelta(seconds=policy.window_s)
    for source, denied in sorted(by_source.items()):
        best, first, last, start = 0, denied[0], denied[0], 0
        for end, event in enumerate(denied):
            while event.time - denied[start].time > window:
                start += 1
            if end - start + 1 > best:
                best, first, last = end - start + 1, denied[start], event
        if best >= policy.denied_burst:
            yield source, best, first, last


def scan(config: AccessConfig) -> AccessScan:
    policy, findings = load_policy(config)
    events, problems, lines = read_events(config, policy)
    findings += problems
    offenders: dict[tuple[str, str], Offender] = {}

    def offend(kind: str, value: str, code: str) -> None:
        offenders.setdefault((kind, value), Offender(kind, value)).codes.add(code)

    if policy is not None:
        for (kind, value), count, first, last in _bursts(events, policy):
            offend(kind, value, "SEC_ACCESS_DENIED_BURST")
            findings.append(
                Finding(
                    "SEC_ACCESS_DENIED_BURST",
                    f"{kind}:{value}",
                    "/",
                    BLOCKING,
                    f"{count} denied requests within {policy.window_s} s "
                    f"({_iso(first.time)} .. {_iso(last.time)}; first at {first.source})",
                )
            )
        granted: dict[tuple[str, str, str], list[Event]] = {}
        for event in events:
            prefix = policy.restricted_prefix(event.path)
            if (
                prefix is not None
                and 200 <= event.status < 300
                and event.role not in policy.restricted[prefix]
            ):
                granted.setdefault((*event.principal, prefix), []).append(event)
        for (kind, value, prefix), hits in sorted(granted.items()):
            offend(kind, value, "SEC_ACCESS_RESTRICTED_GRANTED")
            findings.append(
                Finding(
                    "SEC_ACCESS_RESTRICTED_GRANTED",
                    f"{kind}:{value}",
                    "/",
                    BLOCKING,
                    f"role {hits[0].role} got {len(hits)} restricted response(s) under {prefix} "
                    f"(allowed: {', '.join(sorted(policy.restricted[prefix])) or 'nobody'}; "
                    f"first at {hits[0].source})",
                )
            )
        ips: dict[str, set[str]] = {}
        first_use: dict[str, Event] = {}
        for event in events:
            if event.token:
                ips.setdefault(event.token, set()).add(event.ip)
                first_use.setdefault(event.token, event)
        for token, seen in sorted(ips.items()):
            if len(seen) > policy.token_max_ips:
                offend("token", token, "SEC_ACCESS_TOKEN_MULTI_IP")
                findings.append(
                    Finding(
                        "SEC_ACCESS_TOKEN_MULTI_IP",
                        f"token:{token}",
                        "/",
                        BLOCKING,
                        f"used from {len(seen)} IPs ({', '.join(sorted(seen))}); "
                        f"allowed {policy.token_max_ips}; first at {first_use[token].source}",
                    )
                )
    return AccessScan(
        events, sorted(findings), sorted(offenders.values(), key=lambda o: o.key), lines
    )


def per_minute(events: list[Event]) -> list[tuple[str, int, int]]:
    """(HH:MM, allowed, denied) for every minute from the first event to the last."""
    if not events:
        return []
    start = events[0].time.replace(second=0, microsecond=0)
    end = events[-1].time.replace(second=0, microsecond=0)
    buckets: dict[dt.datetime, list[int]] = {}
    moment = start
    while moment <= end and len(buckets) < 24 * 60:
        buckets[moment] = [0, 0]
        moment += dt.timedelta(minutes=1)
    for event in events:
        slot = buckets.get(event.time.replace(second=0, microsecond=0))
        if slot is not None:
            slot[1 if event.status in DENIED else 0] += 1
    return [(m.strftime("%H:%M"), a, d) for m, (a, d) in buckets.items()]


# --- containment: the block list ----------------------------------------------------------


def load_blocklist(config: AccessConfig) -> dict[str, Any]:
    doc, _ = read_yaml(config.blocklist) if config.blocklist.exists() else ({}, None)
    doc = doc if isinstance(doc, dict) else {}
    if not isinstance(doc.get("entries"), list):
        doc["entries"] = []
    return doc


def blocked(config: AccessConfig) -> set[tuple[str, str]]:
    return {
        (str(e.get("kind")), str(e.get("value")))
        for e in load_blocklist(config)["entries"]
        if isinstance(e, dict)
    }


def block(
    config: AccessConfig, kind: str, value: str, *, reason: str, incident: str
) -> dict[str, Any]:
    """Add one block-list entry (user, ip or token). Idempotent."""
    if kind not in BLOCK_KINDS:
        raise ValueError(f"block kind must be one of {BLOCK_KINDS}, not {kind!r}")
    doc = load_blocklist(config)
    if (kind, value) in blocked(config):
        return {"kind": kind, "value": value, "added": False, "reason": "already blocked"}
    doc["entries"].append(
        {"kind": kind, "value": value, "reason": reason, "incident": incident, "added": now_iso()}
    )
    doc.setdefault("note", "Gateway block list; entries added by RBK-security-unauthorized-access.")
    write_yaml(config.blocklist, doc)
    return {"kind": kind, "value": value, "added": True}


def unblock(config: AccessConfig, kind: str, value: str) -> dict[str, Any]:
    """Undo `block`: remove the entry. Safe to run twice."""
    doc = load_blocklist(config)
    keep = [
        e
        for e in doc["entries"]
        if not (isinstance(e, dict) and (e.get("kind"), e.get("value")) == (kind, value))
    ]
    removed = len(doc["entries"]) - len(keep)
    doc["entries"] = keep
    if removed:
        write_yaml(config.blocklist, doc)
    return {"kind": kind, "value": value, "removed": bool(removed)}


@undoable("security_access.unblock")
def _undo_unblock(target: Target, kind: str, value: str) -> dict[str, Any]:
    return unblock(AccessConfig.from_target(target), kind, value)
