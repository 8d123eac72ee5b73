"""`kfm-runbook`: a thin command line over the library (one library call per command).

Errors from the library are RunbookError subclasses; they are printed as one line
(`error: <what is wrong>: <how to fix>`) and mapped to the documented exit codes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from .errors import EXIT_CHECK_FAILED, InputError, RunbookError

F = TypeVar("F", bound=Callable[..., Any])


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def handle_errors(function: F) -> F:
    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except RunbookError as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder holding incident workspaces. Default: $KFM_INCIDENT_ROOT, else the nearest "
    "incident_cases/ above the current folder, else ./incident_cases.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kfm-runbooks", prog_name="kfm-runbook")
@click.option(
    "--library",
    "libraries",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A runbook library folder (repeatable, top first). Default: $KFM_RUNBOOK_LIBRARY "
    "(DIR:DIR...), else the nearest runbooks/ with TEMPLATE_runbook.ipynb above the current "
    "folder; the packaged library is always stacked last (`kfm-runbook where`).",
)
@click.pass_context
def main(ctx: click.Context, libraries: tuple[Path, ...]) -> None:
    """Executable KFM incident runbooks with sealed, hash-chained evidence.

    Exit codes: 0 ok; 1 a verification check failed / evidence not intact (also: a
    record a command would build on does not verify; an undo changed nothing); 2 bad
    input; 3 the runbook raised; 4 the run was aborted (timeout, kernel died, Ctrl-C,
    SIGTERM, SIGHUP); 5 environment (kernel missing, lock timeout).
    """
    from . import paths
    from ._speedups import defer_slow_optional_imports

    defer_slow_optional_imports()
    ctx.with_resource(paths.library_override(libraries))


# --- incidents -------------------------------------------------------------------------


@main.group()
def incident() -> None:
    """Open, list and inspect incident workspaces."""


@incident.command("new")
@click.option("--title", required=True, help="One-line title of the incident.")
@click.option(
    "--severity",
    required=True,
    type=click.Choice(["Sev0", "Sev1", "Sev2", "Sev3"]),
    help="Seed severity model: Sev0 critical ... Sev3 low.",
)
@click.option("--commander", default=None, help="Incident Commander (IC). Default: unassigned.")
@click.option("--summary", default="", help="Short summary. Default: empty.")
@click.option(
    "--require-signatures",
    is_flag=True,
    default=False,
    help="Every ledger entry of this incident must be signed (recorded in its first entry: "
    "it cannot be switched off); needs a signing key now.",
)
@root_option
@json_option
@handle_errors
def incident_new(
    title: str,
    severity: str,
    commander: str | None,
    summary: str,
    require_signatures: bool,
    root: Path | None,
    as_json: bool,
) -> None:
    """Declare an incident: allocate INC-YYYYMMDD-### and create its workspace."""
    from .workspace import create_incident

    workspace = create_incident(
        title,
        severity,
        commander=commander,
        summary=summary,
        root=root,
        require_signatures=require_signatures,
    )
    if as_json:
        _emit_json({"incident_id": workspace.incident_id, "path": str(workspace.path)})
    else:
        click.echo(workspace.incident_id)
        click.echo(f"  workspace: {workspace.path}", err=True)


@incident.command("list")
@root_option
@json_option
@handle_errors
def incident_list(root: Path | None, as_json: bool) -> None:
    """List incidents under the root, oldest first."""
    from .workspace import list_incidents

    incidents = list_incidents(root)
    if as_json:
        _emit_json(
            [
                {"error": i.message} if isinstance(i, RunbookError) else i.model_dump(mode="json")
                for i in incidents
            ]
        )
        return
    if not incidents:
        click.echo("no incidents", err=True)
    for item in incidents:
        if isinstance(item, RunbookError):
            click.echo(f"⚠ {item.message}")
            continue
        ic = item.roles.IC or "-"
        click.echo(f"{item.id}  {item.severity}  {item.status:<13}  IC {ic:<12}  {item.title}")


@incident.command("show")
@click.argument("incident_id")
@root_option
@json_option
@handle_errors
def incident_show(incident_id: str, root: Path | None, as_json: bool) -> None:
    """Show an incident: record, runs and ledger head."""
    from .report import incident_summary

    summary = incident_summary(incident_id, root)
    if as_json:
        _emit_json(summary)
        return
    record = summary["incident"]
    click.echo(f"{record['id']} — {record['title']}")
    click.echo(f"  severity {record['severity']} · status {record['status']}")
    roles = ", ".join(f"{k} {v}" for k, v in record["roles"].items() if v) or "none assigned"
    click.echo(f"  roles: {roles}")
    for name, stamp in record["timestamps"].items():
        if stamp:
            click.echo(f"  {name:<10} {stamp}")
    click.echo(f"  workspace: {summary['path']}")
    click.echo(f"  runs: {len(summary['runs'])}")
    for run in summary["runs"]:
        click.echo(f"    {run['run_id']}  {run['runbook']:<36} {run['outcome']}")
    click.echo(f"  ledger: {summary['ledger_entries']} entries, head {summary['ledger_head']}")
    for source, reason in summary["integrity_flags"].items():
        click.echo(f"  ⚠ integrity unproven ({source}): {reason}")
    if summary["update_overdue"]:
        click.echo(f"  ⚠ {summary['update_overdue']}")


