"""Comms updates (internal/public, cadence, overdue) and the postmortem draft."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from kfm_runbooks import comms, ledger

from .conftest import Cli

pytestmark = pytest.mark.slow


def test_internal_update_links_evidence(cli: Cli, sealed: tuple[str, Path]) -> None:
    incident_id, ws = sealed
    cli(
        "incident",
        "note",
        incident_id,
        "--impact",
        "landcover downloads",
        "--hypothesis",
        "assets rewritten in place",
    )
    result = cli("update", incident_id)
    assert result.exit_code == 0
    text = result.stdout
    for field in (
        "**Status:** Investigating",
        "**Impact:** landcover downloads",
        "**Start time:**",
        "**Current hypothesis:** assets rewritten in place",
        "**Actions taken:**",
        "**Next update:**",
    ):
        assert field in text
    assert re.search(r"ACT-[0-9a-f]{8}", text) and "RUN-" in text and "sha256" in text
    written = sorted((ws / "00_meta/updates").glob("UPDATE-*.internal.md"))
    assert len(written) == 1 and written[0].read_text() == text.rstrip("\n") + "\n"
    entry = ledger.check(ws / "10_evidence/ledger.jsonl").entries[-1]
    assert entry["kind"] == "comms.update" and entry["data"]["audience"] == "internal"
    due = dt.datetime.fromisoformat(entry["data"]["next_update_due"].replace("Z", "+00:00"))
    sent = dt.datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
    assert dt.timedelta(minutes=29) < due - sent <= dt.timedelta(minutes=30)  # Sev1 cadence


def test_public_update_has_no_internal_details(cli: Cli, sealed: tuple[str, Path]) -> None:
    incident_id, ws = sealed
    cli(
        "incident",
        "note",
        incident_id,
        "--hypothesis",
        "token ghp_" + "x1" * 18 + " leaked in /srv/kfm/config.yaml",
    )
    text = cli("update", incident_id, "--audience", "public").stdout
    assert "Quarantine kfm-sbx-landcover-2021" in text  # what was done, in words
    for forbidden in ("10_evidence", "RUN-", "ACT-", "tester", str(ws), "ghp_", "Ledger head"):
        assert forbidden not in text, forbidden
    assert "[REDACTED:github-token]" in text


def test_overdue_update_is_flagged_in_show(
    cli: Cli, sealed: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    incident_id, _ = sealed
    assert "update" not in cli("incident", "show", incident_id).stdout.split("ledger:")[1]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    monkeypatch.setattr(comms, "utc_now", lambda: later)
    shown = cli("incident", "show", incident_id).stdout
    assert "next Sev1 update was due" in shown and f"kfm-runbook update {incident_id}" in shown


def test_postmortem_from_evidence(cli: Cli, sealed: tuple[str, Path]) -> None:
    incident_id, ws = sealed
    result = cli("postmortem", incident_id)
    assert result.exit_code == 0
    assert "required: severity Sev1 was held" in result.stderr
    text = (ws / "90_postmortem/postmortem.md").read_text()
    entries = ledger.check(ws / "10_evidence/ledger.jsonl").entries
    run = next(e for e in entries if e["kind"] == "run")
    assert f"| #{run['seq']} `{run['hash'][:10]}` |" in text  # each line points to its entry
    for section in (
        "## Root cause",
        "## Impact",
        "## Timeline",
        "## Runbooks run",
        "## Actions applied",
        "## Findings",
        "## What went well",
        "## What went badly",
        "## Action items",
    ):
        assert section in text
    assert "RBK-catalog-checksum-mismatch" in text and "Quarantine kfm-sbx-landcover-2021" in text
    items = (ws / "90_postmortem/action_items.md").read_text()
    assert "| # | action | owner | due (UTC) | type | status |" in items
    again = cli("postmortem", incident_id)
    assert again.exit_code == 2 and "never overwritten" in again.stderr
    assert entries[-1]["kind"] == "postmortem"
