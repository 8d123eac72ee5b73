"""JupyterLab parity: `open` prepares a runbook for an operator, `seal` makes it evidence.

`open` validates exactly like `run`, copies the runbook as evidence (the pristine version
the session starts from), and writes a parameterized working copy (papermill's prepare
step) to `<workspace>/sessions/`. Inside the kernel the recorder picks up the injected
`kfm_session_id`, so findings, checks and applied actions reach the ledger as they
happen, exactly as in a headless run.

`seal` publishes the notebook the operator executed: each cell is marked run or skipped,
and unchanged / edited / added / removed against the runbook copy taken at `open`; the
outcome comes from its recorded checks (fail closed) or from an error left in a cell.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import manifest, scraps
from . import runbook as runbook_mod
from ._fs import create_new
from ._time import iso, parse_iso, utc_now
from .errors import InputError, NotebookFormatError, SetupError
from .execute import RunOptions, prepare
from .layout import default_actor
from .seal import RunResult, outcome_from, seal_notebook
from .standard import PHASES
from .target import load_target
from .workspace import open_workspace

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
    with workspace.locked():
        create_new(workspace.evidence / copy_rel, book.raw)
        manifest.append(workspace.manifest, [(book.sha256, copy_rel)])
        create_new(notebook, nbformat.writes(nb).encode())
        entry = workspace.record(
            "session.opened",
            {
                "session_id": session_id,
                "runbook": {"id": book.id, "version": book.version, "sha256": book.sha256},
                "parameters": prepared.parameters,
                "notebook": notebook.relative_to(workspace.path).as_posix(),
                "outputs": [{"path": copy_rel, "sha256": book.sha256}],
            },
            prepared.actor,
        )
        workspace.append_timeline(
            f"session {session_id} opened for {book.id} by {prepared.actor} "
            f"({'APPLY' if options.apply else 'read-only'})"
        )
    return Session(session_id, notebook, copy_rel, str(entry["hash"]))


def _cell_report(nb: Any, pristine: Any) -> list[dict[str, Any]]:
    """Per cell: ran or skipped, and drift against the runbook version it came from."""
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
        if cell.cell_type == "code":
            execution = "run" if cell.get("execution_count") is not None else "skipped"
        phase = next((t for t in tags if t in PHASES or t == "parameters"), "")
        report.append(
            {"index": index, "id": cell_id, "phase": phase, "execution": execution, "drift": drift}
        )
    for cell_id in original:
        if cell_id not in seen:
            report.append(
                {"index": None, "id": cell_id, "phase": "", "execution": "-", "drift": "removed"}
            )
    return report


def _error_in(nb: Any) -> str | None:
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "error":
                return f"cell {index} raised {output.get('ename')}: {output.get('evalue')}"
    return None


def seal_session(
    incident_id: str,
    notebook: str | Path,
    *,
    root: str | Path | None = None,
    actor: str | None = None,
) -> tuple[RunResult, list[dict[str, Any]]]:
    """Hash an operator's executed session notebook into the evidence."""
    import nbformat

    workspace = open_workspace(incident_id, root)
    actor = actor or default_actor()
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
    pristine = runbook_mod.load(workspace.evidence / meta["runbook_copy"])
    if pristine.sha256 != meta["runbook"]["sha256"]:
        raise InputError(f"the runbook copy of {meta['session_id']} changed: run `verify`")
    cells = _cell_report(nb, pristine.nb)
    error = _error_in(nb)
    if error:
        outcome, detail = "errored", error
    else:
        outcome, detail = outcome_from({"status": "completed"}, scraps.read(nb))
    summary = {
        "run": sum(c["execution"] == "run" for c in cells),
        "skipped": sum(c["execution"] == "skipped" for c in cells),
        **{d: sum(c["drift"] == d for c in cells) for d in ("edited", "added", "removed")},
    }
    ended = utc_now()
    result = seal_notebook(
        workspace,
        kind="session.sealed",
        run_id=meta["session_id"],
        runbook=pristine,
        nb=nb,
        outcome=outcome,
        detail=detail,
        parameters=meta["parameters"],
        target=load_target(meta["target"]),
        actor=actor,
        started=parse_iso(meta["opened"]),
        ended=ended,
        notebook_name=f"runs/{meta['session_id']}.{pristine.id}.{ended:%Y%m%dT%H%M%S}.ipynb",
        extra_data={
            "cells": cells,
            "cell_summary": summary,
            "opened_by": meta["opened_by"],
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
