"""The in-kernel helper every runbook imports: findings, checks, evidence, gated actions.

    import kfm_runbooks.record as rb
    run = rb.start(incident_id, workspace, target, apply)
    run.finding("CAT_ASSET_DIGEST_MISMATCH", "items/x.json", message="...")
    run.check("asset-digests", "FAIL", "1 asset differs from its catalog checksum",
              examined=27, in_scope=27, unit="assets")   # PASS needs examined == in_scope > 0
    run.action("Quarantine item x", command="...", precheck=..., change=..., postcheck=...,
               rollback="...", undo={"op": "catalog.restore_item", "args": {...}})
    run.rollback_plan()   # the rollback cell: this run's applied actions, newest first

Findings, metrics and checks are written as scrapbook scraps (readable with
`scrapbook.read_notebook`); applied actions are appended to 20_actions/commands.md,
20_actions/rollback.md and the ledger as they happen, so a headless run and an operator
stepping through cells in JupyterLab leave the same evidence. `action` is the apply
gate: it changes something only when the *runner* started this run with --apply, as the
ledger entry it wrote before the kernel started says (`run.started`, `session.opened`);
the notebook's `apply` must agree with it, and reassigning it changes nothing. In a
JupyterLab session every executed cell is recorded in the ledger too (`cell`), so `seal`
knows what ran from the ledger, not from the outputs stored in the notebook.

Imported in every kernel: standard library, PyYAML and this package's light modules only
(no scrapbook, papermill, pandas or pydantic).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import codeprov, connections, digest_memo, ledger, redact, scraps
from ._fs import sha256_bytes
from ._time import now_iso
from .coverage import Coverage, row_status
from .coverage import judge as judge_coverage
from .errors import InputError, WorkspaceError
from .evidence import publish_locked
from .history import History
from .ids import check_incident_id
from .layout import COMMANDS, ROLLBACK, TIMELINE, Workspace, default_actor, timeline_line
from .target import Target, load_target
from .vocab import CheckStatus, LedgerKind

STATUSES = tuple(CheckStatus)
EVIDENCE_KINDS = ("logs", "queries", "screenshots")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}")
_ICONS = {"PASS": "✅", "FAIL": "❌", "HOLD": "⏸", "blocking": "❌", "hold": "⏸", "info": "ℹ"}


def _publish(name: str, value: Any) -> None:
    """Emit one scrap; outside a kernel (plain python), just keep going."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is always in the kernel
        return
    if get_ipython() is None:
        return
    data, metadata = scraps.bundle(name, value)
    display(data, metadata=metadata, raw=True)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@dataclass
class ActionResult:
    action_id: str
    applied: bool
    ok: bool
    precheck: Any = None
    result: Any = None
    postcheck: Any = None


