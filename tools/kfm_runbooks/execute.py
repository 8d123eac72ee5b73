"""Run one runbook against one incident: validate, record the start, execute, seal.

    runbook file ─> parameters checked against its `parameters` cell ─> kernel present?
    ─> `run.started` in the ledger: the mode (apply or read-only) the runner decided, the
       runner's identity, its scratch folder; the kernel's recorder reads the mode from
       there, never from a notebook variable
    ─> worker process (papermill + project kernel over IPC), notebook saved after every
       cell to a hidden temp file in 10_evidence/runs/; worker and kernel die with the
       runner (parent-death signal), whatever kills it
    ─> wall-clock limit, Ctrl-C, SIGTERM, SIGHUP: the kernel's process group is killed; the
       worker saves what ran and exits; as a last resort the worker is killed too
    ─> seal (seal.py): evidence, hashes, ledger, PROV, timeline, checks

Everything that can be refused is refused before a kernel starts, and nothing is written
outside the incident's workspace but the worker's private scratch folder, which is
removed at the end - or, when the runner was SIGKILLed, by the next command on the
incident, which also seals the run as aborted (recovery.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import kernel as kernel_mod
from . import params as params_mod
from . import runbook as runbook_mod
from ._fs import sha256_bytes
from ._proc import ProcessRef, host, read_process
from ._proc import kill_group as _kill_group
from ._time import iso, utc_now
from .errors import InputError
from .ids import new_run_id
from .layout import TIMELINE, Workspace, default_actor, timeline_line
from .recovery import open_for_update
from .seal import RunbookRef, RunInputs, RunResult, seal_run
from .target import Target, load_target
from .vocab import LedgerKind

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
    push: str | None = None  # a git remote PR-first fixes are pushed to (with apply)
    executor: str | None = None  # a Dask scheduler address, or "local" (overrides the target)


def default_target() -> Path:
    """The built-in sandbox's target.yaml, created on first use."""
    from .sandbox import default_sandbox_dir, ensure_sandbox

    return ensure_sandbox(default_sandbox_dir())


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled like Ctrl-C: stop the kernel, seal what exists."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.detail = f"stopped by {signal.Signals(signum).name}; kernel stopped"


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _signals(handler: Any) -> Iterator[None]:
    """SIGTERM/SIGHUP (and SIGINT when `handler` is SIG_IGN) handled by `handler` inside
    the block (main thread only: Python delivers signals there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = (*STOP_SIGNALS, signal.SIGINT) if handler is signal.SIG_IGN else STOP_SIGNALS
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _raise_stopped(signum: int, _frame: Any) -> None:
    raise Stopped(signum)


def _supervise(
    command: list[str], quiet: bool, deadline: float, pid_file: Path
) -> dict[str, Any] | None:
    """Run the worker; a status when we had to stop it (timeout, Ctrl-C, SIGTERM/SIGHUP)."""
    proc: subprocess.Popen[bytes] | None = None
    stopped: dict[str, Any] | None = None
    try:
        with _signals(_raise_stopped):
            proc = subprocess.Popen(
                command,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL if quiet else None,
                env={**os.environ, "JUPYTER_PLATFORM_DIRS": "1"},
            )
            while proc.poll() is None:
                if time.monotonic() >= deadline:
                    stopped = {"status": "timeout"}
                    break
                time.sleep(0.05)
    except Stopped as exc:
        stopped = {"status": "interrupted", "detail": exc.detail}
    except KeyboardInterrupt:
        stopped = {"status": "interrupted"}
    if stopped is None or proc is None:
        return stopped
    with _signals(signal.SIG_IGN):
        # Stop the kernel: the worker then sees a dead kernel, saves the notebook, exits.
        kernel = read_process(pid_file)
        _kill_group(kernel.pid if kernel is not None and kernel.alive() else proc.pid)
        try:
            proc.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
    return stopped


@dataclass(frozen=True)
class Prepared:
    """Everything validated before a kernel starts (shared by `run` and `open`)."""

    workspace: Workspace
    runbook: runbook_mod.Runbook
    target: Target
    parameters: dict[str, Any]
    actor: str


def prepare(options: RunOptions) -> Prepared:
    """Validate ids, runbook, parameters, target and kernel; raises before anything runs.

    Opening the workspace for a change also finishes what a kill left behind in it
    (recovery.py) and refuses a workspace whose ledger or record does not verify."""
    actor = options.actor or default_actor()
    workspace = open_for_update(options.incident_id, options.root, actor)
    runbook = runbook_mod.load(runbook_mod.find(options.runbook))
    declared = runbook.parameters()
    if options.timeout <= 0:
        raise InputError(f"--timeout must be a positive number of seconds, not {options.timeout}")
    if options.push is not None and not options.apply:
        raise InputError("--push pushes PR-first fixes, which only --apply makes: add --apply")
    if options.push is not None and not re.fullmatch(
        r"[A-Za-z0-9][A-Za-z0-9._/-]{0,99}", options.push
    ):
        raise InputError(f"--push {options.push!r} is not a git remote name (see `git remote`)")
    target = load_target(options.target if options.target is not None else default_target())
    if options.executor is not None:
        from .checks.common.cluster import check_address

        check_address(options.executor, target)
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
    return Prepared(workspace, runbook, target, parameters, actor)


def target_info(target: Target) -> dict[str, Any]:
    return {
        "name": target.name,
        "path": str(target.path),
        "sha256": sha256_bytes(target.path.read_bytes()),
    }


def mode_name(apply: bool) -> str:
    return "APPLY" if apply else "read-only"


def record_start(prepared: Prepared, run_id: str, scratch: Path, partial: Path) -> RunInputs:
    """The `run.started` entry, written before the kernel starts: what runs, in which mode
    (the kernel's recorder takes it from here), and who to ask whether it still runs."""
    workspace, book = prepared.workspace, prepared.runbook
    inputs = RunInputs(
        run_id=run_id,
        runbook=RunbookRef.of(book),
        parameters=prepared.parameters,
        target=prepared.target,
        target_info=target_info(prepared.target),
        actor=prepared.actor,
        started=utc_now(),
    )
    apply = bool(prepared.parameters["apply"])
    line = (
        f"run {run_id} {book.id} started ({mode_name(apply)}, target {prepared.target.name}) "
        f"by {prepared.actor}"
    )
    with workspace.locked():
        workspace.record(
            LedgerKind.RUN_STARTED,
            {
                "run_id": run_id,
                "runbook": inputs.runbook.as_dict(),
                "parameters": prepared.parameters,
                "apply": apply,
                "target": inputs.target_info,
                "started": iso(inputs.started),
                "runner": str(ProcessRef.of(os.getpid())),
                "host": host(),
                "scratch": str(scratch),
                "partial": partial.relative_to(workspace.path).as_posix(),
            },
            prepared.actor,
            {TIMELINE: timeline_line(line)},
        )
    return inputs


def run_runbook(options: RunOptions) -> RunResult:
    """Execute a runbook headlessly and seal its evidence; returns the sealed result."""
    prepared = prepare(options)
    workspace, runbook, target = prepared.workspace, prepared.runbook, prepared.target
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
            "parameters": prepared.parameters,
            "kernel_name": options.kernel_name,
            "private_dir": str(private),
            "pid_file": str(private / "kernel.pid"),
            "status_file": str(private / "status.json"),
            "parent": os.getpid(),
            "env": {
                "KFM_RUN_ID": run_id,
                "KFM_RUNBOOK_ID": runbook.id,
                "KFM_ACTOR": prepared.actor,
                "JUPYTER_PLATFORM_DIRS": "1",
                **({"KFM_PUSH_REMOTE": options.push} if options.push else {}),
                **({"KFM_EXECUTOR": options.executor} if options.executor else {}),
            },
        }
        (private / "request.json").write_text(json.dumps(request))
        inputs = record_start(prepared, run_id, private, partial)
        if not options.quiet:
            print(
                f"▶ {run_id}: {runbook.id} v{runbook.version} on {workspace.incident_id} "
                f"({mode_name(options.apply)}, target {target.name}, limit {options.timeout:g}s)",
                file=sys.stderr,
            )
        command = [sys.executable, "-m", "kfm_runbooks._worker", str(private / "request.json")]
        stopped = _supervise(
            command, options.quiet, time.monotonic() + options.timeout, private / "kernel.pid"
        )
        with _signals(signal.SIG_IGN):  # a second signal must not tear the seal
            status = _status(private / "status.json", stopped, options.timeout)
            return seal_run(
                workspace, inputs, book=runbook, partial=partial, status=status, ended=utc_now()
            )
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _status(path: Path, stopped: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
    if stopped is not None and stopped["status"] == "timeout":
        return {"status": "timeout", "detail": f"wall-clock limit of {timeout:g}s reached"}
    if stopped is not None:
        return stopped
    try:
        status: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"status": "kernel-died", "detail": "the worker process ended without a status"}
    return status