@incident.command("status")
@click.argument("incident_id")
@click.argument(
    "status", type=click.Choice(["Investigating", "Identified", "Mitigating", "Monitoring"])
)
@click.option("--note", required=True, help="Why (one line, goes to the timeline).")
@click.option("--actor", default=None, help="Who. Default: $KFM_ACTOR, else user@host.")
@root_option
@handle_errors
def incident_status(
    incident_id: str, status: str, note: str, actor: str | None, root: Path | None
) -> None:
    """Move the incident along the status flow (Resolved only via `incident resolve`)."""
    from .lifecycle import set_status

    record, entry = set_status(incident_id, status, note=note, root=root, actor=actor)
    click.echo(f"{record.id}: {record.status} (ledger #{entry['seq']} {entry['hash'][:12]})")


@incident.command("severity")
@click.argument("incident_id")
@click.argument("severity", type=click.Choice(["Sev0", "Sev1", "Sev2", "Sev3"]))
@click.option("--reason", required=True, help="Why (one line, goes to the timeline).")
@click.option("--actor", default=None, help="Who. Default: $KFM_ACTOR, else user@host.")
@root_option
@handle_errors
def incident_severity(
    incident_id: str, severity: str, reason: str, actor: str | None, root: Path | None
) -> None:
    """Change severity; lowering it is refused while integrity is unproven."""
    from .lifecycle import set_severity

    record, entry = set_severity(incident_id, severity, reason=reason, root=root, actor=actor)
    click.echo(f"{record.id}: {record.severity} (ledger #{entry['seq']} {entry['hash'][:12]})")


@incident.command("assign")
@click.argument("incident_id")
@click.argument("role", type=click.Choice(["IC", "Ops", "Scribe", "Comms", "SME"]))
@click.argument("name")
@click.option("--actor", default=None, help="Who. Default: $KFM_ACTOR, else user@host.")
@root_option
@handle_errors
def incident_assign(
    incident_id: str, role: str, name: str, actor: str | None, root: Path | None
) -> None:
    """Assign ROLE to NAME (a handoff records both names)."""
    from .lifecycle import assign_role

    record, entry = assign_role(incident_id, role, name, root=root, actor=actor)
    previous = entry["data"].get("from")
    click.echo(f"{record.id}: {role} {previous + ' → ' if previous else ''}{name}")


@incident.command("note")
@click.argument("incident_id")
@click.option("--impact", default=None, help="Who / what is affected (comms: Impact).")
@click.option("--hypothesis", default=None, help="Current hypothesis (comms), keep it short.")
@click.option("--root-cause", default=None, help="The root cause, once understood.")
@click.option("--actor", default=None, help="Who. Default: $KFM_ACTOR, else user@host.")
@root_option
@handle_errors
def incident_note(
    incident_id: str,
    impact: str | None,
    hypothesis: str | None,
    root_cause: str | None,
    actor: str | None,
    root: Path | None,
) -> None:
    """Record impact, current hypothesis and/or root cause."""
    from .lifecycle import set_notes

    record, entry = set_notes(
        incident_id,
        impact=impact,
        hypothesis=hypothesis,
        root_cause=root_cause,
        root=root,
        actor=actor,
    )
    click.echo(f"{record.id}: recorded (ledger #{entry['seq']} {entry['hash'][:12]})")


@incident.command("resolve")
@click.argument("incident_id")
@click.option("--note", default="", help="Closing note. Default: none.")
@click.option("--actor", default=None, help="Who. Default: $KFM_ACTOR, else user@host.")
@root_option
@json_option
@handle_errors
def incident_resolve(
    incident_id: str, note: str, actor: str | None, root: Path | None, as_json: bool
) -> None:
    """Resolve, only if the Definition of Resolved is proven; else list what is missing."""
    from .errors import DamagedError, IntegrityError
    from .resolve import resolve

    try:
        result = resolve(incident_id, root, actor, note)
    except IntegrityError as exc:
        if isinstance(exc, DamagedError):
            raise
        if as_json:
            _emit_json({"resolved": False, "missing": exc.problems})
        else:
            click.echo(f"✗ {exc.message}:")
            for item in exc.problems:
                click.echo(f"   - {item}")
        sys.exit(exc.exit_code)
    if as_json:
        _emit_json({"resolved": True, "missing": [], "ledger_head": result.ledger_head})
    else:
        click.echo(f"✅ {incident_id} RESOLVED. ledger head: {result.ledger_head}")


@incident.command("waive")
@click.argument("incident_id")
@click.argument("runbook")
@click.option(
    "--reason",
    required=True,
    help="Why the FAIL / HOLD this runbook found may stand at resolve (one line, recorded).",
)
@click.option("--actor", default=None, help="Who. Default: $KFM_ACTOR, else user@host.")
@root_option
@handle_errors
def incident_waive(
    incident_id: str, runbook: str, reason: str, actor: str | None, root: Path | None
) -> None:
    """Waive RUNBOOK's FAIL / HOLD for the resolve gate, with a recorded reason."""
    from .resolve import waive

    entry = waive(incident_id, runbook, reason=reason, root=root, actor=actor)
    click.echo(
        f"{incident_id}: {runbook} waived (ledger #{entry['seq']} {entry['hash'][:12]}); "
        "a later FAIL / HOLD of it needs a new pass or waiver"
    )