@dataclass(frozen=True)
class Recorder:
    """One runbook execution's recorder; create it with `start(...)`.

    Frozen: the mode (`apply`) is what the runner recorded, and a cell cannot reassign it.
    """

    incident_id: str
    workspace: Workspace
    target: Target
    apply: bool
    run_id: str
    runbook_id: str
    actor: str
    findings: list[dict[str, Any]] = field(default_factory=list)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
    code: dict[str, Any] = field(default_factory=dict)  # the code provenance last recorded
    _modules: codeprov.ModuleDigests = field(default_factory=codeprov.ModuleDigests, repr=False)

    # -- findings, metrics, checks ----------------------------------------------------

    def finding(
        self,
        code: str,
        subject: str,
        *,
        severity: str = "blocking",
        field: str = "/",
        message: str = "",
        **data: Any,
    ) -> None:
        """Record one fact triage established (stable code, what it is about, how bad)."""
        entry = {
            "code": code,
            "subject": subject,
            "field": field,
            "severity": severity,
            "message": message,
            **_jsonable(data),
        }
        self.findings.append(entry)
        _publish(f"kfm.finding.{len(self.findings):04d}", entry)
        self._ledger("finding", entry)
        icon = _ICONS.get(severity, "•")
        print(f"{icon} {code:<34} {subject}{field if field != '/' else ''}  {message}".rstrip())

    def record_findings(self, findings: Any) -> int:
        """Record every `checks.Finding` of an iterable; returns how many."""
        count = 0
        for item in findings:
            self.finding(
                item.code,
                item.subject,
                severity=item.severity,
                field=item.field,
                message=item.message,
            )
            count += 1
        return count

    def metric(self, name: str, value: Any, unit: str = "") -> None:
        self.metrics[name] = {"value": _jsonable(value), "unit": unit}
        _publish(f"kfm.metric.{name}", self.metrics[name])

    def check(
        self,
        name: str,
        status: str | bool,
        detail: str = "",
        *,
        examined: int | None = None,
        in_scope: int | None = None,
        unit: str = "items",
        coverage: Coverage | None = None,
    ) -> str:
        """Record a verification check: PASS, FAIL or HOLD (True/False mean PASS/FAIL).

        Coverage is part of the verdict: `examined` of `in_scope` things (`unit`) were
        verified (or pass a `Coverage`). A PASS is refused (recorded as HOLD, with the
        reason) unless everything in scope was verified and the scope is not empty, or when
        no coverage is stated at all. A run passes only when it recorded at least one check
        and every check passed. Returns the status recorded.
        """
        if isinstance(status, bool):
            status = "PASS" if status else "FAIL"
        if status not in STATUSES:
            raise ValueError(f"check status must be one of {STATUSES}, not {status!r}")
        if coverage is None and (examined is not None or in_scope is not None):
            if examined is None or in_scope is None:
                raise ValueError(f"check {name!r}: give both examined= and in_scope=")
            coverage = Coverage(examined, in_scope, unit)
        recorded, reason = judge_coverage(status, coverage)
        text = detail
        if coverage is not None:
            text = f"{text} — {coverage.text()}" if text else coverage.text()
        if reason:
            text = f"{text}; HOLD, not PASS: {reason}" if text else f"HOLD, not PASS: {reason}"
        entry: dict[str, Any] = {"name": name, "status": recorded, "detail": text}
        if coverage is not None:
            entry["coverage"] = coverage.as_dict()
        if recorded != status:
            entry["requested"] = status
        self.checks[name] = entry
        _publish(f"kfm.check.{name}", entry)
        self._ledger("check", entry)
        print(f"{_ICONS[recorded]} check {name}: {recorded}" + (f" — {text}" if text else ""))
        return recorded

    def table(self, name: str, rows: list[dict[str, Any]], *, verdict: str | None = None) -> None:
        """Keep a structured table (e.g. per-item verdicts) as a scrap.

        With `verdict=COLUMN` the table is a verdict table: every row is judged by that
        column (PASS / FAIL / HOLD; unknown values are HOLD) and the table becomes the check
        `table-<name>`, so a run can never pass while an item of its own verdict table is
        FAIL or unproven. Recording the table again (after containment) replaces it.
        """
        data = _jsonable(rows)
        _publish(f"kfm.table.{name}", data)
        if verdict is None:
            return
        statuses = [
            row_status(row.get(verdict)) if isinstance(row, dict) else "HOLD" for row in data
        ]
        failed = statuses.count("FAIL")
        held = statuses.count("HOLD")
        status = "FAIL" if failed else "HOLD" if held else "PASS"
        self.check(
            f"table-{name}",
            status,
            f"{failed} FAIL, {held} HOLD in the {verdict!r} column of table {name}",
            examined=len(data) - held,
            in_scope=len(data),
            unit="rows",
        )

    @property
    def verdict(self) -> str:
        statuses = [c["status"] for c in self.checks.values()]
        if not statuses:
            return "UNVERIFIED"
        for worst in ("FAIL", "HOLD"):
            if worst in statuses:
                return worst
        return "PASS"

    def _ledger(self, kind: str, data: dict[str, Any]) -> None:
        """Findings and checks reach the ledger as they happen (a session that is never
        sealed still leaves them)."""
        with self.workspace.locked():
            self.workspace.record(
                kind, {"run_id": self.run_id, "runbook": self.runbook_id, **data}, self.actor
            )

    def record_code(self) -> dict[str, Any]:
        """Record which code this kernel runs (codeprov.py) as a `code` ledger entry, when it
        changed since last recorded: the package version from its metadata, Python, the
        installed distributions' digest and the sha256 of every package module imported so
        far. Called after every cell (the last one is the run's), returns what is recorded."""
        modules = self._modules.scan()
        if self.code and self.code.get("modules") == modules:
            return self.code
        collected = codeprov.collect(modules)
        self._ledger(LedgerKind.CODE, collected)
        self.code.clear()
        self.code.update(collected)
        return self.code

    # -- raw evidence -----------------------------------------------------------------

    def save_evidence(self, kind: str, name: str, content: str | bytes | Any) -> Path:
        """Save raw output (a log excerpt, a query result) into 10_evidence/<kind>/.

        The file is named `<run id>.<name>`, scrubbed of secrets, created atomically, never
        overwritten, and hashed into hashes.sha256 and the ledger at once.
        """
        if kind not in EVIDENCE_KINDS:
            raise InputError(f"evidence kind must be one of {EVIDENCE_KINDS}, not {kind!r}")
        if not _SAFE_NAME.fullmatch(name):
            raise InputError(
                f"evidence name {name!r} must be a plain file name (letters, digits, . _ -)"
            )
        if isinstance(content, str):
            data = content.encode()
        elif isinstance(content, bytes):
            data = content
        else:
            data = (json.dumps(content, indent=2, sort_keys=True, default=str) + "\n").encode()
        data = redact.clean(data)
        rel = f"{kind}/{self.run_id}.{name}"
        digest = sha256_bytes(data)
        with self.workspace.locked():
            try:
                publish_locked(
                    self.workspace,
                    [(f"10_evidence/{rel}", data)],
                    "evidence",
                    {
                        "run_id": self.run_id,
                        "runbook": self.runbook_id,
                        "path": rel,
                        "sha256": digest,
                    },
                    self.actor,
                )
            except FileExistsError as exc:
                raise InputError(
                    f"evidence {rel} already exists and is never overwritten: pick a new name"
                ) from exc
        dest = self.workspace.evidence / rel
        print(f"🧾 saved evidence 10_evidence/{rel} (sha256 {digest[:12]}…)")
        return dest

    # -- the apply gate ---------------------------------------------------------------

    def action(
        self,
        title: str,
        *,
        command: str,
        change: Callable[[], Any],
        precheck: Callable[[], Any] | None = None,
        postcheck: Callable[[], Any] | None = None,
        rollback: str = "",
        undo: dict[str, Any] | Callable[[Any], dict[str, Any] | None] | None = None,
    ) -> ActionResult:
        """Run a state-changing step only when apply is set, and leave its trail.

        Without apply: prints what would happen and records a planned action (no change,
        no ledger entry). With apply: pre-check, change, post-check; then commands.md,
        rollback.md and a ledger entry with actor, command and both checks. A change that
        raises is recorded as failed and re-raised. `undo` names an undo operation of
        checks/undo.py ({"op": ..., "args": ...}), or is a function of the change's result that
        returns one (for undo arguments only known after the change).
        """
        if not self.apply:
            planned = {
                "title": title,
                "command": command,
                "applied": False,
                "rollback": rollback,
            }
            self.actions.append(planned)
            _publish(f"kfm.action.{len(self.actions):04d}", planned)
            print(f"🔒 DRY RUN (apply=False) — would: {title}\n   command: {command}")
            return ActionResult("", applied=False, ok=True)
        action_id = f"ACT-{secrets.token_hex(4)}"
        pre = _jsonable(precheck()) if precheck else None
        error: str | None = None
        result: Any = None
        try:
            result = _jsonable(change())
        except Exception as exc:
            error = "".join(traceback.format_exception_only(exc)).strip()
        finally:
            digest_memo.forget_all()  # after a change (even a failed one) nothing is assumed
        post = _jsonable(postcheck()) if postcheck and error is None else None
        if callable(undo):
            undo = undo(result) if error is None else None
        entry = {
            "action_id": action_id,
            "run_id": self.run_id,
            "runbook": self.runbook_id,
            "title": title,
            "command": command,
            "precheck": pre,
            "result": result,
            "postcheck": post,
            "ok": error is None,
            "error": error,
            "rollback": rollback,
            "undo": undo,
            "target": str(self.target.path),
            "applied": True,
        }
        self._write_action(entry)
        self.actions.append(entry)
        _publish(f"kfm.action.{len(self.actions):04d}", entry)
        if error is not None:
            print(f"❌ APPLIED and FAILED: {title}: {error}")
            raise RuntimeError(f"action {action_id} failed: {error}")
        print(f"🛠 APPLIED {action_id}: {title}")
        return ActionResult(
            action_id, applied=True, ok=True, precheck=pre, result=result, postcheck=post
        )

    def pr_action(
        self,
        title: str,
        *,
        files: list[Path],
        change: Callable[[Callable[[Path], Path]], Any],
        command: str,
        precheck: Callable[[], Any] | None = None,
        rollback: str = "",
        undo: dict[str, Any] | Callable[[Any], dict[str, Any] | None] | None = None,
    ) -> ActionResult:
        """A PR-first step: its change becomes a commit on a branch, never an edit.

        `files` are the files / folders the step changes; `change(at)` writes through
        `at(path)`, which maps a path of the target to its twin in a private worktree of
        branch `incident/<INC>/<runbook>` (prfirst.py). With apply, when the files are
        under git: pre-check, branch + commit (trailers Incident / Run / Evidence), the
        `git format-patch` saved to 20_actions/diffs/ and hashed, pushed when the runner was
        given `--push REMOTE`, and one ledger action naming branch, commit, base and patch
        sha256. The checkout is untouched: the fix lands when its PR is merged
        (`kfm-runbook incident fixes`). Files git does not track (no repository, or an
        ignored folder): the step acts directly, as `action` does (with `undo`, used only
        then), and says so; with `git: true` in the target that is refused instead. A step
        that cannot be made (dirty files, detached HEAD, existing branch, rejected push) is
        recorded as failed and raises; no branch or worktree is left.
        """
        from . import prfirst

        if not self.apply:
            planned = {
                "title": title,
                "command": command,
                "applied": False,
                "pr_first": True,
                "rollback": rollback,
            }
            self.actions.append(planned)
            _publish(f"kfm.action.{len(self.actions):04d}", planned)
            print(
                f"🔒 DRY RUN (apply=False) — would commit (PR-first): {title}\n"
                f"   command: {command}"
            )
            return ActionResult("", applied=False, ok=True)
        repo, untracked = prfirst.tracked_repo(files)
        if repo is None or untracked:
            if self.target.data.get("git") is True:
                named = ", ".join(untracked[:3]) or "(no file)"
                raise prfirst.FixError(
                    f"target {self.target.path} says git: true but git does not track "
                    f"{named}: commit the files or fix the target"
                )
            print(f"ℹ not tracked by git: {title} acts directly (no PR possible)")
            return self.action(
                title,
                command=command,
                change=lambda: change(lambda p: p),
                precheck=precheck,
                rollback=rollback,
                undo=undo,
            )
        action_id = f"ACT-{secrets.token_hex(4)}"
        pre = _jsonable(precheck()) if precheck else None
        started = History.read(self.workspace).started_entry(self.run_id)
        evidence = str(((started or {}).get("data", {}).get("runbook") or {}).get("sha256", ""))
        fix: prfirst.Fix | None = None
        error: str | None = None
        result: Any = None
        patch = b""
        try:
            fix, result, patch = prfirst.make_fix(
                files,
                change,
                incident_id=self.incident_id,
                run_id=self.run_id,
                runbook_slug=self.runbook_id.removeprefix("RBK-"),
                evidence=evidence or "unknown",
                title=title,
                actor=self.actor,
            )
            remote = os.environ.get(PUSH_ENV, "").strip()
            if fix is not None and remote:
                try:
                    fix = prfirst.push(fix, remote)
                except prfirst.FixError:
                    prfirst.git(Path(fix.repo), "branch", "-D", fix.branch, check=False)
                    raise
        except Exception as exc:
            error = "".join(traceback.format_exception_only(exc)).strip()
        files_out: list[tuple[str, bytes]] = []
        fix_data: dict[str, Any] | None = None
        if fix is not None:
            rel = (
                f"20_actions/diffs/{action_id}-{prfirst.slug(fix.branch.rsplit('/', 1)[-1])}.patch"
            )
            fix = prfirst.Fix(
                **{**fix.as_dict(), "patch": rel, "patch_sha256": sha256_bytes(patch)}
            )
            files_out.append((rel, patch))
            fix_data = fix.as_dict()
        entry = {
            "action_id": action_id,
            "run_id": self.run_id,
            "runbook": self.runbook_id,
            "title": title,
            "command": command,
            "precheck": pre,
            "result": _jsonable(result),
            "postcheck": None,
            "ok": error is None,
            "error": error,
            "rollback": rollback or "revert the commit on a new branch (PR-first)",
            "undo": None,
            "target": str(self.target.path),
            "applied": error is None and fix is not None,
            "pr_first": fix_data or {"made": False},
        }
        self._write_action(entry, files_out)
        self.actions.append(entry)
        _publish(f"kfm.action.{len(self.actions):04d}", entry)
        if error is not None:
            print(f"❌ PR-first step FAILED (nothing was left behind): {title}: {error}")
            raise RuntimeError(f"action {action_id} failed: {error}")
        if fix is None:
            print(f"✓ nothing to change: {title}")
            return ActionResult(action_id, applied=False, ok=True, precheck=pre, result=result)
        where = fix.pr_url or (f"pushed to {fix.remote}" if fix.remote else "not pushed")
        print(
            f"🔀 PR-first {action_id}: {title}\n   branch {fix.branch} @ {fix.commit[:12]} "
            f"(base {fix.base[:12]}), patch {fix.patch}, {where}"
        )
        return ActionResult(action_id, applied=True, ok=True, precheck=pre, result=result)

    def manual_action(self, title: str, *, instruction: str, reason: str = "") -> ActionResult:
        """A step the run cannot take itself (the target names no interface for it).

        Nothing is changed. With apply, the exact instruction for a human goes into
        commands.md, the timeline and the ledger (an action with `manual: true`,
        `applied: false`), so the gap is on record and the incident cannot look fixed by
        this run; without apply it is listed like any planned step.
        """
        entry: dict[str, Any] = {
            "title": title,
            "command": instruction,
            "applied": False,
            "manual": True,
            "reason": reason,
            "rollback": "",
        }
        if not self.apply:
            self.actions.append(entry)
            _publish(f"kfm.action.{len(self.actions):04d}", entry)
            print(f"🔒 DRY RUN (apply=False) — a human would: {title}\n   how: {instruction}")
            return ActionResult("", applied=False, ok=True)
        action_id = f"ACT-{secrets.token_hex(4)}"
        entry = {
            **entry,
            "action_id": action_id,
            "run_id": self.run_id,
            "runbook": self.runbook_id,
            "precheck": None,
            "result": None,
            "postcheck": None,
            "ok": True,
            "error": None,
            "undo": None,
            "target": str(self.target.path),
        }
        line = (
            f"MANUAL step {action_id} handed to a human: {title} ({reason or 'no interface'}) "
            f"(run {self.run_id})"
        )
        commands = (
            f"\n## {action_id} — MANUAL: {title}\n"
            f"- time (UTC): {now_iso()}\n"
            f"- recorded by: {self.actor} (run {self.run_id}, runbook {self.runbook_id})\n"
            f"- target: {entry['target']}\n"
            f"- NOT DONE by this run ({reason or 'the target names no interface for it'})\n"
            f"- instruction for a human: {instruction}\n"
            "- when done: record it (`kfm-runbook incident note`) and re-run verification\n"
        )
        with self.workspace.locked():
            self.workspace.record(
                LedgerKind.ACTION,
                entry,
                self.actor,
                {COMMANDS: commands, TIMELINE: timeline_line(line)},
            )
        self.actions.append(entry)
        _publish(f"kfm.action.{len(self.actions):04d}", entry)
        print(f"✋ MANUAL {action_id}: {title}\n   a human must: {instruction}")
        return ActionResult(action_id, applied=False, ok=True)

    def record_connections(self) -> int:
        """Write the connections noted since the last call into the ledger (one entry)."""
        taken, dropped = connections.drain()
        if not taken and not dropped:
            return 0
        self._ledger(
            LedgerKind.CONNECTIONS,
            {"run_id": self.run_id, "connections": taken, "not_listed": dropped},
        )
        return len(taken) + dropped

    def rollback_plan(self) -> list[str]:
        """Print and return how to undo this run's applied actions, newest first.

        Undo is last in, first out: a later step may build on an earlier one (a re-link
        on a restore), so it is undone first. An action with an undo operation gets its
        `kfm-runbook rollback` command; one without, or one whose change failed (it may be
        partly applied), points to its entry in 20_actions/rollback.md, to be done by hand.
        Planned (dry-run) actions changed nothing and are not listed.
        """
        applied = [a for a in self.actions if a.get("applied")]
        if not applied:
            print("no change was applied in this run: nothing to roll back")
            return []
        plan = []
        for action in reversed(applied):
            action_id, title = action.get("action_id"), action.get("title")
            if not action.get("ok", True):
                line = (
                    f"# {action_id} FAILED and may be partly applied ({title}): check the "
                    "target and undo by hand, see 20_actions/rollback.md"
                )
            elif action.get("undo"):
                line = f"kfm-runbook rollback {self.incident_id} {action_id} --apply   # {title}"
            else:
                line = f"# {action_id} has no automatic undo ({title}): see 20_actions/rollback.md"
            plan.append(line)
            print(line)
        return plan

    def _write_action(
        self, entry: dict[str, Any], files: list[tuple[str, bytes]] | None = None
    ) -> None:
        stamp = now_iso()
        status = "ok" if entry["ok"] else f"FAILED: {entry['error']}"
        commands = (
            f"\n## {entry['action_id']} — {entry['title']}\n"
            f"- time (UTC): {stamp}\n"
            f"- actor: {self.actor} (run {self.run_id}, runbook {self.runbook_id})\n"
            f"- target: {entry['target']}\n"
            f"- command: `{entry['command']}`\n"
            f"- pre-check: `{json.dumps(entry['precheck'], sort_keys=True)}`\n"
            f"- result: {status} `{json.dumps(entry['result'], sort_keys=True)}`\n"
            f"- post-check: `{json.dumps(entry['postcheck'], sort_keys=True)}`\n"
        )
        undo_cmd = (
            f"kfm-runbook rollback {self.incident_id} {entry['action_id']} --apply"
            if entry["undo"]
            else "(manual, see below)"
        )
        rollback = (
            f"\n## Undo {entry['action_id']} — {entry['title']}\n"
            f"- applied (UTC): {stamp} by {self.actor}\n"
            f"- how: {entry['rollback'] or '(no rollback described)'}\n"
            f"- command: `{undo_cmd}`\n"
        )
        line = (
            f"action {entry['action_id']} {status}: {entry['title']} by {self.actor} "
            f"(run {self.run_id})"
        )
        fix = entry.get("pr_first")
        if isinstance(fix, dict) and fix.get("commit"):
            commands += (
                f"- PR-first: branch `{fix['branch']}` commit `{fix['commit']}` on base "
                f"`{fix['base']}` (merge into `{fix['main']}`)\n"
                f"- patch: {fix['patch']} (sha256 {fix['patch_sha256']})\n"
                + (f"- pushed: {fix['remote']} {fix['pushed_ref']}\n" if fix.get("remote") else "")
                + (f"- PR: {fix['pr_url']}\n" if fix.get("pr_url") else "")
            )
        views = {COMMANDS: commands, ROLLBACK: rollback, TIMELINE: timeline_line(line)}
        with self.workspace.locked():
            if files:
                publish_locked(self.workspace, files, LedgerKind.ACTION, entry, self.actor, views)
            else:
                self.workspace.record(LedgerKind.ACTION, entry, self.actor, views)


