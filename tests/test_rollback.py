"""kfm-runbook rollback: undoes an applied action through the same gate and trail."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from kfm_runbooks import ledger
from kfm_runbooks.checks.catalog import health as catalog
from kfm_runbooks.target import load_target

from .conftest import CHECKSUM, KFM_BIN, Cli

pytestmark = pytest.mark.slow


def test_rollback_restores_a_quarantined_item(
    cli: Cli, incident: tuple[str, Path], sandbox: Path
) -> None:
    incident_id, ws = incident
    applied = cli("run", CHECKSUM, "--incident", incident_id, "--target", str(sandbox), "--apply")
    assert applied.exit_code == 0, applied.output
    entries = ledger.check(ws / "10_evidence/ledger.jsonl").entries
    action = next(
        e["data"]
        for e in entries
        if e["kind"] == "action" and e["data"]["title"] == "Quarantine kfm-sbx-landcover-2021"
    )
    config = catalog.CatalogConfig.from_target(load_target(action["target"]))
    assert catalog.is_quarantined(config, "kfm-sbx-landcover-2021")

    dry = cli("rollback", incident_id, action["action_id"])
    assert dry.exit_code == 0 and "would undo" in dry.stdout
    assert catalog.is_quarantined(config, "kfm-sbx-landcover-2021")

    done = cli("rollback", incident_id, action["action_id"], "--apply", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["result"]["restored"] is True
    assert not catalog.is_quarantined(config, "kfm-sbx-landcover-2021")
    assert (config.base / "landcover/items/kfm-sbx-landcover-2021.json").is_file()
    last = ledger.check(ws / "10_evidence/ledger.jsonl").entries[-1]
    assert last["kind"] == "rollback" and last["data"]["action_id"] == action["action_id"]
    assert "ROLLBACK of" in (ws / "20_actions/commands.md").read_text()

    twice = cli("rollback", incident_id, action["action_id"], "--apply")
    assert twice.exit_code == 2 and "already rolled back" in twice.stderr
    assert cli("verify", incident_id).exit_code == 0


def test_unknown_action(cli: Cli, sealed: tuple[str, Path]) -> None:
    incident_id, _ = sealed
    result = cli("rollback", incident_id, "ACT-00000000", "--apply")
    assert result.exit_code == 2 and "no applied action" in result.stderr


def _quarantine(cli: Cli, incident_id: str, ws: Path, sandbox: Path) -> tuple[dict, object]:
    applied = cli("run", CHECKSUM, "--incident", incident_id, "--target", str(sandbox), "--apply")
    assert applied.exit_code == 0, applied.output
    entries = ledger.check(ws / "10_evidence/ledger.jsonl").entries
    action = next(
        e["data"]
        for e in entries
        if e["kind"] == "action" and e["data"]["title"] == "Quarantine kfm-sbx-landcover-2021"
    )
    return action, catalog.CatalogConfig.from_target(load_target(action["target"]))


def test_an_undo_that_restores_nothing_is_a_failure(
    cli: Cli, incident: tuple[str, Path], sandbox: Path
) -> None:
    incident_id, ws = incident
    action, config = _quarantine(cli, incident_id, ws, sandbox)
    catalog.restore_item(config, "kfm-sbx-landcover-2021")  # someone already put it back
    result = cli("rollback", incident_id, action["action_id"], "--apply")
    assert result.exit_code == 1, result.output
    assert "undid" not in result.stdout
    assert "changed nothing" in result.stderr and result.stderr.startswith("error: ")
    last = ledger.check(ws / "10_evidence/ledger.jsonl").entries[-1]
    assert last["kind"] == "rollback" and last["data"]["ok"] is False
    assert "FAILED" in (ws / "20_actions/commands.md").read_text().rsplit("ROLLBACK of", 1)[1]
    assert cli("verify", incident_id).exit_code == 0


def test_simultaneous_rollbacks_of_one_action_undo_it_once(
    cli: Cli, incident: tuple[str, Path], sandbox: Path
) -> None:
    incident_id, ws = incident
    action, _ = _quarantine(cli, incident_id, ws, sandbox)
    command = [str(KFM_BIN), "rollback", incident_id, action["action_id"], "--apply"]
    procs = [
        subprocess.Popen(
            command, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    codes = sorted(p.wait(timeout=300) for p in procs)
    for proc in procs:
        proc.stdout.close()
        proc.stderr.close()
    assert codes == [0, 2, 2, 2], codes
    entries = ledger.check(ws / "10_evidence/ledger.jsonl").entries
    rollbacks = [e for e in entries if e["kind"] == "rollback"]
    assert len(rollbacks) == 1 and rollbacks[0]["data"]["ok"] is True