@incident.command("fixes")
@click.argument("incident_id")
@click.option(
    "--abandon",
    "abandon_id",
    metavar="ACT",
    default=None,
    help="Record that this PR-first fix will not be merged (deletes its local branch).",
)
@click.option("--reason", default=None, help="Why it is abandoned (required with --abandon).")
@click.option("--actor", default=None, help="Who. Default: $KFM_ACTOR, else user@host.")
@root_option
@json_option
@handle_errors
def incident_fixes(
    incident_id: str,
    abandon_id: str | None,
    reason: str | None,
    actor: str | None,
    root: Path | None,
    as_json: bool,
) -> None:
    """List the incident's PR-first fixes: pending, merged, abandoned, branch deleted."""
    from . import fixes

    if abandon_id is not None:
        if reason is None:
            raise InputError("--abandon needs --reason: say why the fix is not merged")
        entry = fixes.abandon(incident_id, abandon_id, reason=reason, root=root, actor=actor)
        click.echo(f"{incident_id}: {abandon_id} abandoned (ledger #{entry['seq']})")
        return
    found = fixes.list_fixes(incident_id, root)
    if as_json:
        _emit_json([row.as_dict() for row in found])
        return
    if not found:
        click.echo(f"{incident_id}: no PR-first fix was made")
        return
    for row in found:
        when = f" at {row.merged_at}" if row.merged_at else ""
        why = f": {row.reason}" if row.reason else (f" ({row.detail})" if row.detail else "")
        click.echo(
            f"{row.action_id:<20} {row.state.upper():<15} {row.branch} @ {row.commit[:12]}"
            f"{when}{why}"
        )
        click.echo(f"{'':<20} {row.runbook}: {row.title}")


@main.command("update")
@click.argument("incident_id")
@click.option(
    "--audience",
    type=click.Choice(["internal", "public"]),
    default="internal",
    show_default=True,
    help="Public updates omit internal paths, ids and names.",
)
@click.option("--actor", default=None, help="Who. Default: $KFM_ACTOR, else user@host.")
@root_option
@handle_errors
def update_cmd(incident_id: str, audience: str, actor: str | None, root: Path | None) -> None:
    """Write and print a status update from the seed's comms template."""
    from .comms import publish

    update = publish(incident_id, audience, root, actor)
    click.echo(update.text)
    click.echo(f"  written: {update.path}", err=True)


@main.command("report")
@click.argument("incident_id")
@click.option("--actor", default=None, help="Who. Default: $KFM_ACTOR, else user@host.")
@root_option
@handle_errors
def report_cmd(incident_id: str, actor: str | None, root: Path | None) -> None:
    """Write one self-contained HTML report of the incident (90_postmortem/report-*.html)."""
    from .html_report import write_report

    click.echo(str(write_report(incident_id, root, actor)))


@main.command("bundle")
@click.argument("incident_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Archive path. Default: <root>/bundles/<id>-<UTC>.tar.gz.",
)
@click.option(
    "--allowed-signers",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="An allowed_signers file (git's format) to check the signatures against and carry "
    "in the bundle.",
)
@root_option
@handle_errors
def bundle_cmd(
    incident_id: str, output: Path | None, allowed_signers: Path | None, root: Path | None
) -> None:
    """Pack the (verified) workspace into one tar.gz with its manifest."""
    from .bundle import create_bundle

    click.echo(str(create_bundle(incident_id, root, output, allowed_signers=allowed_signers)))


@main.command("postmortem")
@click.argument("incident_id")
@click.option("--actor", default=None, help="Who. Default: $KFM_ACTOR, else user@host.")
@root_option
@handle_errors
def postmortem_cmd(incident_id: str, actor: str | None, root: Path | None) -> None:
    """Draft 90_postmortem/postmortem.md and action_items.md from the evidence."""
    from .postmortem import write

    result = write(incident_id, root, actor)
    click.echo(str(result.postmortem))
    click.echo(str(result.action_items))
    reason = "; ".join(result.required) if result.required else "not required"
    click.echo(f"  required: {reason}", err=True)


# --- runs ------------------------------------------------------------------------------


