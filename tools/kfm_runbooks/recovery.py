"""What a kill leaves behind, found and finished by the next command on the incident.

Every command that changes an incident opens it with `open_for_update`, which, under the
workspace lock:

    refuse     a ledger that does not verify (torn, edited, unreadable) or an unreadable
               manifest: nothing is built on it; the error points to `verify`
    complete   the newest entry's unapplied views, its announced publication, or the
               incident.yaml it recorded (Workspace.complete, evidence.finish)
    seal       every run whose `run.started` has no seal and whose runner is dead (SIGKILL,
               power loss): its kernel is stopped if still alive, what its notebook holds
               is sealed with outcome `aborted`, its scratch folder removed
    tidy       leftovers of sealed runs (a partial notebook, a scratch folder) removed, and
               recorded in the ledger with their sha256
    flags      each runbook's integrity flag agrees with its last decisive run
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

from . import ledger, manifest
from ._fs import NotRegularError, sha256_regular
from ._proc import owner_state
from ._time import parse_iso, utc_now
from .errors import DamagedError, RunbookError
from .history import History
from .layout import TIMELINE, Workspace, timeline_line
from .vocab import LedgerKind
from .workspace import open_workspace


def open_for_update(incident_id: str, root: str | Path | None, actor: str) -> Workspace:
    """`open_workspace`, refusing damaged records and finishing what kills left behind."""
    workspace = open_workspace(incident_id, root)
    with workspace.locked():
        recover_locked(workspace, actor)
    return workspace


def recover_locked(workspace: Workspace, actor: str, *, strict: bool = True) -> list[str]:
    """Run the recovery steps (module docstring); returns one line per thing done.
    Without `strict` a damaged ledger or manifest is left alone silently (verify names it).
    Caller holds the lock."""
    try:
        refuse_damaged(workspace)
    except DamagedError:
        if strict:
            raise
        return []
    last = ledger.head(workspace.ledger)
    if last is not None:
        workspace.complete(last)
    done: list[str] = []
    for started in History.read(workspace).open_runs:
        if owner_state(started["data"].get("runner"), started["data"].get("host")) == "dead":
            done.append(_seal_aborted(workspace, started, actor))
    done += _tidy(workspace, actor)
    done += _sync_flags(workspace, actor)
    return done


def refuse_damaged(workspace: Workspace) -> None:
    """DamagedError (pointing to `verify`) when the ledger does not verify or the manifest
    cannot be read: what every command checks before it builds on them."""
    ledger.read_valid(workspace.ledger)
    try:
        manifest.read(workspace.manifest)
    except manifest.ManifestSyntaxError as exc:
        raise DamagedError(workspace.incident_id, str(exc)) from exc
    except NotRegularError as exc:
        raise DamagedError(workspace.incident_id, f"hashes.sha256: {exc.kind}") from exc


def _seal_aborted(workspace: Workspace, started: dict[str, Any], actor: str) -> str:
    """Seal a run whose runner died before sealing it, as `aborted`."""
    from . import runbook as runbook_mod
    from ._proc import kill_group, read_process
    from .seal import RunbookRef, RunInputs, seal_run
    from .target import load_target

    data = started["data"]
    scratch = _scratch(data)
    if scratch is not None:
        kernel = read_process(scratch / "kernel.pid")
        if kernel is not None and kernel.alive():
            kill_group(kernel.pid)
    ref = RunbookRef.from_data(data.get("runbook") or {})
    book = None
    for candidate in ([scratch / "runbook.ipynb"] if scratch else []) + [Path(ref.path)]:
        with contextlib.suppress(RunbookError, OSError):
            loaded = runbook_mod.load(candidate)
            if loaded.sha256 == ref.sha256:
                book = loaded
                break
    target = None
    with contextlib.suppress(RunbookError, OSError):
        target = load_target(str((data.get("target") or {}).get("path")))
    inputs = RunInputs(
        run_id=str(data.get("run_id")),
        runbook=ref,
        parameters=dict(data.get("parameters") or {}),
        target=target,
        target_info=dict(data.get("target") or {}),
        actor=str(started["actor"]),
        started=parse_iso(str(data.get("started") or started["time"])),
    )
    runner = str(data.get("runner", "?")).split(":", 1)[0]
    status = {
        "status": "aborted",
        "detail": f"the runner (pid {runner}) was killed before it sealed the run; sealed "
        f"by the next command on the incident (by {actor})",
    }
    result = seal_run(
        workspace,
        inputs,
        book=book,
        partial=workspace.path / str(data.get("partial")),
        status=status,
        ended=utc_now(),
    )
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    return f"sealed run {inputs.run_id} as aborted (ledger #{result.ledger_seq})"


def _scratch(data: dict[str, Any]) -> Path | None:
    """The run's scratch folder, only if it provably is one (its request names the run):
    a path read from the ledger is never removed on its word alone."""
    value = data.get("scratch")
    if not isinstance(value, str) or not Path(value).name.startswith("kfm-run-"):
        return None
    folder = Path(value)
    try:
        request = json.loads((folder / "request.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(request, dict) or (request.get("env") or {}).get("KFM_RUN_ID") != data.get(
        "run_id"
    ):
        return None
    return folder


def _tidy(workspace: Workspace, actor: str) -> list[str]:
    """Remove leftovers of sealed runs whose runner is gone; one ledger entry says which."""
    history = History.read(workspace)
    open_ids = {str(e["data"].get("run_id")) for e in history.open_runs}
    removed: list[dict[str, Any]] = []
    folders: list[str] = []
    for started in history.of("run.started"):
        data = started["data"]
        if str(data.get("run_id")) in open_ids:
            continue
        if owner_state(data.get("runner"), data.get("host")) != "dead":
            continue
        partial = workspace.path / str(data.get("partial"))
        if str(data.get("partial", "")).startswith("10_evidence/runs/."):
            with contextlib.suppress(OSError):
                digest = sha256_regular(partial, workspace.path)[0]
                partial.unlink()
                removed.append({"path": str(data["partial"]), "sha256": digest})
        scratch = _scratch(data)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
            folders.append(str(scratch))
    if not removed and not folders:
        return []
    line = (
        f"recovery: removed leftovers of sealed runs ({len(removed)} partial notebook(s), "
        f"{len(folders)} scratch folder(s)) by {actor}"
    )
    workspace.record(
        LedgerKind.RECOVERED,
        {"removed": removed, "scratch_removed": folders},
        actor,
        {TIMELINE: timeline_line(line)},
    )
    return [line]


def _sync_flags(workspace: Workspace, actor: str) -> list[str]:
    """Each `run:<runbook>` flag as its last decisive run (hold raises, passed clears) says:
    a seal finished by recovery may have stopped before its flag was written."""
    from .flags import flag_locked

    history = History.read(workspace)
    decisive: dict[str, dict[str, Any]] = {}
    for entry in history.runs:
        if entry["data"].get("outcome") in ("hold", "passed"):
            decisive[str((entry["data"].get("runbook") or {}).get("id"))] = entry["data"]
    flags = history.open_flags
    done = []
    for runbook_id, data in decisive.items():
        source = f"run:{runbook_id}"
        wanted = str(data.get("detail")) if data.get("outcome") == "hold" else None
        if flags.get(source) != wanted:
            flag_locked(workspace, source, wanted, actor)
            done.append(f"integrity flag {source} brought in line with its last run")
    return done
