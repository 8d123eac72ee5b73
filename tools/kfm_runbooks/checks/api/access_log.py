"""An HTTP access log, as a web server or an API writes it: Combined Log Format or JSON lines.

The target names it (`api.access_log: {path, format}`, format `combined` (default) or
`json`). `combined` is Apache/nginx's Combined Log Format (Common Log Format lines without
referer and user agent are read too); a trailing number after the user agent is taken as
the response time in microseconds (KFM's API appends it). `json` is one object per line
with the fields nginx/Caddy/most frameworks can be told to write: `time` (ISO 8601 or the
CLF form), `client` | `remote_addr` | `ip`, `user` | `remote_user`, `method`, `path` | `uri`
| `url` (or `request`: "GET /x HTTP/1.1"), `status`, `agent` | `user_agent` |
`http_user_agent`, optional `micros` or `duration_ms`. The log is read incrementally (byte
offsets, whole lines only; a torn last line waits); lines that do not parse are counted,
never fatal; a link or FIFO in its place is refused unread. Standard library only.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..._fs import open_regular

AGENT_PREFIX = "kfm-runbook/"
FORMATS = ("combined", "json")
MAX_LOG_READ_BYTES = 256 << 20  # one read of the access log; the rest waits for the next
CLF_TIME = "%d/%b/%Y:%H:%M:%S %z"
COMBINED_RE = re.compile(
    r'(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>\S+)'
    r'(?: [^"]*)?" (?P<status>\d{3}) (?P<size>\d+|-)'
    r'(?: "(?P<referer>[^"]*)" "(?P<agent>[^"]*)")?(?: (?P<micros>\d+))?\s*$'
)


@dataclass(frozen=True)
class LogLine:
    client: str
    user: str
    time: datetime  # timezone-aware
    method: str
    path: str
    status: int
    agent: str
    micros: int | None = None

    @property
    def route(self) -> str:
        """The path without its query string."""
        return self.path.split("?", 1)[0]

    @property
    def own(self) -> bool:
        """Sent by a runbook (its probes identify themselves)."""
        return self.agent.startswith(AGENT_PREFIX)


@dataclass(frozen=True)
class LogRead:
    lines: list[LogLine]
    bad: int  # lines that did not parse
    end: int  # byte offset after the last whole line read


@dataclass(frozen=True)
class AccessLog:
    """Where the log is and how it is written."""

    path: Path
    format: str = "combined"

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def read(self, start: int = 0) -> LogRead:
        """Whole lines from byte offset `start`; a missing or unreadable log reads empty."""
        try:  # a link is refused, never followed (O_NOFOLLOW); a FIFO never blocks
            with os.fdopen(open_regular(self.path), "rb") as handle:
                handle.seek(start)
                data = handle.read(MAX_LOG_READ_BYTES)
        except OSError:
            return LogRead([], 0, start)
        cut = data.rfind(b"\n") + 1
        parse = parse_json_line if self.format == "json" else parse_combined
        lines: list[LogLine] = []
        bad = 0
        for raw in data[:cut].decode("utf-8", errors="replace").splitlines():
            if not raw.strip():
                continue
            parsed = parse(raw)
            if parsed is None:
                bad += 1
            else:
                lines.append(parsed)
        return LogRead(lines, bad, start + cut)

    def readable(self) -> bool:
        try:
            os.close(open_regular(self.path))
        except OSError:
            return False
        return True


def parse_combined(text: str) -> LogLine | None:
    match = COMBINED_RE.match(text)
    if not match:
        return None
    row = match.groupdict()
    stamp = parse_time(row["time"])
    if stamp is None:
        return None
    return LogLine(
        client=row["client"],
        user=row["user"],
        time=stamp,
        method=row["method"],
        path=row["path"],
        status=int(row["status"]),
        agent=row["agent"] or "-",
        micros=int(row["micros"]) if row["micros"] else None,
    )


def _first(row: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if row.get(key) not in (None, ""):
            return row[key]
    return None


def parse_json_line(text: str) -> LogLine | None:
    try:
        row = json.loads(text)
    except ValueError:
        return None
    if not isinstance(row, dict):
        return None
    method, path = _first(row, "method", "request_method"), _first(row, "path", "uri", "url")
    request = _first(row, "request")
    if (method is None or path is None) and isinstance(request, str):
        parts = request.split()
        method, path = (parts[0], parts[1]) if len(parts) >= 2 else (method, path)
    status, stamp = _first(row, "status", "status_code"), _first(row, "time", "timestamp", "ts")
    when = parse_time(str(stamp)) if stamp is not None else None
    if not isinstance(method, str) or not isinstance(path, str) or when is None:
        return None
    try:
        code = int(status)
    except (TypeError, ValueError):
        return None
    micros = _first(row, "micros")
    millis = _first(row, "duration_ms")
    try:
        duration = int(micros) if micros is not None else None
        if duration is None and millis is not None:
            duration = int(float(millis) * 1000)
    except (TypeError, ValueError):
        duration = None
    return LogLine(
        client=str(_first(row, "client", "remote_addr", "ip") or "-"),
        user=str(_first(row, "user", "remote_user") or "-"),
        time=when,
        method=method.upper(),
        path=path,
        status=code,
        agent=str(_first(row, "agent", "user_agent", "http_user_agent") or "-"),
        micros=duration,
    )


def parse_time(text: str) -> datetime | None:
    """CLF (`10/Oct/2026:13:55:36 +0000`) or ISO 8601; naive ISO times are taken as UTC."""
    for parse in (lambda t: datetime.strptime(t, CLF_TIME), datetime.fromisoformat):
        try:
            value = parse(text.strip().replace("Z", "+00:00") if "T" in text else text.strip())
        except ValueError:
            continue
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def window(lines: list[LogLine], seconds: float) -> list[LogLine]:
    """The lines of the last `seconds` before the newest line."""
    if not lines:
        return []
    newest = max(line.time for line in lines)
    since = newest - timedelta(seconds=seconds)
    return [line for line in lines if line.time > since]


def per_second(lines: Iterable[LogLine]) -> dict[datetime, list[LogLine]]:
    buckets: dict[datetime, list[LogLine]] = {}
    for line in lines:
        buckets.setdefault(line.time.replace(microsecond=0), []).append(line)
    return dict(sorted(buckets.items()))
