"""Status, severity, roles, notes, integrity flags: validated; each in yaml, ledger, timeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kfm_runbooks import ledger

from .conftest import NOTEBOOKS, Cli


def _yaml(ws: Path) -> dict:
    return yaml.safe_load((ws / "00_meta/incident.yaml").read_text())


def _last(ws: Path) -> dict:
    return ledger.check(ws / "10_evidence/ledger.jsonl").entries[-1]


def test_status_flow_is_recorded_everywhere(cli: Cli, incident: tuple[str, Path]) -> None:
    incident_id, ws = incident
    result = cli("incident", "status", incident_id, "Identified", "--note", "bad asset bytes")
    assert result.exit_code == 0, result.output
    record = _yaml(ws)
    assert record["status"] == "Identified" and record["timestamps"]["identified"].endswith("Z")
    entry = _last(ws)
    assert entry["kind"] == "status" and entry["data"]["from"] == "Investigating"
    assert entry["data"]["note"] == "bad asset bytes"
    assert (
        "status Investigating → Identified (now): bad asset bytes"
        in (ws / "00_meta/timeline.md").read_text()
    )
    assert cli("verify", incident_id).exit_code == 0  # incident.yaml hash recorded


def test_status_rules(cli: Cli, incident: tuple[str, Path]) -> None:
    incident_id, ws = incident
    to_resolved = cli("incident", "status", incident_id, "Resolved", "--note", "done")
    assert to_resolved.exit_code == 2  # not a choice: only `incident resolve` gets there
    assert cli("incident", "status", incident_id, "Investigating", "--note", "x").exit_code == 2
    assert cli("incident", "status", incident_id, "Mitigating", "--note", "skip").exit_code == 0
    mitigated = _yaml(ws)["timestamps"]["mitigated"]
    back = cli("incident", "status", incident_id, "Identified", "--note", "regressed")
    assert back.exit_code == 0 and "(back to)" in (ws / "00_meta/timeline.md").read_text()
    cli("incident", "status", incident_id, "Mitigating", "--note", "again")
    assert _yaml(ws)["timestamps"]["mitigated"] == mitigated  # first entry kept
    empty = cli("incident", "status", incident_id, "Monitoring", "--note", "  ")
    assert empty.exit_code == 2 and "--note must not be empty" in empty.stderr


def test_library_refuses_resolved_status(incident: tuple[str, Path]) -> None:
    from kfm_runbooks.errors import InputError
    from kfm_runbooks.lifecycle import set_status

    with pytest.raises(InputError, match="incident resolve"):
        set_status(incident[0], "Resolved", note="x")


def test_assign_records_a_handoff(cli: Cli, incident: tuple[str, Path]) -> None:
    incident_id, ws = incident
    assert cli("incident", "assign", incident_id, "IC", "alice").exit_code == 0
    result = cli("incident", "assign", incident_id, "IC", "bob")
    assert result.exit_code == 0 and "alice → bob" in result.stdout
    assert _yaml(ws)["roles"]["IC"] == "bob"
    assert _last(ws)["data"] == {**_last(ws)["data"], "role": "IC", "from": "alice", "to": "bob"}
    assert "IC handoff alice → bob" in (ws / "00_meta/timeline.md").read_text()
    assert cli("incident", "assign", incident_id, "Boss", "x").exit_code == 2


def test_notes(cli: Cli, incident: tuple[str, Path]) -> None:
    incident_id, ws = incident
    result = cli(
        "incident",
        "note",
        incident_id,
        "--impact",
        "landcover downloads",
        "--root-cause",
        "pipeline rewrote assets without new items",
    )
    assert result.exit_code == 0
    record = _yaml(ws)
    assert record["impact"] == "landcover downloads"
    assert record["root_cause"].startswith("pipeline rewrote")
    assert cli("incident", "note", incident_id).exit_code == 2


def test_hand_edited_incident_yaml_is_detected(cli: Cli, incident: tuple[str, Path]) -> None:
    incident_id, ws = incident
    path = ws / "00_meta/incident.yaml"
    path.write_text(path.read_text().replace("Sev2", "Sev3"))
    result = cli("verify", incident_id)
    assert result.exit_code == 1 and "incident.yaml" in result.stdout


def test_severity_cannot_drop_while_verify_fails(cli: Cli, sealed: tuple[str, Path]) -> None:
    incident_id, ws = sealed
    assert (
        cli("incident", "severity", incident_id, "Sev0", "--reason", "data integrity").exit_code
        == 0
    )
    notebook = next((ws / "10_evidence/runs").glob("RUN-*.ipynb"))
    original = notebook.read_bytes()
    notebook.write_bytes(original + b" ")
    assert cli("verify", incident_id).exit_code == 1
    flagged = _last(ws)
    assert flagged["kind"] == "integrity.flagged" and flagged["data"]["source"] == "verify"
    refused = cli("incident", "severity", incident_id, "Sev2", "--reason", "looks fine")
    assert refused.exit_code == 2 and "integrity is unproven" in refused.stderr
    assert cli("incident", "severity", incident_id, "Sev0", "--reason", "x").exit_code == 2
    shown = cli("incident", "show", incident_id)
    assert "integrity unproven (verify)" in shown.stdout
    notebook.write_bytes(original)
    assert cli("verify", incident_id).exit_code == 0
    assert _last(ws)["kind"] == "integrity.cleared"
    assert cli("incident", "severity", incident_id, "Sev2", "--reason", "proven").exit_code == 0


def test_hold_run_flags_until_the_same_runbook_passes(
    cli: Cli, incident: tuple[str, Path], sandbox: Path
) -> None:
    incident_id, ws = incident
    book = str(NOTEBOOKS / "hold.ipynb")
    held = cli("run", book, "--incident", incident_id, "--target", str(sandbox))
    assert held.exit_code == 1
    refused = cli("incident", "severity", incident_id, "Sev3", "--reason", "minor")
    assert refused.exit_code == 2 and "run:RBK-test-hold" in refused.stderr
    passed = cli(
        "run", book, "--incident", incident_id, "--target", str(sandbox), "-p", "reachable=true"
    )
    assert passed.exit_code == 0
    kinds = [e["kind"] for e in ledger.check(ws / "10_evidence/ledger.jsonl").entries]
    assert kinds.count("integrity.flagged") == 1 and kinds.count("integrity.cleared") == 1
    assert cli("incident", "severity", incident_id, "Sev3", "--reason", "minor").exit_code == 0


def test_findings_and_checks_reach_the_ledger_live(
    cli: Cli, incident: tuple[str, Path], sandbox: Path
) -> None:
    incident_id, ws = incident
    cli("run", "RBK-catalog-checksum-mismatch", "--incident", incident_id, "--target", str(sandbox))
    entries = ledger.check(ws / "10_evidence/ledger.jsonl").entries
    findings = [e["data"]["code"] for e in entries if e["kind"] == "finding"]
    assert sorted(findings) == [
        "CAT_ASSET_DIGEST_MISMATCH",
        "CAT_ASSET_NOT_FOUND",
        "CAT_LINK_BROKEN",
    ]
    checks = {e["data"]["name"]: e["data"]["status"] for e in entries if e["kind"] == "check"}
    assert checks["asset-digests"] == "FAIL"
    run_seq = next(e["seq"] for e in entries if e["kind"] == "run")
    assert all(e["seq"] < run_seq for e in entries if e["kind"] in ("finding", "check"))
    report = json.loads(cli("incident", "show", incident_id, "--json").stdout)
    assert report["runs"][0]["outcome"] == "failed"


def test_lifecycle_commands_refuse_a_hand_edited_record(cli: Cli, sealed: tuple[str, Path]) -> None:
    """The record is the ledger's; an edited incident.yaml is never built upon."""
    incident_id, ws = sealed
    path = ws / "00_meta/incident.yaml"
    forged = (
        path.read_text()
        .replace("severity: Sev1", "severity: Sev3")
        .replace("status: Investigating", "status: Monitoring")
        .replace("root_cause: ''", "root_cause: invented")
    )
    path.write_text(forged)
    for command in (
        ("incident", "note", incident_id, "--impact", "x"),
        ("incident", "status", incident_id, "Identified", "--note", "x"),
        ("incident", "assign", incident_id, "Ops", "olga"),
        ("incident", "resolve", incident_id),
        ("postmortem", incident_id),
    ):
        refused = cli(*command)
        assert refused.exit_code == 1, (command, refused.output)
        [line] = refused.stderr.strip().splitlines()
        assert "incident.yaml was edited outside kfm-runbook" in line
        assert f"kfm-runbook verify {incident_id}" in line
    assert path.read_text() == forged  # nothing was built on it, nothing overwrote it
    assert cli("verify", incident_id).exit_code == 1
    shown = cli("incident", "show", incident_id)
    assert shown.exit_code == 1 and "edited outside kfm-runbook" in shown.stderr
