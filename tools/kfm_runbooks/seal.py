"""Turn an execution into sealed evidence.

For every run, whatever its outcome: the executed notebook is marked (outcome, run
metadata, an abort banner when the kernel was stopped), scrubbed of secrets, published
atomically into `10_evidence/runs/`, hashed into hashes.sha256 together with a copy of
the target file and a PROV-JSON record, chained into the ledger, and summarised into the
timeline, 30_verification/checks.md and metrics.md - all under the workspace lock.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__, manifest, provenance, redact, scraps
from ._fs import create_new, sha256_bytes
from ._time import iso
from .errors import (
    EXIT_CHECK_FAILED,
    EXIT_OK,
    EXIT_RUN_ABORTED,
    EXIT_RUNBOOK_ERROR,
)
from .layout import Workspace
from .runbook import Runbook
from .target import Target

EXIT_CODES = {
    "passed": EXIT_OK,
    "failed": EXIT_CHECK_FAILED,
    "hold": EXIT_CHECK_FAILED,
    "unverified": EXIT_CHECK_FAILED,
    "errored": EXIT_RUNBOOK_ERROR,
    "timeout": EXIT_RUN_ABORTED,
    "kernel-died": EXIT_RUN_ABORTED,
    "interrupted": EXIT_RUN_ABORTED,
}
ABORTED = ("timeout", "kernel-died", "interrupted")


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def outcome_from(status: dict[str, Any], found: dict[str, Any]) -> tuple[str, str]:
    """(outcome, human detail) from the worker status and the notebook's scraps."""
    kind = status.get("status")
    if kind == "completed":
        checks = [v for k, v in found.items() if k.startswith("kfm.check.")]
        if not checks:
            return "unverified", "the runbook recorded no verification check (fail closed)"
        failed = [c["name"] for c in checks if c.get("status") == "FAIL"]
        held = [c["name"] for c in checks if c.get("status") == "HOLD"]
        if failed:
            return "failed", f"verification failed: {', '.join(failed)}"
        if held:
            return "hold", f"verification on hold (unverifiable): {', '.join(held)}"
        return "passed", f"all {len(checks)} verification checks passed"
    if kind == "cell-error":
        return "errored", (
            f"cell {status.get('cell_index')} raised {status.get('ename')}: {status.get('evalue')}"
        )
    if kind == "timeout":
        return "timeout", status.get("detail") or "wall-clock limit reached; kernel stopped"
    if kind == "kernel-died":
        return "kernel-died", status.get("detail") or "the kernel died during the run"
    if kind == "interrupted":
        return "interrupted", "interrupted by the operator; kernel stopped"
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


def _fallback_notebook(runbook: Runbook, parameters: dict[str, Any]) -> Any:
    """The parameterized runbook, for a run whose kernel never saved anything."""
    from .kernel import KERNEL_NAME

    return runbook.parameterized(parameters, KERNEL_NAME)


def _checks_section(result: RunResult, runbook: Runbook, actor: str, found: dict[str, Any]) -> str:
    lines = [
        f"\n## {result.run_id} · {runbook.id} v{runbook.version} · **{result.outcome}**\n",
        f"- started {result.started}, ended {result.ended} (UTC), by {actor}",
        f"- notebook `{result.notebook}` sha256 `{result.notebook_sha256}`",
        f"- ledger entry #{result.ledger_seq} `{result.ledger_head}`",
        f"- {result.detail}",
        "",
    ]
    if result.checks:
        lines += ["| status | check | detail |", "|---|---|---|"]
        for check in result.checks:
            detail = str(check.get("detail", "")).replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {check.get('status')} | {check.get('name')} | {detail} |")
        lines.append("")
    findings = [v for k, v in found.items() if k.startswith("kfm.finding.")]
    if findings:
        by_code = Counter((f.get("severity"), f.get("code")) for f in findings)
        lines += ["| findings | severity | code |", "|---:|---|---|"]
        for (severity, code), count in sorted(by_code.items()):
            lines.append(f"| {count} | {severity} | {code} |")
        lines.append("")
    return "\n".join(lines)