def runbook_options(function: F) -> F:
    """The options `run` and `open` share: one incident, parameters, apply, target, actor."""
    decorators = [
        click.argument("runbook"),
        click.option(
            "--incident", "incident_id", required=True, help="Incident id, INC-YYYYMMDD-###."
        ),
        click.option(
            "-p",
            "--param",
            "params",
            multiple=True,
            metavar="NAME=VALUE",
            help="Set a parameter (repeatable). Strings stay strings; other types are JSON.",
        ),
        click.option(
            "-f",
            "--params-file",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="YAML file of parameters (overridden by -p).",
        ),
        click.option(
            "--apply",
            is_flag=True,
            default=False,
            help="Allow containment/recovery steps to change the target. Default: read-only.",
        ),
        click.option(
            "--target",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Target YAML describing the system to inspect. Default: the built-in "
            "sandbox ($KFM_SANDBOX_DIR, else .kfm/sandbox in the project, created on first use).",
        ),
        click.option(
            "--actor", default=None, help="Who runs it. Default: $KFM_ACTOR, else user@host."
        ),
        root_option,
        json_option,
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


@main.command("run")
@runbook_options
@click.option(
    "--timeout",
    type=float,
    default=1800.0,
    show_default=True,
    help="Wall-clock limit for the whole run, in seconds; the kernel is stopped then.",
)
@click.option(
    "--executor",
    metavar="ADDRESS",
    default=None,
    help="Hash data on this Dask cluster (tcp://host:port; 'local' for this machine), "
    "overriding the target's executor.",
)
@click.option(
    "--push",
    "push",
    metavar="REMOTE",
    default=None,
    help="With --apply: push each PR-first fix's branch to this git remote (and open a PR "
    "when gh / glab is on PATH).",
)
@handle_errors
def run_cmd(
    runbook: str,
    incident_id: str,
    params: tuple[str, ...],
    params_file: Path | None,
    apply: bool,
    timeout: float,
    executor: str | None,
    push: str | None,
    target: Path | None,
    actor: str | None,
    root: Path | None,
    as_json: bool,
) -> None:
    """Run RUNBOOK (an id like RBK-catalog-checksum-mismatch, or a path) headlessly."""
    from .execute import RunOptions, run_runbook

    result = run_runbook(
        RunOptions(
            runbook=runbook,
            incident_id=incident_id,
            root=root,
            cli_params=list(params),
            params_file=params_file,
            apply=apply,
            timeout=timeout,
            target=target,
            actor=actor,
            push=push,
            executor=executor,
        )
    )
    if as_json:
        _emit_json(result.as_dict())
    else:
        icon = {"passed": "✅", "failed": "❌", "hold": "⏸", "unverified": "❔"}.get(
            result.outcome, "⛔"
        )
        click.echo(f"{icon} {result.outcome.upper()}: {result.detail}")
        for check in result.checks:
            click.echo(
                f"   {check.get('status'):<4}  {check.get('name')}  {check.get('detail', '')}"
            )
        click.echo(f"   findings: {result.findings}")
        click.echo(f"   evidence: {result.notebook} (sha256 {result.notebook_sha256[:16]}…)")
        if result.redactions:
            click.echo(f"   redacted: {result.redactions}")
        if result.attestation:
            click.echo(f"   attestation: {result.attestation}")
        click.echo(f"   ledger head: {result.ledger_head}")
    sys.exit(result.exit_code)


@main.command("open")
@runbook_options
@click.option(
    "--no-lab", is_flag=True, help="Only prepare the notebook; do not start or look for JupyterLab."
)
@handle_errors
def open_cmd(
    runbook: str,
    incident_id: str,
    params: tuple[str, ...],
    params_file: Path | None,
    apply: bool,
    target: Path | None,
    no_lab: bool,
    actor: str | None,
    root: Path | None,
    as_json: bool,
) -> None:
    """Prepare RUNBOOK for stepping through in JupyterLab (loopback, token auth)."""
    from .execute import RunOptions
    from .session import lab_url, open_session, running_server, start_lab
    from .workspace import resolve_root

    session = open_session(
        RunOptions(
            runbook=runbook,
            incident_id=incident_id,
            root=root,
            cli_params=list(params),
            params_file=params_file,
            apply=apply,
            target=target,
            actor=actor,
        )
    )
    url = None
    if not no_lab:
        base = resolve_root(root)
        running = running_server(session.notebook)
        info = running or start_lab(base, base / ".jupyter")
        url = lab_url(info, session.notebook)
        if running is not None:
            from .signing import configured_key

            if configured_key() is not None:  # its kernels have the server's environment
                click.echo(
                    "  note: reusing a running JupyterLab: its kernels sign with the key "
                    "it was started with ($KFM_SIGNING_KEY then), if any",
                    err=True,
                )
    if as_json:
        _emit_json(
            {
                "session_id": session.session_id,
                "notebook": str(session.notebook),
                "url": url,
                "ledger_head": session.ledger_head,
            }
        )
        return
    click.echo(f"session {session.session_id}")
    click.echo(f"  notebook: {session.notebook}")
    if url:
        click.echo(f"  open:     {url}")
    click.echo(f"  when done: kfm-runbook seal {incident_id} {session.notebook}")


@main.command("seal")
@click.argument("incident_id")
@click.argument("notebook", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--actor", default=None, help="Who. Default: $KFM_ACTOR, else user@host.")
@root_option
@json_option
@handle_errors
def seal_cmd(
    incident_id: str, notebook: Path, actor: str | None, root: Path | None, as_json: bool
) -> None:
    """Hash an operator's session NOTEBOOK into the evidence (cells run/skipped/edited)."""
    from .session import seal_session

    result, cells = seal_session(incident_id, notebook, root=root, actor=actor)
    if as_json:
        _emit_json({**result.as_dict(), "cells": cells})
    else:
        summary = {
            k: sum(c["execution"] == k or c["drift"] == k for c in cells)
            for k in ("run", "skipped", "edited", "added", "removed")
        }
        click.echo(f"{result.outcome.upper()}: {result.detail}")
        click.echo("   cells: " + ", ".join(f"{v} {k}" for k, v in summary.items()))
        click.echo(f"   evidence: {result.notebook} (sha256 {result.notebook_sha256[:16]}…)")
        click.echo(f"   ledger head: {result.ledger_head}")
    sys.exit(result.exit_code)


@main.command("verify")
@click.argument("incident_id", required=False)
@click.option(
    "--expect-head",
    default=None,
    help="A ledger head hash recorded elsewhere; fails if the ledger no longer has it.",
)
@click.option(
    "--bundle",
    "bundle_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Verify a bundle archive instead (no repo or root needed).",
)
@click.option(
    "--code",
    "code",
    is_flag=True,
    default=False,
    help="Also name each run whose code differs from the kfm_runbooks installed now "
    "(information: never changes the exit code).",
)
@click.option(
    "--allowed-signers",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="git's allowed_signers file: every signature must be by a key listed there, and "
    "each entry's signer is named. Default: signatures checked intact only (with --bundle: "
    "against the file the bundle carries, if any).",
)
@root_option
@json_option
@handle_errors
def verify_cmd(
    incident_id: str | None,
    expect_head: str | None,
    bundle_path: Path | None,
    code: bool,
    allowed_signers: Path | None,
    root: Path | None,
    as_json: bool,
) -> None:
    """Re-hash the evidence, check the ledger chain; exit 0 only if all holds."""
    from .verify import verify_workspace

    if bundle_path is not None:
        _verify_bundle(bundle_path, as_json, allowed_signers)
        return
    if incident_id is None:
        raise click.UsageError("give an INCIDENT_ID or --bundle FILE")
    report = verify_workspace(
        incident_id, root, expect_head, record=True, allowed_signers=allowed_signers
    )
    code_report = _code_report(incident_id, root) if code else None
    if as_json:
        extra = {"code": code_report and code_report.as_dict()} if code else {}
        _emit_json({**report.as_dict(), **extra})
    else:
        verdict = "INTACT" if report.ok else "NOT INTACT"
        click.echo(
            f"{'✅' if report.ok else '❌'} {incident_id}: {verdict} — {report.files_checked} "
            f"files re-hashed, {report.ledger_entries} ledger entries"
        )
        for problem in report.problems:
            click.echo(f"   ✗ {problem}")
        for warning in report.warnings:
            click.echo(f"   ! {warning}")
        _echo_signatures(report.signatures)
        click.echo(f"   ledger head: {report.ledger_head}")
        if code_report is not None:
            from .code_check import lines

            for line in lines(code_report):
                click.echo(line)
    sys.exit(0 if report.ok else EXIT_CHECK_FAILED)


def _code_report(incident_id: str, root: Path | None) -> Any:
    """`verify --code`: the code each run recorded against the code installed now (None on
    a damaged ledger, which verify has already named)."""
    from .code_check import code_report
    from .errors import DamagedError

    try:
        return code_report(incident_id, root)
    except DamagedError:
        return None


def _echo_signatures(signatures: dict[str, Any] | None) -> None:
    """One line: how many entries are signed and by whom (per entry in --json)."""
    if signatures is None:
        return
    checked = signatures.get("checked_against")
    how = f"checked against {checked}" if checked else "intact, signers not checked"
    required = "; required" if signatures.get("required") else ""
    click.echo(f"   signatures: {signatures['summary']} ({how}{required})")


def _verify_bundle(path: Path, as_json: bool, allowed_signers: Path | None = None) -> None:
    from .bundle import verify_bundle

    report = verify_bundle(path, allowed_signers=allowed_signers)
    if as_json:
        _emit_json({k: v for k, v in report.__dict__.items() if k != "workspace"})
    else:
        verdict = "INTACT" if report.ok else "NOT INTACT"
        click.echo(
            f"{'✅' if report.ok else '❌'} bundle {path.name} ({report.incident_id}): "
            f"{verdict} — {report.files_checked} files checked"
        )
        for problem in report.problems:
            click.echo(f"   ✗ {problem}")
        for warning in report.warnings:
            click.echo(f"   ! {warning}")
        if report.workspace is not None:
            _echo_signatures(report.workspace.signatures)
        click.echo(f"   ledger head: {report.ledger_head}")
    sys.exit(0 if report.ok else EXIT_CHECK_FAILED)


@main.command("rollback")
@click.argument("incident_id")
@click.argument("action_id")
@click.option(
    "--apply",
    is_flag=True,
    default=False,
    help="Really undo the action. Default: show what would be undone.",
)
@click.option("--actor", default=None, help="Who runs it. Default: $KFM_ACTOR, else user@host.")
@root_option
@json_option
@handle_errors
def rollback_cmd(
    incident_id: str,
    action_id: str,
    apply: bool,
    actor: str | None,
    root: Path | None,
    as_json: bool,
) -> None:
    """Undo an applied action (ACT-...) recorded in the incident's ledger."""
    from .rollback import rollback_action

    result = rollback_action(incident_id, action_id, apply=apply, root=root, actor=actor)
    if as_json:
        _emit_json(result.__dict__)
    elif not result.applied:
        click.echo(
            f"🔒 would undo {action_id} ({result.title}) with {result.op}; re-run with --apply"
        )
    else:
        click.echo(f"↩ undid {action_id} ({result.title}): {result.result}")
        click.echo(f"   ledger head: {result.ledger_head}")


# --- library, sandbox, kernel ----------------------------------------------------------


@main.command("sweep")
@click.option("--incident", "incident_id", required=True, help="The incident the runs belong to.")
@click.option(
    "--target",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Target YAML (default: the built-in sandbox).",
)
@click.option("--domain", "domains", multiple=True, help="Only this domain (repeatable).")
@click.option(
    "--signal", "signals", multiple=True, help="Only runbooks listing this signal (repeatable)."
)
@click.option("--jobs", type=int, default=None, help="Runs at a time. Default: the cores.")
@root_option
@json_option
@handle_errors
def sweep_cmd(
    incident_id: str,
    target: Path | None,
    domains: tuple[str, ...],
    signals: tuple[str, ...],
    jobs: int | None,
    root: Path | None,
    as_json: bool,
) -> None:
    """Run the matching runbooks read-only, N at a time, each sealed as a normal run."""
    import signal as signals_mod

    from .execute import default_target
    from .sweep import sweep, worst_exit

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signals_mod.Signals(signum).name)

    signals_mod.signal(signals_mod.SIGTERM, stop)
    rows = sweep(
        incident_id,
        target=target if target is not None else default_target(),
        domains=domains,
        signals=signals,
        jobs=jobs,
        root=root,
        progress=lambda line: click.echo(line, err=True),
    )
    if as_json:
        _emit_json({"runs": [r.as_dict() for r in rows], "exit_code": worst_exit(rows)})
    else:
        click.echo(f"{'runbook':<44} {'outcome':<11} {'coverage':<16} failing checks")
        for row in rows:
            failing = ", ".join(row.failing) or ("-" if row.outcome == "passed" else row.detail)
            click.echo(f"{row.runbook:<44} {row.outcome:<11} {row.coverage or '-':<16} {failing}")
    sys.exit(worst_exit(rows))


@main.command("list")
@json_option
@handle_errors
def list_cmd(as_json: bool) -> None:
    """List the runbook library."""
    from . import runbook as runbook_mod

    rows = []
    for path in runbook_mod.discover():
        book = runbook_mod.load(path)
        rows.append(
            {"id": book.id, "version": book.version, "title": book.title, "path": str(path)}
        )
    if as_json:
        _emit_json(rows)
        return
    for row in rows:
        click.echo(f"{row['id']:<44} v{row['version']:<7} {row['title']}")


@main.group()
def sandbox() -> None:
    """The built-in KFM-like sandbox with seeded faults."""


@sandbox.command("create")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--clean", is_flag=True, help="Build the variant without faults.")
@click.option(
    "--git",
    "git",
    is_flag=True,
    help="Make it a git repository (branch main, history) with a bare origin DIRECTORY.origin.git"
    " beside it: PR-first fixes become branches there.",
)
@handle_errors
def sandbox_create(directory: Path, clean: bool, git: bool) -> None:
    """Build a deterministic sandbox in DIRECTORY; prints its target.yaml path."""
    from .sandbox import create_sandbox

    target = create_sandbox(directory, clean=clean, git=git)
    click.echo(str(target))
    click.echo(f"  faults: see {target.parent / 'SANDBOX.md'}", err=True)


def _sandbox_dir(directory: Path | None) -> Path:
    from .sandbox import default_sandbox_dir, ensure_sandbox

    folder = directory or default_sandbox_dir()
    if directory is None:
        ensure_sandbox(folder)
    return folder


sandbox_dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Sandbox folder. Default: $KFM_SANDBOX_DIR, else .kfm/sandbox in the project "
    "(created if absent).",
)