PUSH_ENV = "KFM_PUSH_REMOTE"  # set by `kfm-runbook run --push REMOTE`


def _session_namespace() -> Mapping[str, Any]:
    """The notebook's globals: `kfm-runbook open` injects kfm_session_id / kfm_runbook_id."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return {}
    shell = get_ipython()
    return shell.user_ns if shell is not None else {}  # read only, never copied


def _runner_mode(workspace: Workspace, run_id: str) -> tuple[bool | None, str | None]:
    """(apply, kind) the runner recorded for `run_id` before the kernel started, or
    (None, None) when no `kfm-runbook run` / `open` started it."""
    for entry in ledger.read_valid(workspace.ledger):
        data = entry["data"]
        if entry["kind"] == LedgerKind.RUN_STARTED and data.get("run_id") == run_id:
            return bool(data.get("apply")), "run.started"
        if entry["kind"] == LedgerKind.SESSION_OPENED and data.get("session_id") == run_id:
            return bool((data.get("parameters") or {}).get("apply")), "session.opened"
    return None, None


def _mode(apply: Any, runner: bool | None, run_id: str) -> bool:
    """The runner decides; the notebook's `apply` must agree (a reassignment is refused)."""
    if not isinstance(apply, bool):
        raise InputError(f"apply must be True or False, not {apply!r}")
    if runner is None:
        if apply:
            raise InputError(
                f"apply=True, but no `kfm-runbook run --apply` or `open --apply` started run "
                f"{run_id}: the runner decides the mode, never a notebook variable"
            )
        return False
    if apply != runner:
        started = "with --apply" if runner else "read-only"
        raise InputError(
            f"apply={apply} in the notebook, but the runner started {run_id} {started}: "
            "the mode comes from `kfm-runbook run/open [--apply]`, never from a notebook "
            "variable (do not assign apply outside the parameters cell)"
        )
    return runner


