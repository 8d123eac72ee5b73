"""Talking to the live side of a target: the API over HTTP, its logs, its state, its database.

Runbooks for running services (api, ai, ui, infra) start from `Live.from_target(target)`.
It reads the target's `live` section (written by `sandbox create`; a real deployment's
target names its own files) and `services.json` (written by `sandbox up`) for the URL and
the PostgreSQL DSN. HTTP goes through `Live.request`, which refuses any host but loopback
unless the target explicitly allows it (`live.allow_remote: true`): a runbook never
reaches out by accident. Light imports only (urllib, json): used inside kernels.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TargetError
from ..target import Target
from .common import json as strict_json
from .common.files import FileProblemError, read_regular

MAX_STATE_BYTES = 16 << 20  # config, services and state files: refused unread beyond
MAX_LOG_BYTES = 256 << 20  # the access log a runbook reads whole
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
# Combined Log Format + response time in microseconds (our API's access log).
ACCESS_RE = re.compile(
    r'(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) '
    r'[^"]*" (?P<status>\d{3}) (?P<size>\d+|-) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)"'
    r"(?: (?P<micros>\d+))?"
)


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str]
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass(frozen=True)
class Live:
    config_path: Path
    state_dir: Path
    services_path: Path
    logs_dir: Path
    allow_remote: bool = False

    @classmethod
    def from_target(cls, target: Target) -> Live:
        section = target.section("live")
        paths = {
            key: target.resolve("live", key) for key in ("config", "state", "services", "logs")
        }
        return cls(
            config_path=paths["config"] or Path(),
            state_dir=paths["state"] or Path(),
            services_path=paths["services"] or Path(),
            logs_dir=paths["logs"] or Path(),
            allow_remote=bool(section.get("allow_remote", False)),
        )

    # -- what is running ---------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        value = strict_json.load_file(self.config_path, MAX_STATE_BYTES)
        if not isinstance(value, dict):
            raise ValueError(f"{self.config_path}: not a JSON object")
        return value

    def services(self) -> dict[str, Any]:
        try:
            value: dict[str, Any] = strict_json.load_file(self.services_path, MAX_STATE_BYTES)
        except (OSError, ValueError) as exc:
            raise TargetError(
                f"the live services are not running ({self.services_path} missing): start them "
                "with `kfm-runbook sandbox up`"
            ) from exc
        return value

    @property
    def url(self) -> str:
        return str(self.services()["api"]["url"])

    @property
    def dsn(self) -> str:
        return str(self.services()["postgres"]["dsn"])

    def token(self, role: str) -> str:
        """The configured bearer token of a role (sandbox tokens are fake by design)."""
        for token, name in self.config.get("tokens", {}).items():
            if name == role:
                return str(token)
        raise TargetError(f"no token configured for role {role!r}")

    # -- HTTP -----------------------------------------------------------------------------

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        role: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> Response:
        url = self.url + path
        host = urllib.parse.urlsplit(url).hostname or ""
        if host not in LOOPBACK and not self.allow_remote:
            raise TargetError(f"refusing to call {host}: only loopback unless allow_remote")
        sent = dict(headers or {})
        if role is not None:
            sent["Authorization"] = f"Bearer {self.token(role)}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(url, data=data, headers=sent, method=method)  # noqa: S310
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                payload, status = response.read(), int(response.status)
                got = {k.lower(): v for k, v in response.headers.items()}
        except urllib.error.HTTPError as error:
            payload, status = error.read(), int(error.code)
            got = {k.lower(): v for k, v in error.headers.items()}
        return Response(status, payload, got, time.perf_counter() - start)

    # -- logs and state -------------------------------------------------------------------

    def access_log(self) -> list[dict[str, Any]]:
        """Parsed access-log lines (unparseable lines are skipped and counted as 'bad')."""
        rows: list[dict[str, Any]] = []
        path = self.logs_dir / "access.log"
        if not os.path.lexists(path):
            return rows
        try:  # a link (never followed), a FIFO or an oversized log: refused unread
            data = read_regular(path, MAX_LOG_BYTES)
        except FileProblemError as exc:
            raise TargetError(f"the access log cannot be read: {exc}") from exc
        for line in data.decode("utf-8", errors="replace").splitlines():
            match = ACCESS_RE.match(line)
            if match:
                row: dict[str, Any] = match.groupdict()
                row["status"] = int(row["status"])
                row["micros"] = int(row["micros"]) if row["micros"] else None
                rows.append(row)
        return rows

    def read_state(self, name: str) -> Any:
        return strict_json.load_file(self.state_dir / name, MAX_STATE_BYTES)

    def write_state(self, name: str, value: Any) -> None:
        """Atomically replace one state file (used only inside run.action changes)."""
        from .._fs import replace_atomic

        replace_atomic(
            self.state_dir / name, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()
        )