@sandbox.command("up")
@sandbox_dir_option
@json_option
@handle_errors
def sandbox_up(directory: Path | None, as_json: bool) -> None:
    """Start the live side on loopback: the sandbox API and PostgreSQL + PostGIS."""
    from .sandbox.services.supervisor import up

    state = up(_sandbox_dir(directory))
    if as_json:
        _emit_json(state)
        return
    click.echo(f"API        {state['api']['url']}  (pid {state['api']['pid']})")
    click.echo(f"PostgreSQL 127.0.0.1:{state['postgres']['port']}  ({state['postgres']['dsn']})")
    click.echo("stop with: kfm-runbook sandbox down", err=True)


@sandbox.command("down")
@sandbox_dir_option
@handle_errors
def sandbox_down(directory: Path | None) -> None:
    """Stop everything `sandbox up` started (nothing is left running)."""
    from .sandbox.services.supervisor import down

    stopped = down(_sandbox_dir(directory))
    click.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@sandbox.command("status")
@sandbox_dir_option
@handle_errors
def sandbox_status(directory: Path | None) -> None:
    """Show whether the live side is up, its addresses and the active faults."""
    from .sandbox.services.supervisor import status

    _emit_json(status(_sandbox_dir(directory)))


@sandbox.command("fault")
@click.argument("name")
@click.option("--on/--off", "on", default=True, help="Switch the fault on (default) or off.")
@sandbox_dir_option
@handle_errors
def sandbox_fault(name: str, on: bool, directory: Path | None) -> None:
    """Switch a live fault NAME on or off (see `kfm-runbook sandbox faults`)."""
    from .sandbox.services.supervisor import fault

    now = fault(_sandbox_dir(directory), name, on)
    click.echo("active faults: " + (", ".join(sorted(now)) or "none"))