def _record_cells(recorder: Recorder) -> None:
    """In a JupyterLab session: record every cell the kernel executes (and those it ran
    before the recorder started) in the ledger, as it happens."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return
    shell = get_ipython()
    if shell is None:
        return

    def write(source: str, cell_id: Any, count: Any, error: str | None) -> None:
        recorder._ledger(
            "cell",
            {
                "cell_id": cell_id if isinstance(cell_id, str) else None,
                "source_sha256": sha256_bytes(source.encode()),
                "execution_count": count if isinstance(count, int) else None,
                "ok": error is None,
                "error": error,
            },
        )

    history = list(getattr(shell.history_manager, "input_hist_raw", None) or [])
    for source in history[1:-1]:  # before this one (the last): raw, as the front end sent it
        if isinstance(source, str) and source.strip():
            write(source, None, None, None)

    def post_run_cell(result: Any) -> None:
        info = getattr(result, "info", None)
        source = getattr(info, "raw_cell", None)
        if not isinstance(source, str) or getattr(info, "silent", False):
            return
        failure = result.error_in_exec or result.error_before_exec
        error = None if failure is None else f"{type(failure).__name__}: {failure}"
        write(source, getattr(info, "cell_id", None), result.execution_count, error)

    shell.events.register("post_run_cell", post_run_cell)


_CODE_HOOK: list[Callable[..., None]] = []  # the hook the current recorder registered


def _record_code_after_cells(recorder: Recorder) -> None:
    """After every cell the kernel runs (headless or in JupyterLab), record the code it has
    imported so far, so the run's last completed cell leaves the code that made its call."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return
    shell = get_ipython()
    if shell is None:
        return
    for previous in _CODE_HOOK:  # a second start() in the same kernel replaces the first
        with contextlib.suppress(ValueError):
            shell.events.unregister("post_run_cell", previous)
    _CODE_HOOK.clear()

    def post_run_cell(result: Any) -> None:
        recorder.record_code()
        recorder.record_connections()

    shell.events.register("post_run_cell", post_run_cell)
    _CODE_HOOK.append(post_run_cell)


