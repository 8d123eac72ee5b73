"""Turn an execution into sealed evidence.

For every run, whatever its outcome, `seal_notebook` is a pipeline of named steps:

    scrub      secrets replaced in the notebook, parameters and extra files and data
    live       what the ledger recorded live for the run (checks, findings): the outcome
               comes from there, never from outputs stored in the notebook
    judge      the verdict and its detail; a banner on a run that did not finish
    mark       the notebook's metadata.kfm_run (outcome, runbook, target, actor, times)
    serialise  the metadata scrubbed too, then the bytes that will be hashed
    files      the notebook, a copy of the target file, a PROV-JSON record, extra files
    attest     with a signing key: an in-toto statement over those files, DSSE-signed,
               beside the PROV record (attestation.py); without one, the run says why not
    result     the RunResult (hash, checks, counts)
    publish    staged, announced, linked, hashed, chained (evidence.publish_locked), with
               its views: the timeline line, the checks.md and metrics.md sections
    flag       a HOLD raises the runbook's integrity flag, a pass clears it

all under the workspace lock, so a kill at any moment is finished or named by the next
command (evidence.py).
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from . import __version__, attestation, provenance, redact, scraps
from . import runbook as runbook_mod
from ._fs import sha256_bytes
from ._time import iso
from .errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_RUN_ABORTED, EXIT_RUNBOOK_ERROR
from .evidence import publish_locked
from .history import History
from .layout import CHECKS, METRICS, TIMELINE, Workspace, timeline_line
from .target import Target
from .vocab import LedgerKind

EXIT_CODES = {
    "passed": EXIT_OK,
    "failed": EXIT_CHECK_FAILED,
    "hold": EXIT_CHECK_FAILED,
    "unverified": EXIT_CHECK_FAILED,
    "errored": EXIT_RUNBOOK_ERROR,
    "timeout": EXIT_RUN_ABORTED,
    "kernel-died": EXIT_RUN_ABORTED,
    "interrupted": EXIT_RUN_ABORTED,
    "aborted": EXIT_RUN_ABORTED,
}
ABORTED = ("timeout", "kernel-died", "interrupted", "aborted")


@dataclass
class RunResult:
    run_id: str
    incident_id: str
    runbook_id: str
    outcome: str
    exit_code: int
    started: str
    ended: str
    notebook: str  # relative to the workspace
    notebook_sha256: str
    ledger_seq: int
    ledger_head: str
    checks: list[dict[str, Any]] = field(default_factory=list)
    findings: int = 0
    detail: str = ""
    redactions: dict[str, int] = field(default_factory=dict)
    attestation: str = ""  # its evidence path, or "none: <why>"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunbookRef:
    """The runbook a run executed, as the ledger records it."""

    id: str
    version: str
    sha256: str
    path: str
    library: bool

    @classmethod
    def of(cls, book: runbook_mod.Runbook) -> RunbookRef:
        return cls(book.id, book.version, book.sha256, str(book.path), runbook_mod.in_library(book))

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> RunbookRef:
        return cls(
            str(data.get("id")),
            str(data.get("version")),
            str(data.get("sha256")),
            str(data.get("path")),
            bool(data.get("library")),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Live:
    """What the ledger saw a run record while it ran (the kernel's recorder writes it)."""

    checks: list[dict[str, Any]]  # the last status per check name, in first-seen order
    findings: list[dict[str, Any]]
    code: dict[str, Any] | None = None  # the last code provenance the kernel recorded
    connections: list[dict[str, Any]] = field(default_factory=list)  # hosts it touched

    def connection_summary(self) -> dict[str, Any]:
        """How many connections the run opened and to where (scheme://host:port, or the
        kind and host), from the `connections` entries its kernel wrote."""
        places: set[str] = set()
        count = 0
        for batch in self.connections:
            listed = batch.get("connections") or []
            count += len(listed) + int(batch.get("not_listed") or 0)
            for item in listed:
                where = str(item.get("where", ""))
                parts = urllib.parse.urlsplit(where) if "//" in where else None
                places.add(
                    f"{parts.scheme}://{parts.netloc}" if parts else f"{item.get('kind')} {where}"
                )
        return {"count": count, "to": sorted(places)}

    def executor(self) -> dict[str, Any] | None:
        """The Dask cluster the run hashed on (its first connection to one), else None:
        the only difference between a local run's record and a cluster run's."""
        for batch in self.connections:
            for item in batch.get("connections") or []:
                if item.get("kind") == "dask" and item.get("status") == "connected":
                    return {
                        "kind": "dask",
                        "address": item.get("where"),
                        "workers": item.get("workers"),
                    }
        return None

    def code_provenance(self) -> dict[str, Any] | None:
        """The code that made the call, as the kernel recorded it (codeprov.py); None when
        it recorded none (no recorder started, or the kernel died before a cell ended)."""
        if self.code is None:
            return None
        return {k: v for k, v in self.code.items() if k not in ("run_id", "runbook")}

    @classmethod
    def read(cls, history: History, run_id: str) -> Live:
        checks: dict[str, dict[str, Any]] = {}
        findings: list[dict[str, Any]] = []
        code: dict[str, Any] | None = None
        connections: list[dict[str, Any]] = []
        for entry in history.entries:
            data = entry["data"]
            if data.get("run_id") != run_id:
                continue
            if entry["kind"] == "check":
                check = {
                    "name": data.get("name"),
                    "status": data.get("status"),
                    "detail": data.get("detail", ""),
                }
                check.update({k: data[k] for k in ("coverage", "requested") if k in data})
                checks[str(data.get("name"))] = check
            elif entry["kind"] == "finding":
                findings.append(data)
            elif entry["kind"] == LedgerKind.CODE:
                code = data
            elif entry["kind"] == LedgerKind.CONNECTIONS:
                connections.append(data)
        return cls(list(checks.values()), findings, code, connections)


def outcome_from(status: dict[str, Any], checks: list[dict[str, Any]]) -> tuple[str, str]:
    """(outcome, human detail) from the worker status and the checks the ledger saw."""
    kind = status.get("status")
    if kind == "completed":
        if not checks:
            return "unverified", "the runbook recorded no verification check (fail closed)"
        failed = [str(c["name"]) for c in checks if c.get("status") == "FAIL"]
        held = [str(c["name"]) for c in checks if c.get("status") == "HOLD"]
        if failed:
            return "failed", f"verification failed: {', '.join(failed)}"
        if held:
            return "hold", f"verification on hold (unverifiable): {', '.join(held)}"
        return "passed", f"all {len(checks)} verification checks passed"
    if kind == "cell-error":
        return "errored", (
            f"cell {status.get('cell_index')} raised {status.get('ename')}: {status.get('evalue')}"
        )
    if kind in ("timeout", "kernel-died", "aborted"):
        defaults = {
            "timeout": "wall-clock limit reached; kernel stopped",
            "kernel-died": "the kernel died during the run",
            "aborted": "the runner was killed before it sealed the run",
        }
        return str(kind), status.get("detail") or defaults[str(kind)]
    if kind == "interrupted":
        return "interrupted", status.get("detail") or "interrupted by the operator; kernel stopped"
    return "errored", f"{status.get('ename', 'error')}: {status.get('evalue', kind)}"


def _running_cell(nb: Any) -> int | None:
    for index, cell in enumerate(nb.cells):
        if cell.get("metadata", {}).get("papermill", {}).get("status") == "running":
            return int(index)
    return None


def _banner(nb: Any, outcome: str, detail: str) -> None:
    import nbformat

    running = _running_cell(nb)
    where = (
        f" while cell {running} was running; later cells never ran" if running is not None else ""
    )
    text = (
        f'<span style="color:red; font-family:monospace">⛔ RUN {outcome.upper()}: '
        f"{detail}{where}. This notebook is the evidence of what ran before.</span>"
    )
    cell = nbformat.v4.new_markdown_cell(text, id="kfm-run-aborted")
    cell.metadata["tags"] = ["kfm-run-banner"]
    nb.cells.insert(0, cell)


def _fallback_notebook(runbook: runbook_mod.Runbook | None, parameters: dict[str, Any]) -> Any:
    """The parameterized runbook (or an empty notebook), for a run that saved nothing."""
    import nbformat

    from .kernel import KERNEL_NAME

    if runbook is None:
        return nbformat.v4.new_notebook()
    return runbook.parameterized(parameters, KERNEL_NAME)


def _checks_section(
    result: RunResult, runbook: RunbookRef, actor: str, live: Live, seq: int
) -> str:
    lines = [
        f"\n## {result.run_id} · {runbook.id} v{runbook.version} · **{result.outcome}**\n",
        f"- started {result.started}, ended {result.ended} (UTC), by {actor}",
        f"- notebook `{result.notebook}` sha256 `{result.notebook_sha256}`",
        f"- ledger entry #{seq}",
        f"- {result.detail}",
        "",
    ]
    if live.checks:
        lines += ["| status | check | detail |", "|---|---|---|"]
        for check in live.checks:
            detail = str(check.get("detail", "")).replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {check.get('status')} | {check.get('name')} | {detail} |")
        lines.append("")
    if live.findings:
        by_code = Counter((str(f.get("severity")), str(f.get("code"))) for f in live.findings)
        lines += ["| findings | severity | code |", "|---:|---|---|"]
        for (severity, code), count in sorted(by_code.items()):
            lines.append(f"| {count} | {severity} | {code} |")
        lines.append("")
    return "\n".join(lines)


def _metrics_section(result: RunResult, runbook: RunbookRef, found: dict[str, Any]) -> str:
    metrics = {
        k.removeprefix("kfm.metric."): v for k, v in found.items() if k.startswith("kfm.metric.")
    }
    if not metrics:
        return ""
    lines = [
        f"\n## {result.run_id} · {runbook.id} · {result.ended}\n",
        "| metric | value | unit |",
        "|---|---:|---|",
    ]
    for name, value in metrics.items():
        value = value if isinstance(value, dict) else {"value": value}
        lines.append(f"| {name} | {json.dumps(value.get('value'))} | {value.get('unit', '')} |")
    return "\n".join(lines) + "\n"


def _update_integrity_flag(
    workspace: Workspace, runbook_id: str, outcome: str, detail: str, actor: str
) -> None:
    """HOLD means integrity/provenance could not be proven: flag it; a pass clears it."""
    from .flags import flag_locked

    if outcome == "hold":
        flag_locked(workspace, f"run:{runbook_id}", detail, actor)
    elif outcome == "passed":
        flag_locked(workspace, f"run:{runbook_id}", None, actor)


def read_partial(partial: Path) -> tuple[Any, bytes | None]:
    """(notebook or None, raw bytes if they could not be parsed: torn by a kill mid-save)."""
    import nbformat

    from ._fs import read_regular

    try:
        raw = read_regular(partial)
    except OSError:
        return None, None
    try:
        return nbformat.reads(raw.decode("utf-8"), as_version=4), None
    except Exception:  # any parse failure: keep the bytes as evidence, fall back below
        return None, raw


@dataclass(frozen=True)
class RunInputs:
    """What a headless run was started with (also read back from `run.started`)."""

    run_id: str
    runbook: RunbookRef
    parameters: dict[str, Any]
    target: Target | None
    target_info: dict[str, Any]
    actor: str
    started: dt.datetime


def seal_run(
    workspace: Workspace,
    inputs: RunInputs,
    *,
    book: runbook_mod.Runbook | None,
    partial: Path,
    status: dict[str, Any],
    ended: dt.datetime,
) -> RunResult:
    """Seal a headless run, whatever happened to it (the worker's status says what)."""
    nb, torn = read_partial(partial)
    if nb is None:
        nb = _fallback_notebook(book, inputs.parameters)
        if status.get("status") == "completed":
            status = {
                "status": "internal-error",
                "ename": "MissingOutput",
                "evalue": "the executed notebook was not saved",
            }
    extra = {f"runs/{inputs.run_id}.torn-partial.bin": torn} if torn is not None else {}
    result = seal_notebook(
        workspace,
        kind="run",
        inputs=inputs,
        nb=nb,
        status=status,
        ended=ended,
        extra_files=extra,
        notebook_name=f"runs/{inputs.run_id}.{inputs.runbook.id}.ipynb",
        discard=partial,
    )
    return result


def seal_notebook(
    workspace: Workspace,
    *,
    kind: str,
    inputs: RunInputs,
    nb: Any,
    status: dict[str, Any],
    ended: dt.datetime,
    notebook_name: str,
    extra_files: dict[str, bytes] | None = None,
    extra_data: dict[str, Any] | None = None,
    outcome: tuple[str, str] | None = None,
    discard: Path | None = None,
) -> RunResult:
    """Publish an executed notebook as evidence: marked, scrubbed, hashed, chained, summarised.

    The outcome is `outcome_from(status, <checks the ledger saw live>)` unless the caller
    decided it from the ledger itself (`outcome`, sessions). `discard` (the worker's working
    copy) is removed once the sealed copy is recorded, still under the lock."""
    counts: Counter[str] = Counter()
    nb, inputs, extra_data, extra_files = _scrub(nb, inputs, extra_data, extra_files, counts)
    with workspace.locked():
        live = Live.read(History.read(workspace), inputs.run_id)
        verdict, detail = _judge(nb, status, live, outcome)
        metrics = scraps.read(nb)
        inputs, target_bytes = _target_copy(inputs)
        _mark(nb, workspace, inputs, verdict, detail, ended, extra_data)
        notebook_bytes = _serialise(nb, counts)
        files = _files(
            workspace,
            kind,
            inputs,
            (notebook_name, notebook_bytes),
            target_bytes,
            (verdict, ended),
            live.code_provenance(),
        )
        files += [(f"10_evidence/{rel}", data) for rel, data in extra_files.items()]
        sealed = (notebook_name, notebook_bytes)
        result = _result(workspace, inputs, (verdict, detail), ended, sealed, live, counts)
        extra_data = {
            **(extra_data or {}),
            "code": live.code_provenance(),  # entry + attestation
            "connections": live.connection_summary(),
            **({"executor": live.executor()} if live.executor() else {}),
        }
        files, extra_data = _attest(workspace, kind, inputs, result, files, extra_data)
        _publish(workspace, kind, inputs, result, files, counts, extra_data, live, metrics)
        if discard is not None:
            discard.unlink(missing_ok=True)
        _update_integrity_flag(workspace, inputs.runbook.id, verdict, detail, inputs.actor)
    return result


def _scrub(
    nb: Any,
    inputs: RunInputs,
    extra_data: dict[str, Any] | None,
    extra_files: dict[str, bytes] | None,
    counts: Counter[str],
) -> tuple[Any, RunInputs, dict[str, Any], dict[str, bytes]]:
    """The door into evidence: everything sealed is derived from these, scrubbed whole (the
    notebook as joined strings, before nbformat splits them into lines)."""
    return (
        redact.clean(nb, counts),
        replace(inputs, parameters=redact.clean(inputs.parameters)),
        redact.clean(extra_data or {}),
        {rel: redact.clean(data) for rel, data in (extra_files or {}).items()},
    )


def _judge(
    nb: Any, status: dict[str, Any], live: Live, outcome: tuple[str, str] | None
) -> tuple[str, str]:
    """(verdict, detail): the caller's, else from the worker status and the live checks; a
    run that did not end in a cell error gets the banner saying so."""
    verdict, detail = outcome or outcome_from(status, live.checks)
    detail = redact.clean(detail)
    if verdict in ABORTED or (verdict == "errored" and status.get("status") != "cell-error"):
        _banner(nb, verdict, detail)
    return verdict, detail


def _result(
    workspace: Workspace,
    inputs: RunInputs,
    judged: tuple[str, str],
    ended: dt.datetime,
    sealed: tuple[str, bytes],
    live: Live,
    counts: Counter[str],
) -> RunResult:
    """The run's result before publication (`_publish` fills in its ledger place)."""
    verdict, detail = judged
    notebook_name, notebook_bytes = sealed
    return RunResult(
        run_id=inputs.run_id,
        incident_id=workspace.incident_id,
        runbook_id=inputs.runbook.id,
        outcome=verdict,
        exit_code=EXIT_CODES[verdict],
        started=iso(inputs.started),
        ended=iso(ended),
        notebook=f"10_evidence/{notebook_name}",
        notebook_sha256=sha256_bytes(notebook_bytes),
        ledger_seq=-1,
        ledger_head="",
        checks=live.checks,
        findings=len(live.findings),
        detail=detail,
        redactions=dict(counts),
    )


def _publish(
    workspace: Workspace,
    kind: str,
    inputs: RunInputs,
    result: RunResult,
    files: list[tuple[str, bytes]],
    counts: Counter[str],
    extra_data: dict[str, Any],
    live: Live,
    metrics: dict[str, Any],
) -> None:
    """Stage, hash and chain the files with their ledger entry and views; the result learns
    its ledger place."""
    data = _entry_data(inputs, result, files, counts, extra_data)
    entry = publish_locked(
        workspace,
        files,
        kind,
        data,
        inputs.actor,
        lambda seq: _views(kind, result, inputs, live, metrics, seq),
    )
    result.ledger_seq, result.ledger_head = int(entry["seq"]), str(entry["hash"])


def _target_copy(inputs: RunInputs) -> tuple[RunInputs, bytes | None]:
    """The target file's bytes as sealed, and the inputs describing exactly those bytes
    (without a readable target, what `run.started` recorded)."""
    if inputs.target is None:
        return inputs, None
    try:
        data = inputs.target.path.read_bytes()
    except OSError:
        return replace(inputs, target=None), None
    info = {
        "name": inputs.target.name,
        "path": str(inputs.target.path),
        "sha256": sha256_bytes(data),
    }
    return replace(inputs, target_info=info), data


def _mark(
    nb: Any,
    workspace: Workspace,
    inputs: RunInputs,
    outcome: str,
    detail: str,
    ended: dt.datetime,
    extra_data: dict[str, Any],
) -> None:
    nb.metadata["kfm_run"] = {
        "run_id": inputs.run_id,
        "incident_id": workspace.incident_id,
        "runbook": inputs.runbook.as_dict(),
        "target": inputs.target_info,
        "actor": inputs.actor,
        "started": iso(inputs.started),
        "ended": iso(ended),
        "outcome": outcome,
        "detail": detail,
        "tool_version": __version__,
        **extra_data,
    }


def _serialise(nb: Any, counts: Counter[str]) -> bytes:
    """The sealed bytes; the metadata `_mark` added is scrubbed here (the cells already were)."""
    import nbformat

    nb.metadata["kfm_run"] = redact.clean(nb.metadata["kfm_run"], counts)
    text = json.dumps(json.loads(nbformat.writes(nb)), indent=1, sort_keys=True, ensure_ascii=False)
    return (text + "\n").encode()


def _files(
    workspace: Workspace,
    kind: str,
    inputs: RunInputs,
    notebook: tuple[str, bytes],
    target_bytes: bytes | None,
    ending: tuple[str, dt.datetime],
    code: dict[str, Any] | None,
) -> list[tuple[str, bytes]]:
    """(workspace-relative path, bytes): the notebook, the target copy, the PROV record."""
    notebook_name, notebook_bytes = notebook
    outcome, ended = ending
    stem = (
        f"runs/{inputs.run_id}" if kind == "run" else f"runs/{inputs.run_id}.{ended:%Y%m%dT%H%M%S}"
    )
    prov = provenance.run_document(
        incident_id=workspace.incident_id,
        run_id=inputs.run_id,
        runbook_id=inputs.runbook.id,
        runbook_sha256=inputs.runbook.sha256,
        runbook_version=inputs.runbook.version,
        actor=inputs.actor,
        started=inputs.started,
        ended=ended,
        outcome=outcome,
        parameters=inputs.parameters,
        target_name=str(inputs.target_info.get("name")),
        target_sha256=str(inputs.target_info.get("sha256")),
        notebook_name=notebook_name,
        notebook_sha256=sha256_bytes(notebook_bytes),
        tool_version=__version__,
        code=code,
    ).encode()
    files = [(f"10_evidence/{notebook_name}", notebook_bytes)]
    if target_bytes is not None:  # a DSN password stays with the target
        files.append((f"10_evidence/{stem}.target.yaml", redact.clean(target_bytes)))
    files.append((f"10_evidence/{stem}.prov.json", redact.clean(prov)))
    return files


def _attest(
    workspace: Workspace,
    kind: str,
    inputs: RunInputs,
    result: RunResult,
    files: list[tuple[str, bytes]],
    extra_data: dict[str, Any],
) -> tuple[list[tuple[str, bytes]], dict[str, Any]]:
    """The files plus the run's signed attestation, and the entry data naming it (or why
    there is none: never an error, the evidence is sealed either way)."""
    prov = next((rel for rel, _ in files if rel.endswith(".prov.json")), None)
    predicate = {
        "incident": workspace.incident_id,
        "run_id": inputs.run_id,
        "kind": kind,
        "runbook": inputs.runbook.as_dict(),
        "parameters": inputs.parameters,
        "target": inputs.target_info,
        "outcome": result.outcome,
        "detail": result.detail,
        "checks": [{"name": c.get("name"), "status": c.get("status")} for c in result.checks],
        "findings": result.findings,
        "actor": inputs.actor,
        "started": result.started,
        "ended": result.ended,
        "tool_version": __version__,
        "code": _code_digests(extra_data),
    }
    try:
        if prov is None:
            raise attestation.NoAttestation("no PROV document to sit beside")
        rel, data = attestation.build(files, redact.clean(predicate), prov)
    except attestation.NoAttestation as exc:
        result.attestation = f"none: {exc}"
        return files, {**extra_data, "attestation": result.attestation}
    result.attestation = rel
    return [*files, (rel, data)], {**extra_data, "attestation": rel.removeprefix("10_evidence/")}


def _code_digests(extra_data: dict[str, Any]) -> Any:
    """The code provenance the run entry carries (codeprov.py; None when none recorded)."""
    return extra_data.get("code")


def _entry_data(
    inputs: RunInputs,
    result: RunResult,
    files: list[tuple[str, bytes]],
    counts: Counter[str],
    extra_data: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "run_id": inputs.run_id,
        "runbook": inputs.runbook.as_dict(),
        "parameters": inputs.parameters,
        "target": inputs.target_info,
        "started": result.started,
        "ended": result.ended,
        "outcome": result.outcome,
        "detail": result.detail,
        "checks": [{"name": c.get("name"), "status": c.get("status")} for c in result.checks],
        "findings": result.findings,
        "outputs": [
            {"path": rel.removeprefix("10_evidence/"), "sha256": sha256_bytes(data)}
            for rel, data in files
        ],
        "redactions": dict(counts),
        "tool_version": __version__,
        **(extra_data or {}),
    }


def _views(
    kind: str,
    result: RunResult,
    inputs: RunInputs,
    live: Live,
    found: dict[str, Any],
    seq: int,
) -> dict[str, str]:
    what = "session" if kind == "session.sealed" else "run"
    line = (
        f"{what} {result.run_id} {inputs.runbook.id} → {result.outcome} ({result.detail}); "
        f"{result.findings} findings; by {inputs.actor}; ledger #{seq}"
    )
    views = {
        TIMELINE: timeline_line(line),
        CHECKS: _checks_section(result, inputs.runbook, inputs.actor, live, seq),
    }
    metrics = _metrics_section(result, inputs.runbook, found)
    if metrics:
        views[METRICS] = metrics
    return views
