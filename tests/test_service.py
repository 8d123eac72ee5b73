"""Targets describe services (issue 17): secrets by reference, remote by list, every
connection on record, admin through what the target names, manual steps when it names none."""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import kfm_runbooks.record as rb
from kfm_runbooks import connections, ledger
from kfm_runbooks.checks.common.service import NoAdminInterfaceError, Service, redact_url
from kfm_runbooks.errors import TargetError
from kfm_runbooks.layout import Workspace
from kfm_runbooks.target import load_target

from .conftest import NOTEBOOKS, Cli

SECRET = "s3cr3t-Value-0042"


def _target(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.target.yaml"
    path.write_text("name: t\n" + text)
    return path


def _service(tmp_path: Path, text: str) -> Service:
    return Service.from_target(load_target(_target(tmp_path, text)))


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, object]]]]:
    """A stock http.server on loopback that records what it was sent."""
    seen: list[dict[str, object]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            seen.append({"path": self.path, "auth": self.headers.get("Authorization")})
            self._answer(500 if self.path.startswith("/broken") else 200, {"ok": True})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            auth = self.headers.get("Authorization")
            seen.append({"path": self.path, "auth": auth, "body": body})
            self._answer(200, {"flags": body})

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def _empty_journal() -> Iterator[None]:
    connections.drain()
    yield
    connections.drain()


# -- secrets by reference -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (f"api:\n  roles:\n    public: {{token: {SECRET}}}\n", "api.roles.public.token"),
        (f"postgres:\n  dsn: postgresql://kfm:{SECRET}@db/kfm\n", "postgres.dsn"),
        (f"backups:\n  restore: {{password: {SECRET}}}\n", "backups.restore.password"),
    ],
)
def test_an_inline_secret_is_refused_without_echoing_it(
    tmp_path: Path, text: str, key: str
) -> None:
    with pytest.raises(TargetError, match="inline secret") as caught:
        load_target(_target(tmp_path, text))
    assert key in caught.value.message and SECRET not in caught.value.message


def test_credentials_in_a_url_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="credentials in the URL") as caught:
        load_target(_target(tmp_path, f"api:\n  url: https://ops:{SECRET}@api.example.org/\n"))
    assert SECRET not in caught.value.message


def test_a_url_must_be_http_with_a_host(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match=r"'ui\.url' must be an http"):
        load_target(_target(tmp_path, "ui:\n  url: file:///etc/passwd\n"))


def test_tokens_come_from_the_environment_or_a_private_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tmp_path / "analyst.token"
    token.write_text(SECRET + "\n")
    token.chmod(0o600)
    svc = _service(
        tmp_path,
        "api:\n  roles:\n    public: {token_env: KFM_TEST_TOKEN}\n"
        "    analyst: {token_file: analyst.token}\n    anonymous: {}\n",
    )
    monkeypatch.setenv("KFM_TEST_TOKEN", "from-env")
    assert svc.token("public") == "from-env"
    assert svc.token("analyst") == SECRET
    assert svc.token("anonymous") is None
    monkeypatch.delenv("KFM_TEST_TOKEN")
    with pytest.raises(TargetError, match=r"\$KFM_TEST_TOKEN, which is not set"):
        svc.token("public")
    with pytest.raises(TargetError, match=r"no role 'admin' under api\.roles"):
        svc.token("admin")


def test_a_secret_file_others_can_read_or_a_link_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.token"
    real.write_text(SECRET)
    real.chmod(0o644)
    (tmp_path / "link.token").symlink_to(real)
    svc = _service(
        tmp_path,
        "api:\n  roles:\n    open: {token_file: real.token}\n    link: {token_file: link.token}\n",
    )
    with pytest.raises(TargetError, match="chmod 600"):
        svc.token("open")
    real.chmod(0o600)
    with pytest.raises(TargetError, match="not a regular file"):
        svc.token("link")


def test_the_dsn_is_named_by_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TargetError, match=r"postgres\.dsn_env"):
        _service(tmp_path, "api: {}\n").dsn()
    monkeypatch.setenv("KFM_TEST_DSN", "host=127.0.0.1 dbname=kfm")
    assert _service(tmp_path, "postgres: {dsn_env: KFM_TEST_DSN}\n").dsn().endswith("dbname=kfm")


# -- remote, deliberately; every connection on record ---------------------------------------


