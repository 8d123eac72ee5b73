"""A minimal Focus-Mode-shaped HTTP service, written for the tests (not the sandbox's).

Run as a real process on loopback by the `focus_service` fixture (`start`):

    python focus_service.py serve STATE_FILE PORT_FILE       # the HTTP service
    python focus_service.py admin STATE_FILE OP               # its admin command (JSON stdin/out)

Its own design, deliberately unlike the sandbox's: a keyword retriever citing one document,
replies without a `gate` field (the gate's decision shows only in the HTTP status), a
decision log that carries the answer text and the user agent, flags with their own names,
a bearer-token admin endpoint and an admin command with a `reindex` op. The whole state
(flags, index condition) lives in one JSON file the service re-reads on every request.

Variants (`VARIANTS`): healthy; uncited (answers without citations); retrieval-broken (the
index is gone: 503); gate-open (the injection filter only logs); drifted (the index cites
the wrong documents).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DOCS = {
    "ks-soils-ssurgo": ("Soil survey", ["soil", "soils", "clay", "erosion"]),
    "ks-rainfall-daily": ("Daily rainfall", ["rain", "rainfall", "precipitation", "storm"]),
    "ks-bison-herds": ("Bison herds", ["bison", "herd", "herds", "grazing"]),
}
BLOCKED = [r"ignore (all )?(previous|prior) instructions", r"system prompt", r"disregard the rules"]
CATALOG = ["ks-soils-ssurgo", "ks-rainfall-daily", "ks-bison-herds", "ks-roads-2020"]
EVAL = [
    ("soils", "Which layer maps clay soils and erosion?", "ks-soils-ssurgo"),
    ("rain", "Where is daily rainfall and storm precipitation?", "ks-rainfall-daily"),
    ("bison", "Which dataset shows bison herds grazing?", "ks-bison-herds"),
]
ABSTAIN = "I don't know."
ADMIN_TOKEN = "stock-admin-3f9a1c"
GOOD = {"cite_sources": True, "withhold_uncited": False, "filter_enforced": True, "enabled": True}
VARIANTS: dict[str, dict[str, Any]] = {
    "healthy": {"flags": GOOD, "index": "ok"},
    "uncited": {"flags": {**GOOD, "cite_sources": False}, "index": "ok"},
    "retrieval-broken": {"flags": GOOD, "index": "missing"},
    "gate-open": {"flags": {**GOOD, "filter_enforced": False}, "index": "ok"},
    "drifted": {"flags": GOOD, "index": "drifted"},
}
_lock = threading.Lock()


def load(state: Path) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(state.read_text(encoding="utf-8"))
    return value


def save(state: Path, value: dict[str, Any]) -> None:
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, state)


def retrieve(question: str, index: str) -> str | None:
    words = set(re.findall(r"[a-z]+", question.lower()))
    scored = sorted((len(words & set(keys)), doc) for doc, (_, keys) in DOCS.items())
    if index == "drifted":  # a bad reindex: the least related document ranks first
        return scored[0][1]
    best, doc = scored[-1]
    return doc if best else None


def answer(question: str, state: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """(status, reply, log extra) for one question."""
    flags = state["flags"]
    if not flags["enabled"]:
        return 503, {"error": "focus mode disabled"}, {}
    matched = next((p for p in BLOCKED if re.search(p, question, re.IGNORECASE)), None)
    gate: dict[str, str | None] = {
        "decision": "block" if matched and flags["filter_enforced"] else "allow",
        "matched": matched,
    }
    if gate["decision"] == "block":
        return 422, {"error": "blocked by input policy"}, {"gate": gate}
    if state["index"] == "missing":
        return 503, {"error": "retrieval backend unavailable"}, {"gate": gate}
    doc = retrieve(question, state["index"])
    if doc is None:
        return 200, {"answer": ABSTAIN, "citations": []}, {"gate": gate}
    text = f"See {DOCS[doc][0]}."
    citations = [doc] if flags["cite_sources"] else []
    if not citations and flags["withhold_uncited"]:
        return 422, {"error": "answer withheld: citation required"}, {"gate": gate}
    return 200, {"answer": text, "citations": citations}, {"gate": gate}


def serve(state: Path, port_file: Path) -> None:
    log = state.parent / "logs" / "decisions.jsonl"
    log.parent.mkdir(exist_ok=True)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def reply(self, status: int, value: Any) -> None:
            body = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def body(self) -> Any:
            size = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(size) or b"{}")

        def do_GET(self) -> None:
            with _lock:
                current = load(state)
            if self.path == "/health":
                ok = current["index"] != "missing"
                checks = {"retrieval": "ok" if ok else "down", "http": "ok"}
                self.reply(
                    200 if ok else 503, {"status": "ok" if ok else "degraded", "checks": checks}
                )
            elif self.path == "/catalog":
                self.reply(200, {"items": [{"id": i} for i in CATALOG]})
            else:
                self.reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path == "/admin/flags":
                if self.headers.get("Authorization") != f"Bearer {ADMIN_TOKEN}":
                    self.reply(401, {"error": "admin token required"})
                    return
                changes = self.body()
                with _lock:
                    current = load(state)
                    unknown = sorted(set(changes) - set(current["flags"]))
                    if unknown or not all(isinstance(v, bool) for v in changes.values()):
                        self.reply(400, {"error": f"unknown or non-boolean flags {unknown}"})
                        return
                    current["flags"].update(changes)
                    save(state, current)
                self.reply(200, current["flags"])
                return
            if self.path != "/focus":
                self.reply(404, {"error": "not found"})
                return
            question = str(self.body().get("question", ""))
            with _lock:
                status, reply, extra = answer(question, load(state))
                record = {
                    "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "client": self.headers.get("X-Forwarded-For") or self.client_address[0],
                    "user_agent": self.headers.get("User-Agent", ""),
                    "question": question,
                    "citations": reply.get("citations", []),
                    "answer": reply.get("answer"),
                    "error": reply.get("error"),
                    **extra,
                }
                with log.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(record) + "\n")
            self.reply(status, reply)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(server.server_address[1]))
    os.replace(tmp, port_file)
    server.serve_forever()


def admin(state: Path, op: str) -> int:
    args = json.loads(sys.stdin.read() or "{}")
    with _lock:
        current = load(state)
        if op == "set_flags":
            current["flags"].update({k: bool(v) for k, v in args.items()})
            result: dict[str, Any] = {"flags": current["flags"]}
        elif op == "reindex":
            result = {"index": "rebuilt", "was": current["index"]}
            current["index"] = "ok"
        else:
            print(f"unknown op {op}", file=sys.stderr)
            return 2
        save(state, current)
    print(json.dumps(result))
    return 0


# -- the test side: start the service, describe it with a target ------------------------------


class Stock:
    """A running stock Focus Mode: its folder, URL and state file."""

    def __init__(self, folder: Path, url: str, state: Path) -> None:
        self.folder, self.url, self.state = folder, url, state

    def set_state(self, variant: str) -> None:
        save(self.state, json.loads(json.dumps(VARIANTS[variant])))

    def target(
        self, name: str = "target.yaml", *, drop: tuple[str, ...] = (), admin: bool = True
    ) -> Path:
        """A target using only the contract's keys (`drop`: focus keys to leave out)."""
        import yaml

        focus: dict[str, Any] = {
            "url": f"{self.url}/focus",
            "health_url": f"{self.url}/health",
            "health_check": "retrieval",
            "catalog_url": f"{self.url}/catalog",
            "eval_set": "reference/eval.yaml",
            "citation_policy": "reference/citations.yaml",
            "gate_policy": "reference/gate.yaml",
            "decision_log": {"path": "logs/decisions.jsonl", "format": "jsonl"},
            "flags": {
                "enabled": "enabled",
                "citations_required": "cite_sources",
                "withhold_uncited": "withhold_uncited",
                "input_gate": "filter_enforced",
            },
            "rebuild_op": "reindex",
        }
        for key in drop:
            focus.pop(key)
        data: dict[str, Any] = {
            "name": "stock-focus",
            "kind": "live",
            "api": {"url": self.url, "roles": {"admin": {"token_file": "secrets/admin.token"}}},
            "focus": focus,
        }
        if admin:
            data["admin"] = {
                "flags_url": f"{self.url}/admin/flags",
                "command": [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "admin",
                    str(self.state),
                ],
            }
        path = self.folder / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path


