"""The resolve gate: refuses for each missing part of the Definition of Resolved, alone."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from kfm_runbooks import ledger

from .conftest import CHECKSUM, NOTEBOOKS, Cli

pytestmark = pytest.mark.slow


def fill_postmortem(ws: Path) -> None:
    """What the people write into the draft: every section, one owned action item."""
    path = ws / "90_postmortem/postmortem.md"
    text = path.read_text()
    for placeholder in re.findall(r"_\([^)]*\)_", text):
        text = text.replace(placeholder, "Written by the team after the review.")
    path.write_text(text)
    items = ws / "90_postmortem/action_items.md"
    text = re.sub(r"_\([^)]*\)_", "Alert on asset digests", items.read_text())
    items.write_text(text.replace("_owner_", "alice").replace("_due_", "2027-01-31"))


def _ready(cli: Cli, incident_id: str, *, skip: str = "") -> None:
    """Do everything the Definition of Resolved asks, except `skip`."""
    if skip != "status":
        for status in ("Identified", "Mitigating", "Monitoring"):
            assert cli("incident", "status", incident_id, status, "--note", "n").exit_code == 0
    if skip != "root-cause":
        cli("incident", "note", incident_id, "--root-cause", "assets rewritten in place")
    if skip != "postmortem":
        assert cli("postmortem", incident_id).exit_code == 0
        shown = json.loads(cli("incident", "show", incident_id, "--json").stdout)
        fill_postmortem(Path(shown["path"]))


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
    "postmortem-unfilled": (
        "",
        lambda cli, i, ws: (ws / "90_postmortem/postmortem.md").write_text(""),
        "postmortem required (severity Sev1 was held): fill in the sections",
    ),
    "verify": ("", lambda cli, i, ws: _tamper(ws), "verify fails"),
    "integrity-flag": ("", _flag_then_repair, "integrity unproven: verify"),
    "rollback-plan-edited": (
        "",
        lambda cli, i, ws: _drop_rollback_plan(ws),
        "verify fails: 20_actions/rollback.md: differs from what the ledger recorded",
    ),
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


def _edited_copy_of_the_runbook(tmp_path: Path) -> str:
    """The library runbook's bytes, its verification rewritten to always pass."""
    from kfm_runbooks.runbook import find

    nb = json.loads(find(CHECKSUM).read_text())
    for cell in nb["cells"]:  # its verdict tables judge nothing, its checks always pass
        cell["source"] = "".join(cell["source"]).replace(', verdict="integrity"', "")
        if "verification" in cell["metadata"].get("tags", []):
            source = "".join(cell["source"]).replace("run.check(", "_passes(")
            cell["source"] = [
                "def _passes(name, status, detail='', **coverage):\n",
                "    return run.check(name, 'PASS', 'trust me', examined=1, in_scope=1)\n",
                source,
            ]
    copy = tmp_path / f"{CHECKSUM}.ipynb"
    copy.write_text(json.dumps(nb))
    return str(copy)


@pytest.mark.parametrize("passer", ["adhoc-notebook", "edited-copy-of-the-runbook"])
def test_a_notebook_given_by_path_does_not_speak_for_a_failing_runbook(
    cli: Cli, incident: tuple[str, Path], sandbox: Path, tmp_path: Path, passer: str
) -> None:
    incident_id, _ = incident
    failed = cli("run", CHECKSUM, "--incident", incident_id, "--target", str(sandbox))
    assert failed.exit_code == 1
    notebook = (
        str(NOTEBOOKS / "passes.ipynb")
        if passer == "adhoc-notebook"
        else _edited_copy_of_the_runbook(tmp_path)
    )
    passed = cli("run", notebook, "--incident", incident_id, "--target", str(sandbox))
    assert passed.exit_code == 0, passed.output
    _ready(cli, incident_id, skip="postmortem")  # Sev2, nothing rolled back: not required
    result = cli("incident", "resolve", incident_id, "--json")
    assert result.exit_code == 1
    missing = json.loads(result.stdout)["missing"]
    assert any(m.startswith(f"{CHECKSUM} found FAILED") for m in missing), missing
    assert any("ad-hoc notebooks given by path do not count" in m for m in missing), missing


def test_a_waived_finding_is_recorded_and_accepted(
    cli: Cli, sealed: tuple[str, Path], tmp_path: Path
) -> None:
    from kfm_runbooks.sandbox import create_sandbox

    incident_id, ws = sealed
    fresh = create_sandbox(tmp_path / "fresh-sandbox")
    assert cli("run", CHECKSUM, "--incident", incident_id, "--target", str(fresh)).exit_code == 1
    _ready(cli, incident_id)
    refused = json.loads(cli("incident", "resolve", incident_id, "--json").stdout)["missing"]
    assert [m for m in refused if m.startswith(f"{CHECKSUM} found FAILED")], refused
    nothing = cli("incident", "waive", incident_id, "RBK-api-5xx-spike", "--reason", "x")
    assert nothing.exit_code == 2 and "nothing to waive" in nothing.stderr
    waived = cli(
        "incident", "waive", incident_id, CHECKSUM, "--reason", "fresh sandbox, not production"
    )
    assert waived.exit_code == 0, waived.output
    entry = ledger.check(ws / "10_evidence/ledger.jsonl").entries[-1]
    assert entry["kind"] == "gate.waived" and entry["data"]["reason"].startswith("fresh sandbox")
    assert cli("incident", "resolve", incident_id).exit_code == 0


@pytest.mark.parametrize("postmortem", ["empty-file", "unfilled-draft"])
def test_a_postmortem_needs_its_sections_filled(
    cli: Cli, sealed: tuple[str, Path], postmortem: str
) -> None:
    incident_id, ws = sealed
    _ready(cli, incident_id, skip="postmortem")
    if postmortem == "empty-file":
        (ws / "90_postmortem/postmortem.md").write_text("")
    else:
        assert cli("postmortem", incident_id).exit_code == 0
    result = cli("incident", "resolve", incident_id, "--json")
    assert result.exit_code == 1
    [missing] = json.loads(result.stdout)["missing"]
    assert missing.startswith("postmortem required (severity Sev1 was held)")
    assert "What went well" in missing or "postmortem.md" in missing