def test_a_remote_host_is_refused_unless_listed(tmp_path: Path) -> None:
    svc = _service(tmp_path, "api:\n  url: https://api.example.org\n")
    with pytest.raises(TargetError, match=r"refusing to connect to api\.example\.org"):
        svc.request("/health")
    assert connections.drain() == ([], 0)  # refused before any packet: nothing to record
    listed = _service(
        tmp_path, "remote: {allow: [api.example.org]}\napi:\n  url: https://api.example.org\n"
    )
    listed.allowed("https://api.example.org/health")  # no error
    with pytest.raises(TargetError, match="remote"):
        load_target(_target(tmp_path, "remote: {allow: ['https://api.example.org/']}\n"))


def test_every_request_is_journaled_without_secrets(
    tmp_path: Path, server: tuple[str, list[dict[str, object]]]
) -> None:
    url, seen = server
    token = tmp_path / "public.token"
    token.write_text(SECRET)
    token.chmod(0o600)
    roles = "  roles:\n    public: {token_file: public.token}\n"
    svc = _service(tmp_path, f"api:\n  url: {url}\n" + roles)
    assert svc.request("/ok?key=" + SECRET, role="public").status == 200
    assert svc.request("/broken").status == 500  # an HTTP error is an answer, not a crash
    assert seen[0]["auth"] == f"Bearer {SECRET}" and seen[1]["auth"] is None
    taken, dropped = connections.drain()
    assert dropped == 0 and [c["status"] for c in taken] == [200, 500]
    assert taken[0]["where"] == f"{url}/ok?key=…" and SECRET not in json.dumps(taken)
    dead = _service(tmp_path, f"api:\n  url: {url.rsplit(':', 1)[0]}:9\n")
    with pytest.raises(OSError):
        dead.request("/health", timeout=5)
    assert connections.drain()[0][0]["error"]


def test_redact_url_drops_credentials_and_query_values() -> None:
    assert redact_url("https://u:p@h.example:8443/a?x=1&y=2") == "https://h.example:8443/a?x=…&y=…"


# -- acting through what the target names ----------------------------------------------------


def test_admin_without_an_interface_is_a_manual_step(tmp_path: Path) -> None:
    with pytest.raises(NoAdminInterfaceError, match="a human has to do it"):
        _service(tmp_path, "api: {}\n").admin("block_clients", {"clients": ["10.0.0.9"]})


def test_admin_flags_go_to_the_named_endpoint_with_the_admin_token(
    tmp_path: Path, server: tuple[str, list[dict[str, object]]]
) -> None:
    url, seen = server
    (tmp_path / "admin.token").write_text("tok-admin")
    (tmp_path / "admin.token").chmod(0o600)
    svc = _service(
        tmp_path,
        f"api:\n  url: {url}\n  roles:\n    admin: {{token_file: admin.token}}\n"
        f"admin:\n  flags_url: {url}/admin/flags\n",
    )
    assert svc.admin("set_flags", {"new_serializer": False}) == {"flags": {"new_serializer": False}}
    assert seen == [
        {"path": "/admin/flags", "auth": "Bearer tok-admin", "body": {"new_serializer": False}}
    ]


def test_admin_command_gets_json_and_its_failure_is_one_line(tmp_path: Path) -> None:
    script = tmp_path / "bin" / "admin"
    script.parent.mkdir()
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = block_clients ]; then cat; else echo "unknown op $1" >&2; exit 3; fi\n'
    )
    script.chmod(0o755)
    svc = _service(tmp_path, "admin:\n  command: [bin/admin]\n")
    assert svc.admin("block_clients", {"clients": ["10.0.0.9"]}) == {"clients": ["10.0.0.9"]}
    with pytest.raises(TargetError, match=r"failed \(exit 3\): unknown op nope"):
        svc.admin("nope", {})


# -- the recorder: manual actions and the connection journal in the ledger --------------------


@pytest.fixture
def applying(
    incident: tuple[str, Path], sandbox: Path, monkeypatch: pytest.MonkeyPatch
) -> rb.Recorder:
    incident_id, path = incident
    workspace = Workspace(path.parent, incident_id)
    with workspace.locked():
        workspace.record("run.started", {"run_id": "RUN-test-manual", "apply": True}, "tester")
    monkeypatch.setenv("KFM_RUN_ID", "RUN-test-manual")
    return rb.start(incident_id, path, sandbox, apply=True)