def _metrics_section(result: RunResult, runbook: Runbook, found: dict[str, Any]) -> str:
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
        lines.append(f"| {name} | {json.dumps(value.get('value'))} | {value.get('unit', '')} |")
    return "\n".join(lines) + "\n"


def _update_integrity_flag(
    workspace: Workspace, runbook_id: str, outcome: str, detail: str, actor: str
) -> None:
    """HOLD means integrity/provenance could not be proven: flag it; a pass clears it."""
    from .lifecycle import flag_locked

    if outcome == "hold":
        flag_locked(workspace, f"run:{runbook_id}", detail, actor)
    elif outcome == "passed":
        flag_locked(workspace, f"run:{runbook_id}", None, actor)


def _read_partial(partial: Path) -> tuple[Any, bytes | None]:
    """(notebook or None, raw bytes if they could not be parsed: torn by a kill mid-save)."""
    import nbformat

    if not partial.exists():
        return None, None
    raw = partial.read_bytes()
    try:
        return nbformat.reads(raw.decode("utf-8"), as_version=4), None
    except Exception:  # any parse failure: keep the bytes as evidence, fall back below
        return None, raw


def seal_run(
    workspace: Workspace,
    *,
    run_id: str,
    runbook: Runbook,
    partial: Path,
    status: dict[str, Any],
    parameters: dict[str, Any],
    target: Target,
    actor: str,
    started: dt.datetime,
    ended: dt.datetime,
) -> RunResult:
    """Seal a headless run, whatever happened to it (the worker's status says what)."""
    nb, torn = _read_partial(partial)
    if nb is None:
        nb = _fallback_notebook(runbook, parameters)
        if status.get("status") == "completed":
            status = {
                "status": "internal-error",
                "ename": "MissingOutput",
                "evalue": "the executed notebook was not saved",
            }
    found = scraps.read(nb)
    outcome, detail = outcome_from(status, found)
    if outcome in ABORTED or (outcome == "errored" and status.get("status") != "cell-error"):
        _banner(nb, outcome, detail)
    extra = {f"runs/{run_id}.torn-partial.bin": torn} if torn is not None else {}
    result = seal_notebook(
        workspace,
        kind="run",
        run_id=run_id,
        runbook=runbook,
        nb=nb,
        outcome=outcome,
        detail=detail,
        parameters=parameters,
        target=target,
        actor=actor,
        started=started,
        ended=ended,
        extra_files=extra,
        notebook_name=f"runs/{run_id}.{runbook.id}.ipynb",
    )
    partial.unlink(missing_ok=True)
    return result


