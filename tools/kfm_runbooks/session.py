"""JupyterLab parity: `open` prepares a runbook for an operator, `seal` makes it evidence.

`open` validates exactly like `run`, copies the runbook as evidence (the pristine version
the session starts from), and writes a parameterized working copy (papermill's prepare
step) to `<workspace>/sessions/`. Inside the kernel the recorder picks up the injected
`kfm_session_id`, so findings, checks and applied actions reach the ledger as they
happen, exactly as in a headless run.

`seal` publishes the notebook the operator executed. What ran, and how it ended, comes
from the ledger, which the kernel's recorder wrote live - never from the outputs stored in
the notebook file, which anyone can paste: a cell is `run` only when the ledger saw this
very source execute in the session (else `not run`), and the outcome comes from the checks
the ledger saw (the last status per check; fail closed) or `errored` when a cell's last
execution raised. Each cell is also marked unchanged / edited / added / removed against
the runbook copy taken at `open`.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import runbook as runbook_mod
from ._fs import create_new, sha256_bytes
from ._time import iso, parse_iso, utc_now
from .errors import InputError, NotebookFormatError, RunbookError, SetupError
from .evidence import publish_locked
from .execute import RunOptions, mode_name, prepare, target_info
from .history import History
from .layout import TIMELINE, default_actor, timeline_line
from .recovery import open_for_update
from .seal import Live, RunbookRef, RunInputs, RunResult, outcome_from, seal_notebook
from .standard import PHASES
from .target import load_target

SESSIONS = "sessions"
METADATA_KEY = "kfm_session"


@dataclass(frozen=True)
class Session:
    session_id: str
    notebook: Path
    runbook_copy: str  # relative to 10_evidence
    ledger_head: str


def new_session_id() -> str:
    return f"SESSION-{utc_now():%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def open_session(options: RunOptions) -> Session:
    """Prepare a parameterized copy of the runbook in the workspace for JupyterLab."""
    import nbformat

    prepared = prepare(options)
    workspace, book = prepared.workspace, prepared.runbook
    session_id = new_session_id()
    folder = workspace.path / SESSIONS
    folder.mkdir(exist_ok=True)
    notebook = folder / f"{session_id}.{book.id}.ipynb"
    parameters = {**prepared.parameters, "kfm_session_id": session_id, "kfm_runbook_id": book.id}
    nb = book.parameterized(parameters, options.kernel_name)
    copy_rel = f"runs/{session_id}.runbook.ipynb"
    nb.metadata[METADATA_KEY] = {
        "session_id": session_id,
        "incident_id": workspace.incident_id,
        "runbook": {"id": book.id, "version": book.version, "sha256": book.sha256},
        "runbook_copy": copy_rel,
        "parameters": prepared.parameters,
        "target": str(prepared.target.path),
        "opened": iso(utc_now()),
        "opened_by": prepared.actor,
    }
    line = (
        f"session {session_id} opened for {book.id} by {prepared.actor} "
        f"({mode_name(options.apply)})"
    )
    with workspace.locked():
        entry = publish_locked(
            workspace,
            [(f"10_evidence/{copy_rel}", book.raw)],
            "session.opened",
            {
                "session_id": session_id,
                "runbook": RunbookRef.of(book).as_dict(),
                "parameters": prepared.parameters,
                "target": target_info(prepared.target),
                "notebook": notebook.relative_to(workspace.path).as_posix(),
                "outputs": [{"path": copy_rel, "sha256": book.sha256}],
            },
            prepared.actor,
            {TIMELINE: timeline_line(line)},
        )
        create_new(notebook, nbformat.writes(nb).encode())
    return Session(session_id, notebook, copy_rel, str(entry["hash"]))


def _executions(history: History, session_id: str) -> list[dict[str, Any]]:
    """The `cell` entries the kernel's recorder wrote for this session, oldest first."""
    return [e["data"] for e in history.of("cell") if e["data"].get("run_id") == session_id]


