"""The in-kernel helper: light import, the apply gate, evidence that is never overwritten."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import kfm_runbooks.record as rb
from kfm_runbooks import ledger, manifest
from kfm_runbooks.errors import InputError, WorkspaceError
from kfm_runbooks.layout import Workspace


def test_importing_the_helper_stays_light() -> None:
    code = (
        "import sys, kfm_runbooks.record, kfm_runbooks.checks.catalog.health\n"
        "heavy = [m for m in ('scrapbook', 'papermill', 'pandas', 'pydantic', 'pyarrow', "
        "'nbformat', 'prov', 'jupyter_client') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.fixture
def recorder(incident: tuple[str, Path], sandbox: Path) -> rb.Recorder:
    incident_id, path = incident
    return rb.start(incident_id, path, sandbox, apply=False)


def test_start_refuses_a_foreign_workspace(incident: tuple[str, Path], sandbox: Path) -> None:
    _, path = incident
    with pytest.raises(WorkspaceError, match="not incident INC-20200101-001"):
        rb.start("INC-20200101-001", path, sandbox)


@pytest.fixture
def applying(
    incident: tuple[str, Path], sandbox: Path, monkeypatch: pytest.MonkeyPatch
) -> rb.Recorder:
    """A recorder for a run the runner started with --apply (its `run.started` entry)."""
    incident_id, path = incident
    workspace = Workspace(path.parent, incident_id)
    with workspace.locked():
        workspace.record("run.started", {"run_id": "RUN-test-apply", "apply": True}, "tester")
    monkeypatch.setenv("KFM_RUN_ID", "RUN-test-apply")
    return rb.start(incident_id, path, sandbox, apply=True)


def test_the_runner_decides_the_mode(
    incident: tuple[str, Path], sandbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    incident_id, path = incident
    with pytest.raises(InputError, match="the runner decides the mode"):
        rb.start(incident_id, path, sandbox, apply=True)  # no runner started it
    workspace = Workspace(path.parent, incident_id)
    with workspace.locked():
        workspace.record("run.started", {"run_id": "RUN-test-ro", "apply": False}, "tester")
    monkeypatch.setenv("KFM_RUN_ID", "RUN-test-ro")
    with pytest.raises(InputError, match="the runner started RUN-test-ro read-only"):
        rb.start(incident_id, path, sandbox, apply=True)
    recorder = rb.start(incident_id, path, sandbox, apply=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        recorder.apply = True  # type: ignore[misc]
    calls: list[str] = []
    recorder.action("change it", command="x", change=lambda: calls.append("changed"))
    assert calls == []


def test_without_apply_nothing_changes(recorder: rb.Recorder) -> None:
    calls: list[str] = []
    result = recorder.action("change it", command="x", change=lambda: calls.append("changed"))
    assert result.applied is False and calls == []
    entries = ledger.check(recorder.workspace.ledger).entries
    assert [e["kind"] for e in entries] == ["incident.opened"]
    assert "## ACT-" not in (recorder.workspace.actions / "commands.md").read_text()


def test_with_apply_the_trail_is_complete(applying: rb.Recorder) -> None:
    recorder = applying
    state = {"on": False}
    result = recorder.action(
        "switch on",
        command="set on",
        precheck=lambda: dict(state),
        change=lambda: state.update(on=True) or "done",
        postcheck=lambda: dict(state),
        rollback="switch off",
        undo={"op": "catalog.restore_item", "args": {"item_id": "x"}},
    )
    assert result.applied and state["on"]
    entry = ledger.check(recorder.workspace.ledger).entries[-1]
    assert entry["kind"] == "action" and entry["actor"] == "tester"
    data = entry["data"]
    assert data["precheck"] == {"on": False} and data["postcheck"] == {"on": True}
    assert data["command"] == "set on" and data["action_id"] == result.action_id
    commands = (recorder.workspace.actions / "commands.md").read_text()
    assert result.action_id in commands and "pre-check" in commands and "post-check" in commands
    rollback = (recorder.workspace.actions / "rollback.md").read_text()
    assert f"kfm-runbook rollback {recorder.incident_id} {result.action_id} --apply" in rollback


def test_a_failing_change_is_recorded_then_raised(applying: rb.Recorder) -> None:
    recorder = applying

    def broken() -> None:
        raise OSError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        recorder.action("break", command="x", change=broken)
    data = ledger.check(recorder.workspace.ledger).entries[-1]["data"]
    assert data["ok"] is False and "disk full" in data["error"]


def test_rollback_plan_undoes_newest_first(
    applying: rb.Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder = applying
    undo = {"op": "catalog.restore_item", "args": {"item_id": "x"}}
    first = recorder.action("quarantine x", command="q", change=lambda: 1, undo=undo)
    second = recorder.action("relink x", command="r", change=lambda: 2, undo=lambda r: undo)
    manual = recorder.action("reindex", command="i", change=lambda: 3, rollback="drop it")
    capsys.readouterr()
    plan = recorder.rollback_plan()
    assert [line.split()[3] if line.startswith("kfm") else line.split()[1] for line in plan] == [
        manual.action_id,
        second.action_id,
        first.action_id,
    ]
    inc = recorder.incident_id
    assert plan[1] == f"kfm-runbook rollback {inc} {second.action_id} --apply   # relink x"
    assert "no automatic undo (reindex)" in plan[0] and "rollback.md" in plan[0]
    assert capsys.readouterr().out.splitlines() == plan


def test_rollback_plan_with_nothing_applied(
    recorder: rb.Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder.action("change it", command="x", change=lambda: None)  # dry run: planned only
    capsys.readouterr()
    assert recorder.rollback_plan() == []
    assert capsys.readouterr().out == "no change was applied in this run: nothing to roll back\n"


def test_rollback_plan_flags_a_failed_action_for_manual_undo(applying: rb.Recorder) -> None:
    recorder = applying
    undo = {"op": "catalog.restore_item", "args": {"item_id": "x"}}
    done = recorder.action("quarantine x", command="q", change=lambda: 1, undo=undo)

    def broken() -> None:
        raise OSError("disk full")

    with pytest.raises(RuntimeError):
        recorder.action("relink x", command="r", change=broken, undo=undo)
    failed = recorder.actions[-1]["action_id"]
    plan = recorder.rollback_plan()
    assert len(plan) == 2
    assert plan[0].startswith(f"# {failed} FAILED and may be partly applied (relink x)")
    assert "rollback.md" in plan[0] and "kfm-runbook rollback" not in plan[0]
    assert plan[1].startswith(f"kfm-runbook rollback {recorder.incident_id} {done.action_id}")


def test_evidence_is_hashed_and_never_overwritten(recorder: rb.Recorder) -> None:
    path = recorder.save_evidence("logs", "api.log", "GET / 500\n")
    assert path.parent.name == "logs" and path.read_text() == "GET / 500\n"
    [entry] = manifest.read(recorder.workspace.manifest)
    assert entry.name == f"logs/{recorder.run_id}.api.log"
    with pytest.raises(InputError, match="never overwritten"):
        recorder.save_evidence("logs", "api.log", "other")
    assert path.read_text() == "GET / 500\n"
    for bad in ("../escape", ".hidden", "a/b"):
        with pytest.raises(InputError):
            recorder.save_evidence("logs", bad, "x")
    with pytest.raises(InputError):
        recorder.save_evidence("runs", "x.txt", "x")


def test_checks_and_verdict(recorder: rb.Recorder) -> None:
    assert recorder.verdict == "UNVERIFIED"
    recorder.check("a", True, examined=1, in_scope=1)
    assert recorder.verdict == "PASS"
    recorder.check("b", "HOLD")
    assert recorder.verdict == "HOLD"
    recorder.check("c", False)
    assert recorder.verdict == "FAIL"
    with pytest.raises(ValueError, match="one of"):
        recorder.check("d", "MAYBE")


def test_scrap_bundle_matches_scrapbook_format() -> None:
    from kfm_runbooks import scraps

    data, metadata = scraps.bundle("kfm.check.x", {"status": "PASS"})
    assert data == {
        "application/scrapbook.scrap.json+json": {
            "name": "kfm.check.x",
            "data": {"status": "PASS"},
            "encoder": "json",
            "version": 1,
        }
    }
    assert metadata == {"scrapbook": {"name": "kfm.check.x", "data": True, "display": False}}
    assert json.dumps(scraps.bundle("t", "text")[0]).count("scrap.text+json") == 1


# --- coverage is part of every verdict ------------------------------------------------


def _check_entries(recorder: rb.Recorder) -> list[dict[str, object]]:
    entries = ledger.check(recorder.workspace.ledger).entries
    return [e["data"] for e in entries if e["kind"] == "check"]


@pytest.mark.parametrize(
    ("examined", "in_scope", "recorded", "reason"),
    [
        (27, 27, "PASS", ""),
        (26, 27, "HOLD", "1 of 27 assets in scope could not be verified"),
        (0, 0, "HOLD", "nothing in scope (0 assets)"),
    ],
)
def test_a_pass_needs_everything_in_scope_verified(
    recorder: rb.Recorder, examined: int, in_scope: int, recorded: str, reason: str
) -> None:
    status = recorder.check(
        "asset-digests", "PASS", "match", examined=examined, in_scope=in_scope, unit="assets"
    )
    assert status == recorded and recorder.verdict == recorded
    [entry] = _check_entries(recorder)
    assert entry["status"] == recorded
    assert entry["coverage"] == {"examined": examined, "in_scope": in_scope, "unit": "assets"}
    assert f"verified {examined} of {in_scope} assets" in str(entry["detail"])
    assert reason in str(entry["detail"])
    assert entry.get("requested") == (None if recorded == "PASS" else "PASS")


def test_a_pass_without_coverage_is_hold(recorder: rb.Recorder) -> None:
    assert recorder.check("flag", True, "looks fine") == "HOLD"
    [entry] = _check_entries(recorder)
    assert "no coverage stated" in str(entry["detail"]) and "coverage" not in entry


def test_fail_and_hold_keep_their_status_and_counts(recorder: rb.Recorder) -> None:
    assert recorder.check("digests", False, "1 differs", examined=3, in_scope=9) == "FAIL"
    assert recorder.check("remote", "HOLD", "network denied") == "HOLD"
    assert recorder.verdict == "FAIL"
    assert "verified 3 of 9 items" in recorder.checks["digests"]["detail"]


@pytest.mark.parametrize(("examined", "in_scope"), [(5, 4), (-1, 3), (1, None), (True, 1)])
def test_impossible_coverage_is_a_programming_error(
    recorder: rb.Recorder, examined: object, in_scope: object
) -> None:
    with pytest.raises(ValueError, match=r"coverage|both examined"):
        recorder.check("x", "PASS", examined=examined, in_scope=in_scope)  # type: ignore[arg-type]


def test_a_run_never_passes_while_its_verdict_table_has_a_fail(recorder: rb.Recorder) -> None:
    rows = [{"file": "a.json", "outcome": "PASS"}, {"file": "b.json", "outcome": "FAIL"}]
    recorder.table("item_verdicts", rows, verdict="outcome")
    recorder.check("asset-digests", "PASS", "ok", examined=1, in_scope=1)
    assert recorder.checks["table-item_verdicts"]["status"] == "FAIL"
    assert recorder.verdict == "FAIL"
    # re-recorded after containment, the table's latest state decides
    recorder.table("item_verdicts", rows[:1], verdict="outcome")
    assert recorder.verdict == "PASS"
    # an unknown verdict value is not a pass; an empty table is nothing in scope
    recorder.table("item_verdicts", [{"outcome": "maybe"}], verdict="outcome")
    assert recorder.checks["table-item_verdicts"]["status"] == "HOLD"
    recorder.table("item_verdicts", [], verdict="outcome")
    assert recorder.checks["table-item_verdicts"]["status"] == "HOLD"


def test_old_check_entries_without_coverage_still_read(tmp_path: Path) -> None:
    """Ledgers and notebooks written before coverage existed carry name/status/detail only."""
    from kfm_runbooks.seal import outcome_from

    old = [{"name": "a", "status": "PASS", "detail": "x"}]
    assert outcome_from({"status": "completed"}, old)[0] == "passed"