def seal_notebook(
    workspace: Workspace,
    *,
    kind: str,
    run_id: str,
    runbook: Runbook,
    nb: Any,
    outcome: str,
    detail: str,
    parameters: dict[str, Any],
    target: Target,
    actor: str,
    started: dt.datetime,
    ended: dt.datetime,
    notebook_name: str,
    extra_files: dict[str, bytes] | None = None,
    extra_data: dict[str, Any] | None = None,
) -> RunResult:
    """Publish an executed notebook as evidence: marked, scrubbed, hashed, chained, summarised.

    Writes the notebook, a copy of the target and a PROV-JSON record into 10_evidence/runs/,
    appends them to hashes.sha256, one ledger entry of `kind` ("run" or "session.sealed"),
    a timeline line, a checks.md / metrics.md section, and updates the integrity flag.
    """
    import nbformat

    # The door into evidence: everything below is derived from these, scrubbed whole
    # (the notebook as joined strings, before nbformat splits them into lines).
    counts: Counter[str] = Counter()
    nb = redact.clean(nb, counts)
    detail, parameters = redact.clean(detail), redact.clean(parameters)
    extra_data = redact.clean(extra_data or {})
    extra_files = {rel: redact.clean(data) for rel, data in (extra_files or {}).items()}
    found = scraps.read(nb)
    target_bytes = target.path.read_bytes()
    runbook_info = {
        "id": runbook.id,
        "version": runbook.version,
        "sha256": runbook.sha256,
        "path": str(runbook.path),
    }
    target_info = {
        "name": target.name,
        "path": str(target.path),
        "sha256": sha256_bytes(target_bytes),
    }
    run_meta = {
        "run_id": run_id,
        "incident_id": workspace.incident_id,
        "runbook": runbook_info,
        "target": target_info,
        "actor": actor,
        "started": iso(started),
        "ended": iso(ended),
        "outcome": outcome,
        "detail": detail,
        "tool_version": __version__,
        **extra_data,
    }
    nb.metadata["kfm_run"] = redact.clean(run_meta, counts)
    notebook_bytes = (
        json.dumps(json.loads(nbformat.writes(nb)), indent=1, sort_keys=True, ensure_ascii=False)
        + "\n"
    ).encode()
    target_rel = f"runs/{run_id}.target.yaml"
    prov_rel = f"runs/{run_id}.prov.json"
    if kind != "run":
        stamp = f"{ended:%Y%m%dT%H%M%S}"
        target_rel = f"runs/{run_id}.{stamp}.target.yaml"
        prov_rel = f"runs/{run_id}.{stamp}.prov.json"
    nb_sha = sha256_bytes(notebook_bytes)
    prov_bytes = redact.clean(
        provenance.run_document(
            incident_id=workspace.incident_id,
            run_id=run_id,
            runbook_id=runbook.id,
            runbook_sha256=runbook.sha256,
            runbook_version=runbook.version,
            actor=actor,
            started=started,
            ended=ended,
            outcome=outcome,
            parameters=parameters,
            target_name=target.name,
            target_sha256=sha256_bytes(target_bytes),
            notebook_name=notebook_name,
            notebook_sha256=nb_sha,
            tool_version=__version__,
        ).encode()
    )
    checks = [v for k, v in found.items() if k.startswith("kfm.check.")]
    findings = [v for k, v in found.items() if k.startswith("kfm.finding.")]
    target_copy = redact.clean(target_bytes)  # a DSN password stays with the target
    files = [(notebook_name, notebook_bytes), (target_rel, target_copy), (prov_rel, prov_bytes)]
    files += list(extra_files.items())
    with workspace.locked():
        outputs = []
        for rel, data in files:
            create_new(workspace.evidence / rel, data)
            outputs.append({"path": rel, "sha256": sha256_bytes(data)})
        manifest.append(workspace.manifest, [(o["sha256"], o["path"]) for o in outputs])
        entry = workspace.record(
            kind,
            {
                "run_id": run_id,
                "runbook": runbook_info,
                "parameters": parameters,
                "target": target_info,
                "started": iso(started),
                "ended": iso(ended),
                "outcome": outcome,
                "detail": detail,
                "checks": [{"name": c.get("name"), "status": c.get("status")} for c in checks],
                "findings": len(findings),
                "outputs": outputs,
                "redactions": dict(counts),
                "tool_version": __version__,
                **(extra_data or {}),
            },
            actor,
        )
        result = RunResult(
            run_id=run_id,
            incident_id=workspace.incident_id,
            runbook_id=runbook.id,
            outcome=outcome,
            exit_code=EXIT_CODES[outcome],
            started=iso(started),
            ended=iso(ended),
            notebook=f"10_evidence/{notebook_name}",
            notebook_sha256=nb_sha,
            ledger_seq=int(entry["seq"]),
            ledger_head=str(entry["hash"]),
            checks=checks,
            findings=len(findings),
            detail=detail,
            redactions=dict(counts),
        )
        what = "session" if kind == "session.sealed" else "run"
        workspace.append_timeline(
            f"{what} {run_id} {runbook.id} → {outcome} ({detail}); {len(findings)} findings; "
            f"by {actor}; ledger #{entry['seq']} {str(entry['hash'])[:12]}"
        )
        workspace.append_record(
            workspace.verification / "checks.md", _checks_section(result, runbook, actor, found)
        )
        metrics = _metrics_section(result, runbook, found)
        if metrics:
            workspace.append_record(workspace.verification / "metrics.md", metrics)
        _update_integrity_flag(workspace, runbook.id, outcome, detail, actor)
    return result
