"""Talking to the services a target describes: HTTP APIs, PostgreSQL, admin interfaces.

Runbooks for running services (api, ai, ui, infra) start from `Service.from_target(target)`.
Everything comes from the target's own sections, never from files of the system itself:

    remote:   {allow: [hosts]}             hosts besides loopback a run may connect to
    api:      {url, roles: {NAME: {token_env | token_file}}, ...}
    postgres: {dsn_env | dsn_file, bin_dir}
    admin:    {flags_url, command: [argv...]}

(and the domain sections: ui, focus, tls, backups, disk — read by their checks through
`section`, `url` and `path`). Secrets are only named by reference (see secrets.py).

Every connection goes through here and is noted in the run's connection journal
(connections.py), which the recorder writes into the ledger: the evidence names each host
a run touched. A host that is neither loopback nor listed in `remote.allow` is refused
before any packet is sent. Light imports only (urllib, json): used inside kernels.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import connections
from ...errors import TargetError
from ...target import Target
from . import secrets

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_BODY_BYTES = 64 << 20  # one HTTP answer; beyond it the body is cut and marked
MAX_ADMIN_OUTPUT = 1 << 20
ADMIN_TIMEOUT_S = 120


class NoAdminInterfaceError(TargetError):
    """The target names no interface for an operation: a human must do it (manual action)."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str]
    seconds: float
    truncated: bool = False

    def json(self) -> Any:
        return json.loads(self.body or b"null")


