"""kfm-runbook rollback: undoes an applied action through the same gate and trail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kfm_runbooks import ledger
from kfm_runbooks.checks import catalog
from kfm_runbooks.target import load_target

from .conftest import CHECKSUM, Cli

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