@sandbox.command("faults")
def sandbox_faults() -> None:
    """List the live faults and what each does."""
    from .sandbox.services.faults import FAULTS

    for name, what in sorted(FAULTS.items()):
        click.echo(f"{name:<24} {what}")


@main.group()
def kernel() -> None:
    """The project's Jupyter kernel (kfm-runbook)."""


@kernel.command("install")
@click.option(
    "--sys-prefix",
    "scope",
    flag_value="sys-prefix",
    default=True,
    help="Into this environment's prefix (sys.prefix/share/jupyter), the default.",
)
@click.option("--user", "scope", flag_value="user", help="Into the user's Jupyter folder.")
@click.option(
    "--prefix",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Into PREFIX/share/jupyter/kernels instead.",
)
@handle_errors
def kernel_install(scope: str, prefix: Path | None) -> None:
    """Install the packaged kfm-runbook kernelspec, pinned to this interpreter."""
    from .errors import InputError
    from .kernel import install

    if prefix is not None and scope == "user":
        raise InputError("choose one of --sys-prefix, --user, --prefix PREFIX")
    click.echo(f"installed kernel at {install('prefix' if prefix else scope, prefix)}")


@kernel.command("check")
@handle_errors
def kernel_check() -> None:
    """Show the installed kernel spec, or fail with how to install it."""
    from .kernel import spec_info

    _emit_json(spec_info())


