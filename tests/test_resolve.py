"""The resolve gate: refuses for each missing part of the Definition of Resolved, alone."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kfm_runbooks import ledger

from .conftest import Cli

pytestmark = pytest.mark.slow


def _ready(cli: Cli, incident_id: str, *, skip: str = "") -> None:
    """Do everything the Definition of Resolved asks, except `skip`."""
    if skip != "status":
        for status in ("Identified", "Mitigating", "Monitoring"):
            assert cli("incident", "status", incident_id, status, "--note", "n").exit_code == 0
    if skip != "root-cause":
        cli("incident", "note", incident_id, "--root-cause", "assets rewritten in place")
    if skip != "postmortem":
        assert cli("postmortem", incident_id).exit_code == 0


def _tamper(ws: Path) -> None:
    path = next((ws / "10_evidence/runs").glob("*.prov.json"))
    path.write_text(path.read_text() + " ")


def _flag_then_repair(cli: Cli, incident_id: str, ws: Path) -> None:
    path = next((ws / "10_evidence/runs").glob("*.prov.json"))
    original = path.read_bytes()
    path.write_bytes(original + b" ")
    cli("verify", incident_id)  # raises the flag
    path.write_bytes(original)  # evidence intact again, but integrity not re-proven


def _drop_rollback_plan(ws: Path) -> None:
    path = ws / "20_actions/rollback.md"
    entries = ledger.check(ws / "10_evidence/ledger.jsonl").entries
    action_id = next(e["data"]["action_id"] for e in entries if e["kind"] == "action")
    path.write_text(path.read_text().replace(action_id, "ACT-removed"))


def _change_after_pass(cli: Cli, incident_id: str, ws: Path) -> None:
    entries = ledger.check(ws / "10_evidence/ledger.jsonl").entries
    action_id = next(e["data"]["action_id"] for e in entries if e["kind"] == "action")
    assert cli("rollback", incident_id, action_id, "--apply").exit_code == 0


CASES: dict[str, tuple[str, Callable[[Cli, str, Path], None] | None, str]] = {
    "status": ("status", None, "move to Monitoring first"),
    "root-cause": ("root-cause", None, "no root cause recorded"),
    "postmortem": ("postmortem", None, "postmortem required (severity Sev1 was held)"),
    "verify": ("", lambda cli, i, ws: _tamper(ws), "verify fails"),
    "integrity-flag": ("", _flag_then_repair, "integrity unproven: verify"),
    "rollback-plan": ("", lambda cli, i, ws: _drop_rollback_plan(ws), "no rollback plan for"),
    "verification-after-change": (
        "",
        _change_after_pass,
        "no verification runbook passed after the last change",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_missing_part_is_refused_alone(cli: Cli, sealed: tuple[str, Path], case: str) -> None:
    incident_id, ws = sealed
    skip, breaker, expected = CASES[case]
    _ready(cli, incident_id, skip=skip)
    if breaker is not None:
        breaker(cli, incident_id, ws)
    result = cli("incident", "resolve", incident_id, "--json")
    assert result.exit_code == 1, result.output
    missing = json.loads(result.stdout)["missing"]
    assert len(missing) == 1, missing
    assert expected in missing[0]
    assert "Resolved" not in (ws / "00_meta/incident.yaml").read_text().split("status:")[1][:20]


def test_resolves_when_everything_is_proven(cli: Cli, sealed: tuple[str, Path]) -> None:
    incident_id, ws = sealed
    _ready(cli, incident_id)
    head_before = ledger.check(ws / "10_evidence/ledger.jsonl").head_hash
    result = cli("incident", "resolve", incident_id, "--note", "contained and verified")
    assert result.exit_code == 0, result.output
    entry = ledger.check(ws / "10_evidence/ledger.jsonl").entries[-1]
    assert entry["kind"] == "incident.resolved" and entry["data"]["closed_on_head"] == head_before
    assert entry["hash"] in result.stdout
    shown = json.loads(cli("incident", "show", incident_id, "--json").stdout)["incident"]
    assert shown["status"] == "Resolved" and shown["timestamps"]["resolved"].endswith("Z")
    again = cli("incident", "resolve", incident_id)
    assert again.exit_code == 1 and "already Resolved" in again.stdout
    assert cli("verify", incident_id).exit_code == 0


def test_without_any_passing_run_it_cannot_resolve(cli: Cli, incident: tuple[str, Path]) -> None:
    incident_id, _ = incident
    _ready(cli, incident_id, skip="postmortem")
    result = cli("incident", "resolve", incident_id, "--json")
    missing = json.loads(result.stdout)["missing"]
    assert missing == ["no verification runbook passed: re-run the runbook to prove it"]
