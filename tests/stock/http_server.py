"""A stock HTTP API for the tests: Python's http.server, a Combined Log Format access log.

Run as a process (`python tests/stock/http_server.py FOLDER`): it binds a free loopback
port, writes it to FOLDER/port, and on every request re-reads FOLDER/config.json:

    {"error_share": 0.3,                       # that share of GETs answer 500 (deterministic)
     "error_flag": "new_checkout",             # optional: only while this flag is on
     "flags": {"new_checkout": true},          # feature flags (ADMIN below changes them)
     "protected": {"/private": ["tok-analyst"]}}   # path prefix -> bearer tokens allowed

`/healthz` always answers 200; `/metrics` is Prometheus text with its own names
(`http_requests_total{code, handler}`), not KFM's; any other GET answers 200 JSON (or 403
under a protected prefix without an allowed token, or 500 by the error share). Every
request is appended to FOLDER/access.log in Combined Log Format, as nginx writes it (the
client is the peer address, the user `-`). Nothing here knows about KFM or the sandbox.

`python tests/stock/http_server.py --admin FOLDER OP` is its admin CLI (`get_flags`,
`set_flags`: JSON on stdin and stdout), what a target names as `admin.command`.

The `stock_http` module fixture starts it as a child with a parent-death signal and always
stops it; `StockHttp.configure(...)` changes its behaviour between runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

CLF_TIME = "%d/%b/%Y:%H:%M:%S +0000"


def _serve(folder: Path) -> None:
    lock = threading.Lock()
    state: dict[str, Any] = {"gets": 0, "counts": Counter()}
    log = (folder / "access.log").open("a", encoding="utf-8")

    def config() -> dict[str, Any]:
        try:
            value = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    class Handler(BaseHTTPRequestHandler):
        server_version = "stock/1.0"
        sent = 0

        def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.sent = len(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            settings = config()
            if path == "/healthz":
                status, body = 200, b'{"status": "ok"}'
            elif path == "/metrics":
                with lock:
                    lines = [
                        f'http_requests_total{{code="{code}",handler="{route}"}} {n}'
                        for (route, code), n in sorted(state["counts"].items())
                    ]
                text = "# TYPE http_requests_total counter\n" + "\n".join(lines) + "\n"
                self._answer(200, text.encode(), "text/plain; version=0.0.4")
                return
            else:
                with lock:
                    state["gets"] += 1
                    n = state["gets"]
                share = float(settings.get("error_share", 0.0))
                gate = settings.get("error_flag")
                if gate and not settings.get("flags", {}).get(gate):
                    share = 0.0
                failing = int(n * share) > int((n - 1) * share)
                token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
                guard = [
                    tokens
                    for prefix, tokens in settings.get("protected", {}).items()
                    if path == prefix or path.startswith(prefix.rstrip("/") + "/")
                ]
                if failing:
                    status, body = 500, b'{"error": "internal error"}'
                elif guard and not any(token and token in tokens for tokens in guard):
                    status, body = 403, b'{"error": "forbidden"}'
                else:
                    status, body = 200, json.dumps({"path": path, "items": []}).encode()
                with lock:
                    state["counts"][(path, str(status))] += 1
            self._answer(status, body)

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            stamp = time.strftime(CLF_TIME, time.gmtime())
            agent = self.headers.get("User-Agent", "-").replace('"', "'")
            referer = self.headers.get("Referer", "-").replace('"', "'")
            line = (
                f'{self.client_address[0]} - - [{stamp}] "{self.requestline}" {code} '
                f'{self.sent or "-"} "{referer}" "{agent}"\n'
            )
            with lock:
                log.write(line)
                log.flush()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_file = folder / "port"
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(server.server_address[1]))
    tmp.replace(port_file)
    server.serve_forever()


# -- the fixture side ---------------------------------------------------------------------


@dataclass
class StockHttp:
    folder: Path
    url: str
    process: Any

    @property
    def log(self) -> Path:
        return self.folder / "access.log"

    def configure(
        self,
        *,
        error_share: float = 0.0,
        protected: dict[str, list[str]] | None = None,
        error_flag: str | None = None,
        flags: dict[str, bool] | None = None,
    ) -> None:
        config = {
            "error_share": error_share,
            "protected": protected or {},
            "error_flag": error_flag,
            "flags": flags or {},
        }
        tmp = self.folder / "config.tmp"
        tmp.write_text(json.dumps(config))
        tmp.replace(self.folder / "config.json")

    def flags(self) -> dict[str, bool]:
        return dict(json.loads((self.folder / "config.json").read_text()).get("flags", {}))

    def admin_command(self) -> list[str]:
        """The server's admin CLI, as a target names it (`admin.command`): `get_flags` /
        `set_flags` with JSON on stdin and stdout, like any ops tool."""
        return [sys.executable, str(Path(__file__).resolve()), "--admin", str(self.folder)]

    def clear_log(self) -> None:
        """Start a fresh log (the server appends to the same inode: truncate in place)."""
        with self.log.open("r+") as handle:
            handle.truncate(0)


def start(folder: Path) -> StockHttp:
    from kfm_runbooks._proc import guarded

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "access.log").touch()
    process = subprocess.Popen(
        guarded([sys.executable, str(Path(__file__).resolve()), str(folder)])
    )
    port_file = folder / "port"
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the stock HTTP server did not start")
        time.sleep(0.05)
    server = StockHttp(folder, f"http://127.0.0.1:{port_file.read_text().strip()}", process)
    server.configure()
    return server


def stop(server: StockHttp) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)


@pytest.fixture(scope="module")
def stock_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StockHttp]:
    server = start(tmp_path_factory.mktemp("stock-http"))
    try:
        yield server
    finally:
        stop(server)


def _admin(folder: Path, op: str) -> int:
    """`http_server.py --admin FOLDER OP < args.json`: the stock server's admin CLI."""
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    args = json.loads(sys.stdin.read() or "{}")
    if op == "get_flags":
        print(json.dumps(config.get("flags", {})))
        return 0
    if op == "set_flags" and all(isinstance(v, bool) for v in args.values()):
        config["flags"] = {**config.get("flags", {}), **args}
        tmp = folder / "config.admin.tmp"
        tmp.write_text(json.dumps(config))
        tmp.replace(config_path)
        print(json.dumps(config["flags"]))
        return 0
    print(f"stock admin: unknown operation {op!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    if sys.argv[1] == "--admin":
        sys.exit(_admin(Path(sys.argv[2]), sys.argv[3]))
    _serve(Path(sys.argv[1]))