@main.command("schema")
@click.option(
    "--check",
    "mode",
    flag_value="check",
    default=True,
    help="Fail if a schema file is stale (default).",
)
@click.option("--write", "mode", flag_value="write", help="Regenerate the schema files.")
@handle_errors
def schema_cmd(mode: str) -> None:
    """JSON Schemas of incident.yaml and runbook front matter, generated from the models."""
    from ._fs import replace_atomic
    from .incident import SCHEMA_PATH as INCIDENT_SCHEMA
    from .incident import json_schema as incident_schema
    from .standard import SCHEMA_PATH as RUNBOOK_SCHEMA
    from .standard import json_schema as runbook_schema

    stale = False
    for path, text in ((INCIDENT_SCHEMA, incident_schema()), (RUNBOOK_SCHEMA, runbook_schema())):
        if mode == "write":
            replace_atomic(path, text.encode())
            click.echo(f"wrote {path}")
        elif not path.is_file() or path.read_text() != text:
            click.echo(f"error: {path} is stale: run `kfm-runbook schema --write`", err=True)
            stale = True
        else:
            click.echo(f"{path.name} is up to date")
    if stale:
        sys.exit(EXIT_CHECK_FAILED)


# --- the runbook standard --------------------------------------------------------------


@main.command("lint")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--strict", is_flag=True, help="Treat warnings (TODO markers, ...) as errors.")
@json_option
@handle_errors
def lint_cmd(paths: tuple[Path, ...], strict: bool, as_json: bool) -> None:
    """Check runbooks against the standard (default: the whole library). Exit 1 on errors."""
    from .lint import lint_paths
    from .runbook import runbooks_dir

    findings = lint_paths(list(paths) or [runbooks_dir()])
    errors = [f for f in findings if f.severity == "error" or strict]
    if as_json:
        _emit_json(
            {
                "findings": [f.as_dict() for f in findings],
                "errors": len(errors),
                "warnings": len(findings) - len(errors),
            }
        )
    else:
        for finding in findings:
            click.echo(finding.format())
        click.echo(f"{len(errors)} error(s), {len(findings) - len(errors)} warning(s)", err=True)
    sys.exit(EXIT_CHECK_FAILED if errors else 0)


@main.command("new")
@click.argument("domain")
@click.argument("slug")
@click.option("--title", required=True, help="One-line title, e.g. 'API outage / 5xx spike'.")
@handle_errors
def new_cmd(domain: str, slug: str, title: str) -> None:
    """Create runbooks/DOMAIN/RBK-DOMAIN-SLUG.ipynb from the TEMPLATE (lint-clean, with TODOs)."""
    from .library import new_runbook

    path = new_runbook(domain, slug, title)
    click.echo(str(path))
    click.echo(
        "  next: fill the TODOs, `kfm-runbook lint`, add a golden case in "
        "tests/golden/cases/<domain>.yaml, `kfm-runbook golden RBK-...`, `kfm-runbook index`",
        err=True,
    )


@main.command("index")
@click.option("--check", is_flag=True, help="Fail (exit 1) if runbooks/README.md is stale.")
@handle_errors
def index_cmd(check: bool) -> None:
    """Generate runbooks/README.md (a table per domain) from the runbooks' metadata."""
    from . import paths
    from ._fs import replace_atomic
    from .library import INDEX_NAME, render_index
    from .runbook import runbooks_dir

    library = runbooks_dir() if check else paths.writable_library()
    path = library / INDEX_NAME
    text = render_index(library)
    if check:
        if not path.is_file() or path.read_text() != text:
            click.echo(f"error: {path} is stale: run `kfm-runbook index`", err=True)
            sys.exit(EXIT_CHECK_FAILED)
        click.echo(f"{path.name} is up to date")
        return
    replace_atomic(path, text.encode())
    click.echo(f"wrote {path}")


@main.command("show")
@click.argument("runbook")
@handle_errors
def show_cmd(runbook: str) -> None:
    """Print RUNBOOK as readable text: front matter, sections, cells with ids and tags."""
    from .library import show

    click.echo(show(runbook))