def start(
    incident_id: str,
    workspace: str | os.PathLike[str],
    target: str | os.PathLike[str],
    apply: bool = False,
) -> Recorder:
    """Open the recorder for this run; checks that the workspace is this incident's and
    that `apply` is the mode the runner started the run in."""
    check_incident_id(incident_id)
    path = Path(workspace).resolve()
    if path.name != incident_id or not (path / "10_evidence" / "ledger.jsonl").is_file():
        raise WorkspaceError(
            f"workspace {path} is not incident {incident_id}'s workspace: run through "
            "`kfm-runbook run` / `kfm-runbook open`, which inject the right path"
        )
    session = _session_namespace()
    run_id = os.environ.get("KFM_RUN_ID") or str(
        session.get("kfm_session_id") or f"SESSION-{secrets.token_hex(3)}"
    )
    space = Workspace(path.parent, incident_id)
    runner, kind = _runner_mode(space, run_id)
    recorder = Recorder(
        incident_id=incident_id,
        workspace=space,
        target=load_target(os.fspath(target)),
        apply=_mode(apply, runner, run_id),
        run_id=run_id,
        runbook_id=os.environ.get("KFM_RUNBOOK_ID")
        or str(session.get("kfm_runbook_id") or "interactive"),
        actor=default_actor(),
    )
    if kind == LedgerKind.SESSION_OPENED:
        _record_cells(recorder)
    _record_code_after_cells(recorder)
    mode = "APPLY — changes will be made" if recorder.apply else "read-only (apply=False)"
    print(
        f"incident {incident_id} · run {recorder.run_id} · target {recorder.target.name} "
        f"({recorder.target.kind}) · {mode}"
    )
    return recorder
