"""Run one runbook against one incident: validate, execute under a watchdog, seal.

    runbook file ─> parameters checked against its `parameters` cell ─> kernel present?
    ─> worker process (papermill + project kernel over IPC), notebook saved after every
       cell to a hidden temp file in 10_evidence/runs/
    ─> wall-clock limit: at the deadline the kernel's process group is killed; the worker
       saves what ran and exits; as a last resort the worker is killed too
    ─> seal (seal.py): evidence, hashes, ledger, PROV, timeline, checks

Everything that can be refused is refused before a kernel starts, and nothing is written
outside the incident's workspace (the worker's scratch lives in a private temp folder).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import kernel as kernel_mod
from . import params as params_mod
from . import runbook as runbook_mod
from ._time import utc_now
from .errors import InputError
from .ids import new_run_id
from .layout import Workspace, default_actor
from .seal import RunResult, seal_run
from .target import Target, load_target
from .workspace import open_workspace

DEFAULT_TIMEOUT_S = 1800.0
KILL_GRACE_S = 20.0


@dataclass
class RunOptions:
    runbook: str
    incident_id: str
    root: str | Path | None = None
    cli_params: list[str] = field(default_factory=list)
    params_file: Path | None = None
    apply: bool = False
    timeout: float = DEFAULT_TIMEOUT_S
    target: Path | None = None
    actor: str | None = None
    kernel_name: str = kernel_mod.KERNEL_NAME
    quiet: bool = False


def default_target() -> Path:
    """The built-in sandbox's target.yaml, created on first use."""
    from .sandbox import default_sandbox_dir, ensure_sandbox

    return ensure_sandbox(default_sandbox_dir())


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _supervise(proc: subprocess.Popen[bytes], deadline: float, pid_file: Path) -> str | None:
    """Wait for the worker; returns 'timeout' / 'interrupted' if we had to stop it."""
    reason: str | None = None
    try:
        while proc.poll() is None:
            if time.monotonic() >= deadline:
                reason = "timeout"
                break
            time.sleep(0.05)
    except KeyboardInterrupt:
        reason = "interrupted"
    if reason is None:
        return None
    # Stop the kernel: the worker then sees a dead kernel, saves the notebook, exits.
    kernel_pid = _read_pid(pid_file)
    if kernel_pid is not None:
        _kill_group(kernel_pid)
    else:
        _kill_group(proc.pid)
    try:
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.wait()
    return reason


@dataclass(frozen=True)
class Prepared:
    """Everything validated before a kernel starts (shared by `run` and `open`)."""

    workspace: Workspace
    runbook: runbook_mod.Runbook
    target: Target
    parameters: dict[str, Any]
    actor: str


def prepare(options: RunOptions) -> Prepared:
    """Validate ids, runbook, parameters, target and kernel; raises before anything runs."""
    workspace = open_workspace(options.incident_id, options.root)
    runbook = runbook_mod.load(runbook_mod.find(options.runbook))
    declared = runbook.parameters()
    if options.timeout <= 0:
        raise InputError(f"--timeout must be a positive number of seconds, not {options.timeout}")
    target = load_target(options.target if options.target is not None else default_target())
    parameters = params_mod.build(
        declared,
        cli=options.cli_params,
        file=options.params_file,
        injected={
            "incident_id": workspace.incident_id,
            "workspace": str(workspace.path),
            "target": str(target.path),
            "apply": bool(options.apply),
        },
    )
    kernel_mod.spec_info(options.kernel_name)
    return Prepared(workspace, runbook, target, parameters, options.actor or default_actor())


def run_runbook(options: RunOptions) -> RunResult:
    """Execute a runbook headlessly and seal its evidence; returns the sealed result."""
    prepared = prepare(options)
    workspace, runbook, target = prepared.workspace, prepared.runbook, prepared.target
    parameters, actor = prepared.parameters, prepared.actor
    run_id = new_run_id()
    partial = workspace.runs / f".{run_id}.partial.ipynb"
    private = Path(tempfile.mkdtemp(prefix="kfm-run-"))
    try:
        source = private / "runbook.ipynb"
        source.write_bytes(runbook.raw)  # execute exactly the bytes we hashed
        request = {
            "input": str(source),
            "output": str(partial.relative_to(workspace.path)),
            "cwd": str(workspace.path),
            "parameters": parameters,
            "kernel_name": options.kernel_name,
            "private_dir": str(private),
            "pid_file": str(private / "kernel.pid"),
            "status_file": str(private / "status.json"),
            "env": {
                "KFM_RUN_ID": run_id,
                "KFM_RUNBOOK_ID": runbook.id,
                "KFM_ACTOR": actor,
                "JUPYTER_PLATFORM_DIRS": "1",
            },
        }
        (private / "request.json").write_text(json.dumps(request))
        if not options.quiet:
            mode = "APPLY" if options.apply else "read-only"
            print(
                f"▶ {run_id}: {runbook.id} v{runbook.version} on {workspace.incident_id} "
                f"({mode}, target {target.name}, limit {options.timeout:g}s)",
                file=sys.stderr,
            )
        started = utc_now()
        proc = subprocess.Popen(
            [sys.executable, "-m", "kfm_runbooks._worker", str(private / "request.json")],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL if options.quiet else None,
            env={**os.environ, "JUPYTER_PLATFORM_DIRS": "1"},
        )
        stopped = _supervise(proc, time.monotonic() + options.timeout, private / "kernel.pid")
        ended = utc_now()
        status = _status(private / "status.json", stopped, options.timeout)
        return seal_run(
            workspace,
            run_id=run_id,
            runbook=runbook,
            partial=partial,
            status=status,
            parameters=parameters,
            target=target,
            actor=actor,
            started=started,
            ended=ended,
        )
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _status(path: Path, stopped: str | None, timeout: float) -> dict[str, Any]:
    if stopped == "timeout":
        return {"status": "timeout", "detail": f"wall-clock limit of {timeout:g}s reached"}
    if stopped == "interrupted":
        return {"status": "interrupted"}
    try:
        status: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"status": "kernel-died", "detail": "the worker process ended without a status"}
    return status
