"""JupyterLab parity for real: a Jupyter server, its kernel, an operator's cells, seal, verify."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import signal
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.blocking import BlockingKernelClient

from kfm_runbooks import ledger

from .conftest import CHECKSUM, Cli, sha256sum_check
from .helpers import assert_pass_coverage

pytestmark = pytest.mark.slow


@pytest.fixture
def lab(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A real JupyterLab server on loopback with token auth, always stopped afterwards."""
    from kfm_runbooks.session import start_lab

    runtime = Path(tempfile.mkdtemp(prefix="kfm-rt-"))  # short: Unix socket paths
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    root.mkdir(parents=True, exist_ok=True)
    info = start_lab(root, tmp_path / "lab-logs")
    info["runtime"] = runtime
    try:
        yield info
    finally:
        os.kill(int(info["pid"]), signal.SIGTERM)
        shutil.rmtree(runtime, ignore_errors=True)


def _api(lab: dict[str, Any], method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"{lab['url'].rstrip('/')}/api/{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {lab['token']}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


def _execute(client: BlockingKernelClient, cell: Any) -> None:
    """Run one cell in the server's kernel the way JupyterLab does, keeping its outputs."""
    outputs: list[Any] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] in ("stream", "display_data", "execute_result", "error"):
            outputs.append(nbformat.v4.output_from_msg(msg))

    reply = client.execute_interactive(cell.source, output_hook=hook, timeout=180)
    cell.outputs = outputs
    cell.execution_count = reply["content"]["execution_count"]


def test_lab_token_is_never_on_a_command_line(lab: dict[str, Any], tmp_path: Path) -> None:
    """`ps` shows every process's command line to every local user: the token goes by a
    0600 file read once at start (then removed), never by argv or the environment."""
    token = lab["token"].encode()
    assert len(token) >= 32
    proc = Path(f"/proc/{lab['pid']}")
    assert token not in (proc / "cmdline").read_bytes()
    assert token not in (proc / "environ").read_bytes()  # kernels inherit the environment
    assert not [p for p in (tmp_path / "lab-logs").iterdir() if p.stat().st_mode & 0o077]
    with pytest.raises(urllib.error.HTTPError) as wrong:
        _api({**lab, "token": "wrong"}, "GET", "sessions")
    wrong.value.close()
    anonymous = urllib.request.Request(f"{lab['url'].rstrip('/')}/api/sessions")
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(anonymous, timeout=60)
    missing.value.close()
    assert wrong.value.code == missing.value.code == 403  # the server still requires it
    assert _api(lab, "GET", "sessions") == []