def test_a_manual_action_is_on_record_and_changes_nothing(applying: rb.Recorder) -> None:
    result = applying.manual_action(
        "Block client 10.0.0.9 at the gateway",
        instruction="add `deny 10.0.0.9;` to the gateway config and reload it",
        reason="the target names no admin interface",
    )
    assert result.applied is False and result.action_id.startswith("ACT-")
    entries = ledger.check(applying.workspace.ledger).entries
    action = [e for e in entries if e["kind"] == "action"][-1]["data"]
    assert action["manual"] is True and action["applied"] is False
    assert "deny 10.0.0.9" in action["command"]
    commands = (applying.workspace.path / "20_actions" / "commands.md").read_text()
    assert "MANUAL: Block client 10.0.0.9" in commands and "NOT DONE by this run" in commands


def test_connections_are_written_to_the_ledger(applying: rb.Recorder) -> None:
    connections.note("http", "http://127.0.0.1:1/health", status=200)
    assert applying.record_connections() == 1
    assert applying.record_connections() == 0  # drained: nothing twice
    entries = ledger.check(applying.workspace.ledger).entries
    entry = [e for e in entries if e["kind"] == "connections"]
    assert entry[-1]["data"]["connections"][0]["where"] == "http://127.0.0.1:1/health"
    assert os.environ["KFM_RUN_ID"] == entry[-1]["data"]["run_id"]


def test_a_run_leaves_every_connection_in_its_evidence(
    cli: Cli,
    incident: tuple[str, Path],
    tmp_path: Path,
    server: tuple[str, list[dict[str, object]]],
) -> None:
    url, seen = server
    incident_id, path = incident
    target = _target(tmp_path, f"api:\n  url: {url}\n")
    result = cli(
        "run",
        str(NOTEBOOKS / "connects.ipynb"),
        "--incident",
        incident_id,
        "--target",
        str(target),
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert seen == [{"path": "/health", "auth": None}]
    entries = ledger.check(path / "10_evidence" / "ledger.jsonl").entries
    noted = [c for e in entries if e["kind"] == "connections" for c in e["data"]["connections"]]
    assert [(c["kind"], c["where"], c["status"]) for c in noted] == [("http", f"{url}/health", 200)]
    run = [e for e in entries if e["kind"] == "run"][-1]["data"]
    assert run["connections"] == {"count": 1, "to": [url]}
    report = cli("report", incident_id)
    assert report.exit_code == 0, report.output
    html = next((path / "90_postmortem").glob("report-*.html")).read_text()
    assert url in html and "1 connection(s)" in html


def test_a_path_key_may_be_dotted_and_a_link_stays_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real.log"
    real.write_text("x")
    (tmp_path / "access.log").symlink_to(real)
    svc = _service(tmp_path, "api:\n  access_log: {path: access.log, format: combined}\n")
    path = svc.path("api", "access_log.path")
    assert path == tmp_path / "access.log" and path.is_symlink()
    assert svc.path("api", "access_log.missing") is None


def test_the_readme_production_target_is_a_valid_target(tmp_path: Path) -> None:
    """The README's complete target for KFM's production stack loads (its reference files
    stubbed in a stand-in checkout): every key is known, no secret is inline, every host
    it connects to is allowed."""
    from .conftest import ROOT

    text = (ROOT / "README.md").read_text()
    section = text.split("### A complete target for KFM's production stack", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    data = yaml.safe_load(block)
    repo = tmp_path / "kfm"
    for key in ("flags", "access_matrix", "rate_limit"):
        (repo / data["api"][key]).parent.mkdir(parents=True, exist_ok=True)
        (repo / data["api"][key]).write_text("{}\n")
    for key in ("eval_set", "citation_policy", "gate_policy"):
        (repo / data["focus"][key]).parent.mkdir(parents=True, exist_ok=True)
        (repo / data["focus"][key]).write_text("{}\n")
    for key in ("layer_registry", "stories"):
        (repo / data["ui"][key]).parent.mkdir(parents=True, exist_ok=True)
        (repo / data["ui"][key]).write_text("{}\n")
    data["repo"] = str(repo)
    path = tmp_path / "production.target.yaml"
    path.write_text(yaml.safe_dump(data))
    target = load_target(path)
    svc = Service.from_target(target)
    for url in (
        svc.url("api"),
        svc.url("focus"),
        svc.url("ui"),
        *(entry["url"] for entry in data["tls"]),
    ):
        svc.allowed(url)
    assert SECRET not in block and "password" not in block