@main.command("golden")
@click.option("--check", is_flag=True, help="Only report stale or missing goldens (exit 1).")
@click.option(
    "--replay",
    is_flag=True,
    help="Re-run each golden with nbval in a rebuilt folder; exit 1 on any difference "
    "(needs pytest + nbval: the [golden] extra).",
)
@click.argument("runbooks", nargs=-1)
@handle_errors
def golden_cmd(check: bool, replay: bool, runbooks: tuple[str, ...]) -> None:
    """Regenerate the nbval golden notebooks (tests/golden) for RUNBOOKS (default: all)."""
    from .golden import load_cases, make, stale_reason, uncovered

    cases = [c for c in load_cases() if not runbooks or c.runbook in runbooks]
    if replay:
        _golden_replay(cases)
        return
    stale = [] if not check else [r for r in uncovered(cases) if not runbooks or r in runbooks]
    for runbook_id in stale:
        click.echo(f"✗ {runbook_id} has no golden case in tests/golden/cases/: add one")
    for case in cases:
        reason = stale_reason(case)
        if check:
            if reason:
                stale.append(reason)
                click.echo(f"✗ {reason}")
            continue
        click.echo(f"… {case.runbook} [{case.case}]", err=True)
        click.echo(f"wrote {make(case)}")
    if stale:
        sys.exit(EXIT_CHECK_FAILED)


def _golden_replay(cases: list[Any]) -> None:
    import tempfile

    from .golden import replay

    failed = 0
    for case in cases:
        click.echo(f"… {case.runbook} [{case.case}]", err=True)
        with tempfile.TemporaryDirectory(prefix="kfm-replay-") as scratch:
            problem = replay(case, Path(scratch))
        click.echo(f"{'✗' if problem else '✓'} {case.runbook} [{case.case}]")
        if problem:
            failed += 1
            click.echo(problem)
    click.echo(f"{len(cases) - failed} passed, {failed} failed", err=True)
    if failed:
        sys.exit(EXIT_CHECK_FAILED)


# --- where things are, a team's repository ---------------------------------------------


@main.command("where")
@root_option
@json_option
@handle_errors
def where_cmd(root: Path | None, as_json: bool) -> None:
    """Print where the library stack, incident root, sandbox, kernel and goldens are, and why."""
    from .where import report

    found = report(root)
    if as_json:
        _emit_json(found)
        return
    for name, value in found.items():
        if isinstance(value, list):
            click.echo(f"{name}:")
            for index, item in enumerate(value, 1):
                click.echo(f"  {index}. {item['path']}\n     ({item['reason']})")
        else:
            click.echo(f"{name}: {value['path']}\n  ({value['reason']})")


@main.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--domain",
    "domains",
    multiple=True,
    help="A runbook domain folder to create (repeatable). Default: every domain.",
)
@click.option(
    "--no-git",
    is_flag=True,
    help="Skip `git init` and nbdime's git drivers. Default: both (git init only outside a "
    "work tree; nbdime when installed).",
)
@handle_errors
def init_cmd(directory: Path, domains: tuple[str, ...], no_git: bool) -> None:
    """Create a team's runbook repository in DIRECTORY (new or empty)."""
    from .repo import init_repository

    created = init_repository(directory, list(domains) or None, git=not no_git)
    for path in created.files:
        click.echo(str(path))
    for note in created.notes:
        click.echo(f"  {note}", err=True)


# --- signing: `--sign-key` on every command that writes the ledger ---------------------------

LEDGER_WRITERS = (
    ("incident", "new"),
    ("incident", "status"),
    ("incident", "severity"),
    ("incident", "assign"),
    ("incident", "note"),
    ("incident", "resolve"),
    ("incident", "waive"),
    ("update",),
    ("report",),
    ("bundle",),
    ("postmortem",),
    ("run",),
    ("open",),
    ("seal",),
    ("verify",),
    ("rollback",),
)


def _use_sign_key(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Export the key's path as $KFM_SIGNING_KEY: the worker, the kernel and JupyterLab
    inherit it (the key material itself goes nowhere). Without the option, git's
    user.signingkey (gpg.format ssh) is resolved here once and exported the same way (empty:
    unsigned)."""
    import os

    from .signing import ENV, SigningKeyError, check_key, git_signing_key

    if value is None:
        if ENV not in os.environ:  # resolved once: children never ask git again
            os.environ[ENV] = git_signing_key() or ""
        return

    key = value if value.startswith("key::") else str(Path(value).expanduser().absolute())
    try:
        check_key(key)
    except SigningKeyError as exc:
        raise click.BadParameter(exc.message, ctx=ctx, param=param) from exc
    os.environ[ENV] = key


def _sign_key_option() -> click.Option:
    return click.Option(
        ["--sign-key"],
        metavar="KEY",
        default=None,
        expose_value=False,
        is_eager=True,
        callback=_use_sign_key,
        help="Sign the ledger entries this writes with this SSH private key (ssh-keygen -Y "
        "sign). Default: $KFM_SIGNING_KEY, else git's user.signingkey when gpg.format is ssh, "
        "else unsigned.",
    )


def _attach_sign_key() -> None:
    for path in LEDGER_WRITERS:
        command: click.Command = main
        for name in path:
            assert isinstance(command, click.Group)
            command = command.commands[name]
        command.params.append(_sign_key_option())


_attach_sign_key()