def test_operator_session_leaves_the_same_evidence(
    cli: Cli,
    root: Path,
    lab: dict[str, Any],
    incident: tuple[str, Path],
    sandbox: Path,
    tmp_path: Path,
) -> None:
    incident_id, ws = incident
    opened = cli(
        "open", CHECKSUM, "--incident", incident_id, "--target", str(sandbox), "--apply", "--json"
    )
    assert opened.exit_code == 0, opened.output
    session = json.loads(opened.stdout)
    assert session["url"].startswith(f"http://127.0.0.1:{lab['port']}/lab/tree/")
    assert f"token={lab['token']}" in session["url"]
    notebook = Path(session["notebook"])
    rel = notebook.relative_to(root).as_posix()

    kernel = _api(
        lab,
        "POST",
        "sessions",
        {"path": rel, "type": "notebook", "name": "", "kernel": {"name": "kfm-runbook"}},
    )["kernel"]
    connection = lab["runtime"] / f"kernel-{kernel['id']}.json"
    assert json.loads(connection.read_text())["transport"] == "ipc"
    client = BlockingKernelClient(connection_file=str(connection))
    client.load_connection_file()
    # No heartbeat channel: its 1 s time-to-dead calls a kernel "dead" whenever a busy
    # machine delays one beat. Readiness is a kernel_info reply (waited for, hang guard).
    client.start_channels(hb=False)
    try:
        client.wait_for_ready(timeout=300)
        nb = nbformat.read(notebook, as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code" or cell.get("id") == "triage-plot":
                continue  # the operator skips the plot
            if cell.get("id") == "safety":
                cell.source += '\nprint("operator: checked the quarantine folder by hand")'
            _execute(client, cell)
            if cell.get("id") == "containment-quarantine":
                kinds = [e["kind"] for e in ledger.check(ws / "10_evidence/ledger.jsonl").entries]
                assert kinds.count("action") == 2  # recorded as it happened, before any seal
    finally:
        client.stop_channels()
    _api(
        lab,
        "PUT",
        f"contents/{rel}",
        {"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(nb))},
    )

    sealed = cli("seal", incident_id, str(notebook), "--json")
    assert sealed.exit_code == 0, sealed.output
    result = json.loads(sealed.stdout)
    assert result["outcome"] == "passed"
    assert_pass_coverage(result["checks"])
    cells = {c["id"]: c for c in result["cells"]}
    assert cells["triage-plot"]["execution"] == "not run"
    assert cells["safety"]["drift"] == "edited" and cells["safety"]["execution"] == "run"
    assert cells["triage-scan"] == {
        **cells["triage-scan"],
        "drift": "unchanged",
        "execution": "run",
    }

    entries = ledger.check(ws / "10_evidence/ledger.jsonl").entries
    session_id = session["session_id"]
    last = entries[-1]
    assert last["kind"] == "session.sealed" and last["data"]["run_id"] == session_id
    assert last["data"]["cell_summary"]["edited"] == 1
    code = last["data"]["code"]  # recorded by the session's kernel, after its cells ran
    assert code["version"] == importlib.metadata.version("kfm-runbooks")
    assert "record.py" in code["modules"]
    assert any(m.startswith("checks/") and "catalog" in m for m in code["modules"])
    prov = next(p for p in last["data"]["outputs"] if p["path"].endswith(".prov.json"))
    assert code["modules"]["record.py"] in (ws / "10_evidence" / prov["path"]).read_text()
    mine = [e for e in entries if e["data"].get("run_id") == session_id]
    assert {"finding", "check", "action"} <= {e["kind"] for e in mine}
    assert sha256sum_check(ws).returncode == 0
    assert cli("verify", incident_id).exit_code == 0
    evidence = ws / result["notebook"]
    assert evidence.is_file() and "operator: checked" in evidence.read_text()


def test_seal_refuses_foreign_notebooks(
    cli: Cli, incident: tuple[str, Path], tmp_path: Path
) -> None:
    incident_id, ws = incident
    stray = tmp_path / "elsewhere.ipynb"
    stray.write_text("{}")
    result = cli("seal", incident_id, str(stray))
    assert result.exit_code == 2 and "not a session notebook" in result.stderr
    evidence = ws / "10_evidence/runs/x.ipynb"
    evidence.write_text("{}")
    assert cli("seal", incident_id, str(evidence)).exit_code == 2


def test_open_without_lab_only_prepares(
    cli: Cli, incident: tuple[str, Path], sandbox: Path
) -> None:
    incident_id, _ = incident
    result = cli(
        "open", CHECKSUM, "--incident", incident_id, "--target", str(sandbox), "--no-lab", "--json"
    )
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    assert out["url"] is None
    nb = nbformat.read(out["notebook"], as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert f'incident_id = "{incident_id}"' in injected.source
    assert out["session_id"] in injected.source
    bad = cli("open", CHECKSUM, "--incident", incident_id, "-p", "nope=1", "--no-lab")
    assert bad.exit_code == 2 and "unknown parameter" in bad.stderr


def test_a_session_never_executed_with_pasted_passes_does_not_pass(
    cli: Cli, incident: tuple[str, Path], sandbox: Path
) -> None:
    """The outcome is what the ledger saw live; outputs in the notebook file are claims."""
    from kfm_runbooks import scraps

    incident_id, ws = incident
    opened = cli(
        "open", CHECKSUM, "--incident", incident_id, "--target", str(sandbox), "--no-lab", "--json"
    )
    notebook = Path(json.loads(opened.stdout)["notebook"])
    nb = nbformat.read(notebook, as_version=4)
    for count, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = count + 1  # looks run
        if "verification" in cell.metadata.get("tags", []):
            data, metadata = scraps.bundle(
                "kfm.check.asset-digests", {"name": "asset-digests", "status": "PASS"}
            )
            cell.outputs = [nbformat.v4.new_output("display_data", data=data, metadata=metadata)]
    nbformat.write(nb, notebook)

    sealed = cli("seal", incident_id, str(notebook), "--json")
    result = json.loads(sealed.stdout)
    assert sealed.exit_code == 1 and result["outcome"] == "unverified", result["detail"]
    assert result["checks"] == []
    assert {c["execution"] for c in result["cells"] if c["execution"] != "-"} == {"not run"}
    entry = ledger.check(ws / "10_evidence/ledger.jsonl").entries[-1]
    assert entry["kind"] == "session.sealed" and entry["data"]["outcome"] == "unverified"