def redact_url(url: str) -> str:
    """A URL as evidence may show it: no credentials, no query string values."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    query = "&".join(f"{k}=…" for k, _ in urllib.parse.parse_qsl(parts.query, True))
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, query, ""))


@dataclass(frozen=True)
class Service:
    target: Target

    @classmethod
    def from_target(cls, target: Target) -> Service:
        return cls(target)

    # -- the target's description ---------------------------------------------------------

    def section(self, name: str) -> dict[str, Any]:
        value = self.target.data.get(name)
        return value if isinstance(value, dict) else {}

    def has(self, name: str, key: str | None = None) -> bool:
        section = self.section(name)
        return bool(section) if key is None else section.get(key) not in (None, "")

    def url(self, name: str = "api", key: str = "url") -> str:
        value = self.section(name).get(key)
        if not isinstance(value, str) or not value:
            raise TargetError(
                f"target {self.target.path} has no '{name}.{key}': add the URL of the "
                f"{name} service (see README, Pointing runbooks at production)"
            )
        return value

    @staticmethod
    def join(base: str, path: str) -> str:
        if urllib.parse.urlsplit(path).scheme:
            return path
        return base.rstrip("/") + "/" + path.lstrip("/")

    def path(self, name: str, key: str) -> Path | None:
        """A path key of a section, resolved against the target's folder (None if absent)."""
        value = self.section(name).get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise TargetError(f"target {self.target.path}: '{name}.{key}' must be a path string")
        return (self.target.base / Path(value).expanduser()).resolve()

    @property
    def remote_hosts(self) -> frozenset[str]:
        allow = self.section("remote").get("allow") or []
        return frozenset(str(h).lower() for h in allow if isinstance(h, str))

    def allowed(self, url_or_host: str) -> None:
        """Refuse (TargetError) a host that is neither loopback nor in `remote.allow`."""
        parts = urllib.parse.urlsplit(url_or_host if "//" in url_or_host else f"//{url_or_host}")
        host = (parts.hostname or "").lower()
        if not host:
            raise TargetError(f"no host in {redact_url(url_or_host)!r}: give a full URL")
        if host not in LOOPBACK and host not in self.remote_hosts:
            raise TargetError(
                f"refusing to connect to {host}: not loopback and not in the target's "
                "remote.allow list (add it there to reach it on purpose)"
            )

    # -- secrets ----------------------------------------------------------------------------

    def roles(self) -> dict[str, dict[str, Any]]:
        roles = self.section("api").get("roles")
        if not isinstance(roles, dict):
            return {}
        return {str(k): (v if isinstance(v, dict) else {}) for k, v in roles.items()}

    def token(self, role: str) -> str | None:
        """The bearer token of a role; None for a role without one (anonymous)."""
        roles = self.roles()
        if role not in roles:
            raise TargetError(
                f"target {self.target.path} has no role {role!r} under api.roles: add it "
                f"with token_env or token_file"
            )
        return secrets.resolve(roles[role], "token", f"api.roles.{role}", self.target.base)

    def dsn(self) -> str:
        value = secrets.resolve(self.section("postgres"), "dsn", "postgres", self.target.base)
        if not value:
            raise TargetError(
                f"target {self.target.path} names no database: add postgres.dsn_env "
                "(an environment variable) or postgres.dsn_file (a 0600 file)"
            )
        return value

    def pg_bin(self, tool: str) -> str:
        folder = self.path("postgres", "bin_dir")
        if folder is not None:
            candidate = folder / tool
            if not os.access(candidate, os.X_OK):
                raise TargetError(f"target: postgres.bin_dir {folder} has no executable {tool}")
            return str(candidate)
        found = shutil.which(tool)
        if not found:
            raise TargetError(
                f"{tool} is not on PATH: install PostgreSQL's client tools or set postgres.bin_dir"
            )
        return found

    # -- connections ------------------------------------------------------------------------

    def note_connection(self, kind: str, where: str, **detail: Any) -> None:
        connections.note(kind, redact_url(where) if "//" in where else where, **detail)

    def request(
        self,
        url_or_path: str,
        *,
        method: str = "GET",
        role: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
        base: str = "api",
    ) -> Response:
        """One HTTP request; a 4xx/5xx is a Response, an unreachable host raises OSError."""
        url = self.join(self.url(base), url_or_path)
        self.allowed(url)
        sent = dict(headers or {})
        if role is not None:
            token = self.token(role)
            if token:
                sent["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(url, data=data, headers=sent, method=method)  # noqa: S310
        start = time.perf_counter()
        try:
            try:
                with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
                    payload = answer.read(MAX_BODY_BYTES + 1)
                    status = int(answer.status)
                    got = {k.lower(): v for k, v in answer.headers.items()}
            except urllib.error.HTTPError as error:
                payload, status = error.read(MAX_BODY_BYTES + 1), int(error.code)
                got = {k.lower(): v for k, v in error.headers.items()}
        except OSError as exc:
            self.note_connection(
                "http",
                url,
                method=method,
                role=role,
                error=type(exc).__name__,
                seconds=round(time.perf_counter() - start, 4),
            )
            raise
        seconds = time.perf_counter() - start
        self.note_connection(
            "http", url, method=method, role=role, status=status, seconds=round(seconds, 4)
        )
        cut = len(payload) > MAX_BODY_BYTES
        return Response(status, payload[:MAX_BODY_BYTES], got, seconds, cut)

    def connect_pg(self, dsn: str | None = None, **options: Any) -> Any:
        """A psycopg connection to the target's database (or `dsn`), noted in the journal."""
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        dsn = dsn or self.dsn()
        info = conninfo_to_dict(dsn)
        host = str(info.get("host") or "localhost")
        where = f"{host}:{info.get('port') or 5432}/{info.get('dbname') or ''}"
        if not host.startswith("/"):
            self.allowed(host)
        options.setdefault("connect_timeout", 10)
        try:
            conn = psycopg.connect(dsn, **options)
        except psycopg.Error as exc:
            self.note_connection("postgres", where, error=type(exc).__name__)
            raise
        self.note_connection("postgres", where, status="connected")
        return conn

    # -- acting on the system ------------------------------------------------------------------

    def admin(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run one admin operation through the interface the target names.

        `set_flags` goes to `admin.flags_url` (POST JSON, admin role) when named; anything
        else (and set_flags without a URL) runs `admin.command` + [op] with `args` as JSON
        on stdin and a JSON object expected on stdout. Neither named: NoAdminInterfaceError,
        and the runbook records the step as a manual action.
        """
        section = self.section("admin")
        if op == "set_flags" and section.get("flags_url"):
            role = str(section.get("role", "admin"))
            answer = self.request(
                str(section["flags_url"]), method="POST", role=role, body=args, timeout=30
            )
            if answer.status >= 300:
                raise TargetError(f"admin flags endpoint answered HTTP {answer.status}")
            value = answer.json() if answer.body else {}
            return value if isinstance(value, dict) else {"answer": value}
        command = section.get("command")
        if not command:
            raise NoAdminInterfaceError(
                f"target {self.target.path} names no admin interface for {op!r} "
                "(admin.flags_url / admin.command): a human has to do it"
            )
        if not isinstance(command, list) or not all(isinstance(c, str) and c for c in command):
            raise TargetError(f"target {self.target.path}: admin.command must be a list of strings")
        program = command[0]
        if "/" in program and not program.startswith("/"):  # relative to the target's folder
            program = str(self.target.base / program)
        argv = [program, *command[1:], op]
        self.note_connection("command", " ".join([*command[:1], op]))
        try:
            done = subprocess.run(
                argv,
                input=json.dumps(args).encode(),
                capture_output=True,
                timeout=ADMIN_TIMEOUT_S,
                cwd=self.target.base,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TargetError(f"admin command for {op!r} could not run: {exc}") from exc
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            reason = lines[-1] if lines else "no message"
            raise TargetError(f"admin command for {op!r} failed (exit {done.returncode}): {reason}")
        try:
            value = json.loads(done.stdout[:MAX_ADMIN_OUTPUT] or b"{}")
        except ValueError as exc:
            raise TargetError(f"admin command for {op!r} did not print JSON") from exc
        return value if isinstance(value, dict) else {"answer": value}