def _last_run(cell: Any, executions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ledger's last record of this very source executing (same cell id when the
    front end sent one)."""
    digest = sha256_bytes(str(cell.source).encode())
    found = None
    for record in executions:
        if record.get("source_sha256") != digest:
            continue
        if record.get("cell_id") not in (None, cell.get("id")):
            continue
        found = record
    return found


def _cell_report(nb: Any, pristine: Any, executions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per cell: run or not run (from the ledger), and drift against the runbook version."""
    original = {c.get("id"): c for c in pristine.cells}
    seen = set()
    report = []
    for index, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags:
            continue
        cell_id = cell.get("id")
        seen.add(cell_id)
        source = original.get(cell_id)
        if source is None:
            drift = "added"
        elif source.source == cell.source and source.cell_type == cell.cell_type:
            drift = "unchanged"
        else:
            drift = "edited"
        execution = "-"
        error = None
        if cell.cell_type == "code":
            last = _last_run(cell, executions)
            execution = "run" if last is not None else "not run"
            error = None if last is None or last.get("ok") else last.get("error")
        phase = next((t for t in tags if t in PHASES or t == "parameters"), "")
        row = {"index": index, "id": cell_id, "phase": phase, "execution": execution}
        report.append({**row, "drift": drift, **({"error": error} if error else {})})
    for cell_id in original:
        if cell_id not in seen:
            report.append(
                {"index": None, "id": cell_id, "phase": "", "execution": "-", "drift": "removed"}
            )
    return report


def _outcome(cells: list[dict[str, Any]], live: Live) -> tuple[str, str]:
    """From the ledger: `errored` when a cell's last execution raised, else the checks."""
    failed = [c for c in cells if c.get("error")]
    if failed:
        return "errored", f"cell {failed[0]['index']} raised {failed[0]['error']}"
    return outcome_from({"status": "completed"}, live.checks)


def seal_session(
    incident_id: str,
    notebook: str | Path,
    *,
    root: str | Path | None = None,
    actor: str | None = None,
) -> tuple[RunResult, list[dict[str, Any]]]:
    """Hash an operator's executed session notebook into the evidence."""
    import nbformat

    actor = actor or default_actor()
    workspace = open_for_update(incident_id, root, actor)
    path = Path(notebook).expanduser().resolve()
    sessions = (workspace.path / SESSIONS).resolve()
    if sessions not in path.parents or path.suffix != ".ipynb":
        raise InputError(
            f"{notebook} is not a session notebook of {incident_id}: seal the notebook "
            f"`kfm-runbook open` prepared in {sessions}"
        )
    try:
        nb = nbformat.read(path, as_version=4)
    except FileNotFoundError as exc:
        raise InputError(f"{path} not found") from exc
    except Exception as exc:
        raise NotebookFormatError(f"{path.name} is not a readable notebook: {exc}") from exc
    meta = nb.metadata.get(METADATA_KEY)
    if not isinstance(meta, dict) or meta.get("incident_id") != incident_id:
        raise InputError(f"{path.name} carries no {incident_id} session metadata: not sealable")
    with workspace.locked():
        history = History.read(workspace)
        opened = history.started_entry(str(meta.get("session_id")))
        if opened is None or opened["kind"] != "session.opened":
            raise InputError(
                f"{path.name}: the ledger never opened session {meta.get('session_id')}: "
                "not sealable"
            )
        data = opened["data"]
        session_id = str(data["session_id"])
        copy_rel = str(data["outputs"][0]["path"])
        pristine = runbook_mod.load(workspace.evidence / copy_rel)
        if pristine.sha256 != data["runbook"]["sha256"]:
            raise InputError(f"the runbook copy of {session_id} changed: run `verify`")
        cells = _cell_report(nb, pristine.nb, _executions(history, session_id))
        live = Live.read(history, session_id)
        summary = {
            "run": sum(c["execution"] == "run" for c in cells),
            "not run": sum(c["execution"] == "not run" for c in cells),
            **{d: sum(c["drift"] == d for c in cells) for d in ("edited", "added", "removed")},
        }
        ended = utc_now()
        target_data = data.get("target") or {"path": meta.get("target")}
        target = None
        with contextlib.suppress(RunbookError):
            target = load_target(str(target_data.get("path")))
        inputs = RunInputs(
            run_id=session_id,
            runbook=RunbookRef.of(pristine),
            parameters=dict(data["parameters"]),
            target=target,
            target_info=dict(target_data),
            actor=actor,
            started=parse_iso(opened["time"]),
        )
        result = seal_notebook(
            workspace,
            kind="session.sealed",
            inputs=inputs,
            nb=nb,
            status={"status": "completed"},
            ended=ended,
            notebook_name=f"runs/{session_id}.{pristine.id}.{ended:%Y%m%dT%H%M%S}.ipynb",
            outcome=_outcome(cells, live),
            extra_data={
                "cells": cells,
                "cell_summary": summary,
                "opened_by": opened["actor"],
                "session_notebook": path.relative_to(workspace.path).as_posix(),
            },
        )
    return result, cells


