"""The live sandbox's KFM-like API: a real HTTP server process on loopback.

    python -m kfm_runbooks.sandbox.services.api --folder SANDBOX --port PORT [--dsn DSN]

Serves, from the sandbox: /health, /metrics (Prometheus text), /api/v1/catalog/items,
/api/v1/layers[/<id>[/times|/tiles/<z>/<x>/<y>]], /api/v1/stories/<id>, POST
/api/v1/focus (Focus Mode: retrieval + input gate + citations), /api/v1/search (PostGIS
bbox query), /admin/flags (admin role), and /ui/ (the map viewer page). Bearer tokens map
to roles; restricted layers need the analyst role; a token bucket per client rate-limits
(429); blocked clients (live/blocklist.json) get 403. Every request is written to
live/logs/access.log in Combined Log Format plus the response time in microseconds;
Focus Mode decisions go to live/logs/focus.jsonl. The running system's state
(live/state/: flags, authz, blocklist, layers, tiles, times, stories, UI release, retrieval
index) is re-read when it changes, so faults and repairs take effect without a restart.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
import urllib.parse
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import ui_page

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
Response = tuple[int, dict[str, str], bytes]


class _Watched:
    """A JSON file re-read when its bytes change (config, faults, flags, blocklist).

    Compared by content, not mtime: two writes within one tick of the kernel's coarse
    file clock (milliseconds) share an mtime, and a change missed that way would make
    the sandbox's behaviour depend on the machine's speed. The files are small.
    """

    def __init__(self, path: Path, default: Any) -> None:
        self.path, self.default = path, default
        self._raw: bytes | None = None
        self._value: Any = default

    def get(self) -> Any:
        try:
            raw = self.path.read_bytes()
        except OSError:
            return self.default
        if raw != self._raw:
            try:
                self._value = json.loads(raw)
                self._raw = raw
            except ValueError:
                return self._value
        return self._value


class App:
    def __init__(self, folder: Path, dsn: str | None) -> None:
        self.folder = folder
        self.dsn = dsn
        live = folder / "live"
        self.state = live / "state"
        self.config = _Watched(live / "config.json", {})
        self.flags = _Watched(self.state / "flags.json", {})
        self.authz = _Watched(self.state / "authz.json", {"enforce_roles": True})
        self.blocklist = _Watched(self.state / "blocklist.json", {"clients": []})
        self.layers = _Watched(self.state / "layers.json", {"layers": []})
        self.stories = _Watched(self.state / "stories.json", {"stories": []})
        self.ui = _Watched(self.state / "ui.json", {"release": "v1"})
        self.index = _Watched(self.state / "focus_index.json", None)
        self.logs = live / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency = [0] * (len(BUCKETS) + 1)
        self.latency_sum = 0.0
        self.buckets: dict[str, tuple[float, float]] = {}
        self.api_calls = 0

    # -- policy ---------------------------------------------------------------------

    def flag(self, name: str) -> bool:
        return bool(self.flags.get().get(name, False))

    def role(self, headers: Any) -> str | None:
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        role = self.config.get().get("tokens", {}).get(auth.removeprefix("Bearer ").strip())
        return None if role is None else str(role)

    def allowed(self, client: str) -> bool:
        """Token bucket per client; False means 429."""
        limits = self.config.get().get("rate_limit", {"per_second": 20, "burst": 40})
        now = time.monotonic()
        with self.lock:
            tokens, last = self.buckets.get(client, (float(limits["burst"]), now))
            tokens = min(float(limits["burst"]), tokens + (now - last) * limits["per_second"])
            if tokens < 1.0:
                self.buckets[client] = (tokens, now)
                return False
            self.buckets[client] = (tokens - 1.0, now)
            return True

    def can_read(self, role: str | None, sensitivity: str) -> bool:
        if sensitivity == "public":
            return True
        if not self.authz.get().get("enforce_roles", True):
            return True  # the regression: role checks switched off
        roles = self.config.get().get("roles", {})
        return role is not None and sensitivity in roles.get(role, {}).get("layers", [])

    # -- routing ----------------------------------------------------------------------

    def handle(
        self, method: str, raw_path: str, headers: Any, body: bytes, client: str
    ) -> Response:
        parsed = urllib.parse.urlsplit(raw_path)
        path, query = parsed.path, urllib.parse.parse_qs(parsed.query)
        if client in self.blocklist.get().get("clients", []):
            return _json(403, {"error": "client blocked"})
        if path.startswith("/api/") and not self.allowed(client):
            return _json(429, {"error": "rate limit exceeded"}, {"Retry-After": "1"})
        role = self.role(headers)
        if path.startswith("/api/"):
            with self.lock:
                self.api_calls += 1
                call = self.api_calls
            if self.flag("new_serializer") and call % 3 == 0:
                return _json(500, {"error": "serializer failure (new_serializer)"})
        if method == "GET" and path == "/health":
            return self.health()
        if method == "GET" and path == "/metrics":
            return 200, {"Content-Type": "text/plain; version=0.0.4"}, self.metrics().encode()
        if method == "GET" and path in ("/ui", "/ui/"):
            page = ui_page.render(
                self.layers.get().get("layers", []), str(self.ui.get().get("release"))
            )
            return 200, {"Content-Type": "text/html; charset=utf-8"}, page.encode()
        if method == "GET" and path == "/api/v1/catalog/items":
            return self.catalog_items()
        if method == "GET" and path == "/api/v1/layers":
            layers = [
                layer
                for layer in self.layers.get().get("layers", [])
                if self.can_read(role, layer["sensitivity"])
            ]
            return _json(200, {"layers": layers})
        match = re.fullmatch(r"/api/v1/layers/([a-z0-9-]+)(/times|/tiles/\d+/\d+/\d+)?", path)
        if method == "GET" and match:
            return self.layer(match.group(1), match.group(2) or "", role)
        match = re.fullmatch(r"/api/v1/stories/([a-z0-9-]+)", path)
        if method == "GET" and match:
            return self.story(match.group(1))
        if method == "POST" and path == "/api/v1/focus":
            return self.focus(body, client)
        if method == "GET" and path == "/api/v1/search":
            return self.search(query)
        if path == "/admin/flags":
            if role != "admin":
                return _json(403, {"error": "admin role required"})
            if method == "POST":
                return self.set_flags(body)
            return _json(200, {"new_serializer": self.flag("new_serializer")})
        return _json(404, {"error": f"no route for {method} {path}"})

    def health(self) -> Response:
        from .focus import INDEX_VERSION

        checks = {"api": "ok", "retrieval": "ok", "database": "ok"}
        index = self.index.get()
        if not index or index.get("version") != INDEX_VERSION:
            checks["retrieval"] = "unavailable"
        if self.dsn:
            try:
                self._query("SELECT 1")
            except Exception as exc:  # reported, not raised: health is a report
                checks["database"] = f"error: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        return _json(200 if ok else 503, {"status": "ok" if ok else "degraded", "checks": checks})

    def metrics(self) -> str:
        lines = ["# TYPE kfm_http_requests_total counter"]
        with self.lock:
            for (path, status), count in sorted(self.requests.items()):
                lines.append(f'kfm_http_requests_total{{path="{path}",status="{status}"}} {count}')
            lines.append("# TYPE kfm_http_request_duration_seconds histogram")
            cumulative = 0
            for bound, count in zip((*BUCKETS, float("inf")), self.latency, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f'kfm_http_request_duration_seconds_bucket{{le="{le}"}} {cumulative}')
            lines.append(f"kfm_http_request_duration_seconds_sum {self.latency_sum:.6f}")
            lines.append(f"kfm_http_request_duration_seconds_count {cumulative}")
        return "\n".join(lines) + "\n"

    def observe(self, path: str, status: int, seconds: float) -> None:
        template = re.sub(r"/\d+", "/{n}", path.split("?", 1)[0])
        with self.lock:
            self.requests[(template, status)] += 1
            index = next((i for i, b in enumerate(BUCKETS) if seconds <= b), len(BUCKETS))
            self.latency[index] += 1
            self.latency_sum += seconds

    # -- resources ----------------------------------------------------------------------

    def catalog_items(self) -> Response:
        items = []
        for path in sorted((self.folder / "catalog").glob("*/items/*.json")):
            try:
                record = json.loads(path.read_text())
            except ValueError:
                continue
            items.append({"id": record.get("id"), "collection": record.get("collection")})
        return _json(200, {"items": items})

    def layer(self, layer_id: str, rest: str, role: str | None) -> Response:
        layers = {layer["id"]: layer for layer in self.layers.get().get("layers", [])}
        layer = layers.get(layer_id)
        if layer is None:
            return _json(404, {"error": f"unknown layer {layer_id}"})
        if not self.can_read(role, layer["sensitivity"]):
            return _json(403, {"error": f"layer {layer_id} is {layer['sensitivity']}"})
        if rest == "/times":
            if not layer.get("time"):
                return _json(404, {"error": f"layer {layer_id} is not time-enabled"})
            try:
                values = json.loads((self.state / "times" / f"{layer_id}.json").read_text())
            except (OSError, ValueError):
                return _json(503, {"error": "time index unavailable"})
            return _json(200, {"layer": layer_id, "times": values.get("values", [])})
        if rest.startswith("/tiles/"):
            if not (self.state / "tiles" / layer_id / "source.json").is_file():
                return _json(404, {"error": "tile source missing"})
            tile = hashlib.sha256(f"{layer_id}{rest}".encode()).digest() * 8
            return 200, {"Content-Type": "application/vnd.mapbox-vector-tile"}, tile
        return _json(200, layer)

    def story(self, story_id: str) -> Response:
        stories = {s["id"]: s for s in self.stories.get().get("stories", [])}
        story = stories.get(story_id)
        if story is None:
            return _json(404, {"error": f"unknown story {story_id}"})
        return _json(200, story)

    def focus(self, body: bytes, client: str) -> Response:
        from .focus import answer

        try:
            question = str(json.loads(body or b"{}").get("question", ""))
        except ValueError:
            return _json(400, {"error": "body must be JSON with a 'question'"})
        patterns = self.config.get().get("focus", {}).get("input_gate", {})
        status, result = answer(
            question,
            patterns=patterns.get("blocked_patterns", []),
            flags=self.flags.get(),
            index=self.index.get(),
        )
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "client": client,
            "question_sha256": hashlib.sha256(question.encode()).hexdigest()[:16],
            "question": question[:200],
            **{k: v for k, v in result.items() if k in ("gate", "citations", "error")},
        }
        with self.lock, (self.logs / "focus.jsonl").open("a", encoding="utf-8") as out:
            out.write(json.dumps(record, sort_keys=True) + "\n")
        return _json(status, result)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        assert self.dsn is not None
        with psycopg.connect(self.dsn, connect_timeout=5) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    def search(self, query: dict[str, list[str]]) -> Response:
        if not self.dsn:
            return _json(503, {"error": "no database configured"})
        try:
            bbox = [float(v) for v in query.get("bbox", ["-101,38,-100.5,38.5"])[0].split(",")]
            if len(bbox) != 4:
                raise ValueError
        except ValueError:
            return _json(400, {"error": "bbox=minx,miny,maxx,maxy"})
        rows = self._query(
            "SELECT count(*), coalesce(avg(value), 0) FROM observations "
            "WHERE ST_Intersects(geom, ST_MakeEnvelope(%s, %s, %s, %s, 4326))",
            tuple(bbox),
        )
        count, mean = rows[0]
        return _json(200, {"bbox": bbox, "observations": int(count), "mean": round(float(mean), 3)})

    def set_flags(self, body: bytes) -> Response:
        from ..._fs import replace_atomic

        try:
            update = json.loads(body or b"{}")
            assert isinstance(update, dict) and all(isinstance(v, bool) for v in update.values())
        except (ValueError, AssertionError):
            return _json(400, {"error": "body must be a JSON object of booleans"})
        current = dict(self.flags.get())
        current.update(update)
        replace_atomic(self.flags.path, (json.dumps(current, indent=2) + "\n").encode())
        return _json(200, current)


def _json(status: int, value: Any, headers: dict[str, str] | None = None) -> Response:
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        (json.dumps(value, sort_keys=True) + "\n").encode(),
    )


def make_handler(app: App) -> type[BaseHTTPRequestHandler]:
    access = (app.logs / "access.log").open("a", encoding="utf-8", buffering=1)
    write_lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        server_version = "kfm-sandbox-api/1.0"
        protocol_version = "HTTP/1.1"

        def _serve(self, method: str) -> None:
            start = time.perf_counter()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            forwarded = self.headers.get("X-Forwarded-For", "").split(",")[0].strip()
            client = forwarded or self.client_address[0]
            try:
                status, headers, payload = app.handle(method, self.path, self.headers, body, client)
            except Exception as exc:  # a server bug is a 500 in the log, not a crash
                status, headers, payload = _json(500, {"error": type(exc).__name__})
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(payload)
            elapsed = time.perf_counter() - start
            app.observe(self.path, status, elapsed)
            role = app.role(self.headers) or "-"
            stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
            line = (
                f'{client} - {role} [{stamp}] "{method} {self.path} {self.request_version}" '
                f'{status} {len(payload)} "{self.headers.get("Referer", "-")}" '
                f'"{self.headers.get("User-Agent", "-")}" {int(elapsed * 1e6)}\n'
            )
            with write_lock:
                access.write(line)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_HEAD(self) -> None:
            self._serve("HEAD")

        def do_POST(self) -> None:
            self._serve("POST")

        def log_message(self, format: str, *args: Any) -> None:
            return  # the access log above replaces stderr logging

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="KFM sandbox API (loopback only)")
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", default=None)
    parser.add_argument("--tls-port", type=int, default=None, help="also serve HTTPS here")
    parser.add_argument("--tls-cert", type=Path, default=None)
    parser.add_argument("--tls-key", type=Path, default=None)
    args = parser.parse_args()
    app = App(args.folder.resolve(), args.dsn)
    handler = make_handler(app)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True
    if args.tls_port and args.tls_cert and args.tls_key:
        from .tls import serve_tls  # HTTPS listener; reloads a renewed certificate by itself

        serve_tls(("127.0.0.1", args.tls_port), handler, args.tls_cert, args.tls_key)
    server.serve_forever()


if __name__ == "__main__":
    main()