def write_references(folder: Path) -> None:
    import yaml

    ref = folder / "reference"
    ref.mkdir(exist_ok=True)
    eval_set = {
        "min_accuracy": 1.0,
        "questions": [
            {"id": qid, "question": q, "expected_citations": [doc]} for qid, q, doc in EVAL
        ],
    }
    (ref / "eval.yaml").write_text(yaml.safe_dump(eval_set, sort_keys=False))
    policy = {"citations_required": True, "abstentions": [ABSTAIN]}
    (ref / "citations.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    (ref / "gate.yaml").write_text(yaml.safe_dump({"enforced": True, "blocked_patterns": BLOCKED}))
    secrets = folder / "secrets"
    secrets.mkdir(exist_ok=True)
    token = secrets / "admin.token"
    token.write_text(ADMIN_TOKEN + "\n")
    token.chmod(0o600)


def start(folder: Path, variant: str = "healthy") -> tuple[Stock, Any]:
    """Start the service in `folder` (a real process; dies with its parent). Returns the
    Stock and the process; the caller stops it (`process.terminate(); process.wait()`)."""
    import subprocess
    import time

    from kfm_runbooks._proc import die_with_parent

    folder.mkdir(parents=True, exist_ok=True)
    write_references(folder)
    state = folder / "state.json"
    save(state, json.loads(json.dumps(VARIANTS[variant])))
    port_file = folder / "port"
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "serve", str(state), str(port_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    deadline = time.monotonic() + 30  # a hang guard, not a timing assumption
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the stock Focus Mode did not start (exit {process.poll()})")
        time.sleep(0.05)
    return Stock(folder, f"http://127.0.0.1:{port_file.read_text()}", state), process


if __name__ == "__main__":
    command, state_file, last = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    if command == "serve":
        serve(state_file, Path(last))
    else:
        sys.exit(admin(state_file, last))