def running_server(folder: Path) -> dict[str, Any] | None:
    """A Jupyter server already serving `folder` (loopback), if any."""
    import importlib.util

    if importlib.util.find_spec("jupyterlab") is None:
        raise SetupError(
            "JupyterLab is not installed here: `pip install 'kfm-runbooks[lab]'` "
            "(or `kfm-runbook open --no-lab` and open the notebook in your own Jupyter)"
        )
    from jupyter_server.serverapp import list_running_servers

    for info in list_running_servers():
        root_dir = Path(info.get("root_dir") or info.get("notebook_dir") or "/").resolve()
        if (root_dir == folder or root_dir in folder.parents) and info.get("hostname") in (
            "127.0.0.1",
            "localhost",
        ):
            return dict(info)
    return None


def lab_url(info: dict[str, Any], notebook: Path) -> str:
    root_dir = Path(info.get("root_dir") or "/").resolve()
    rel = notebook.resolve().relative_to(root_dir).as_posix()
    return f"{info['url'].rstrip('/')}/lab/tree/{rel}?token={info.get('token', '')}"


def start_lab(root_dir: Path, log_dir: Path, timeout: float = 60.0) -> dict[str, Any]:
    """Start JupyterLab on loopback with a random token, detached; returns its server info.

    The token never appears on a command line (`ps` shows those to every local user) nor in
    the server's environment (kernels inherit it): the server reads it once from a 0600 file
    in a private folder named by JUPYTER_TOKEN_FILE, removed as soon as the server is up.
    The log is 0600 too; the server's own files holding the token (server info, browser-open
    page) are in Jupyter's runtime folder, which Jupyter keeps 0700. As root (containers, CI) the
    server needs --allow-root: it still listens on loopback only and the token stays private.
    """
    import os
    import shutil
    import socket
    import tempfile

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = secrets.token_hex(24)
    log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix="kfm-lab-"))  # 0700
    try:
        token_file = private / "token"
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as stream:
            stream.write(token)
        return _spawn_lab(root_dir, log_dir, port, token_file, timeout)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _spawn_lab(
    root_dir: Path, log_dir: Path, port: int, token_file: Path, timeout: float
) -> dict[str, Any]:
    import os
    import sys
    import time

    log = log_dir / f"jupyterlab-{port}.log"
    as_root = ["--allow-root"] if os.geteuid() == 0 else []  # containers and CI machines
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        *as_root,
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root_dir}",
        "--KernelManager.transport=ipc",
    ]
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_TOKEN"}
    env.update({"JUPYTER_PLATFORM_DIRS": "1", "JUPYTER_TOKEN_FILE": str(token_file)})
    # posix_spawn, not Popen: the server outlives this command (detached, own session).
    out = (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    pid = os.posix_spawn(
        sys.executable,
        argv,
        env,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            out,
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = running_server(root_dir)
        if info is not None and int(info.get("port", 0)) == port:
            return info
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            raise SetupError(f"JupyterLab exited at start (status {status}): see {log}")
        time.sleep(0.25)
    os.kill(pid, 15)
    raise SetupError(f"JupyterLab did not start within {timeout:.0f}s: see {log}")
