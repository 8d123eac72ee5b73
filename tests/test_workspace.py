"""Incident workspaces: ids, layout, incident.yaml against its schema, list/show, roots."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import jsonschema
import pytest
import yaml

from kfm_runbooks import incident as incident_mod
from kfm_runbooks.errors import InvalidIdError
from kfm_runbooks.layout import LAYOUT_DIRS
from kfm_runbooks.workspace import create_incident, open_workspace

from .conftest import Cli


def test_new_creates_the_seed_layout(cli: Cli, root: Path) -> None:
    result = cli(
        "incident", "new", "--title", "API 5xx spike", "--severity", "Sev1", "--commander", "alice"
    )
    assert result.exit_code == 0, result.output
    incident_id = result.stdout.strip()
    assert incident_id.startswith("INC-") and incident_id.endswith("-001")
    ws = root / incident_id
    for sub in LAYOUT_DIRS:
        assert (ws / sub).is_dir(), sub
    for name in (
        "00_meta/incident.yaml",
        "00_meta/timeline.md",
        "10_evidence/hashes.sha256",
        "10_evidence/ledger.jsonl",
        "20_actions/commands.md",
        "20_actions/rollback.md",
        "30_verification/checks.md",
    ):
        assert (ws / name).is_file(), name
    record = yaml.safe_load((ws / "00_meta/incident.yaml").read_text())
    assert record["roles"]["IC"] == "alice" and record["roles"]["Scribe"] is None
    assert record["status"] == "Investigating"
    assert record["timestamps"]["declared"].endswith("Z")
    assert "Incident declared: API 5xx spike (Sev1)" in (ws / "00_meta/timeline.md").read_text()
    first = json.loads((ws / "10_evidence/ledger.jsonl").read_text().splitlines()[0])
    assert first["kind"] == "incident.opened" and first["seq"] == 0


def test_incident_yaml_validates_against_the_committed_schema(cli: Cli, root: Path) -> None:
    incident_id = cli("incident", "new", "--title", "t", "--severity", "Sev3").stdout.strip()
    schema = json.loads(incident_mod.SCHEMA_PATH.read_text())
    record = yaml.safe_load((root / incident_id / "00_meta/incident.yaml").read_text())
    jsonschema.validate(record, schema)
    record["severity"] = "Sev9"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(record, schema)


def test_committed_schema_matches_the_model() -> None:
    assert incident_mod.SCHEMA_PATH.read_text() == incident_mod.json_schema(), (
        "run `kfm-runbook schema --write`"
    )


def test_sequence_numbers_increase_per_day(cli: Cli) -> None:
    ids = [
        cli("incident", "new", "--title", f"n{i}", "--severity", "Sev3").stdout.strip()
        for i in range(3)
    ]
    assert [i[-3:] for i in ids] == ["001", "002", "003"]


def _new(root: str, n: int) -> str:
    return create_incident(f"concurrent {n}", "Sev2", root=root, actor="t").incident_id


def test_concurrent_new_get_distinct_ids(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        ids = pool.starmap(_new, [(str(tmp_path), n) for n in range(12)])
    assert len(set(ids)) == 12
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("INC-")) == sorted(ids)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".new-incident-")]


@pytest.mark.parametrize(
    "bad", ["../etc", "INC-20261127-001/../../x", "INC-2026-001", "inc-20261127-001", "", "/tmp"]
)
def test_invalid_incident_ids_are_refused(cli: Cli, root: Path, bad: str) -> None:
    result = cli("incident", "show", bad)
    assert result.exit_code == 2
    assert "invalid incident id" in result.stderr and "INC-YYYYMMDD-###" in result.stderr
    assert not root.exists() or not any(root.iterdir())


def test_unknown_incident(cli: Cli) -> None:
    result = cli("incident", "show", "INC-20200101-001")
    assert result.exit_code == 2
    assert "not found" in result.stderr and "incident list" in result.stderr


def test_bad_title_is_refused_and_nothing_is_left(cli: Cli, root: Path) -> None:
    result = cli("incident", "new", "--title", "line one\nline two", "--severity", "Sev2")
    assert result.exit_code == 2
    assert "invalid incident title" in result.stderr
    assert not [p for p in root.iterdir() if not p.name.startswith(".")]


def test_list_and_show(cli: Cli) -> None:
    first = cli(
        "incident",
        "new",
        "--title",
        "Graph constraint offline",
        "--severity",
        "Sev2",
        "--commander",
        "bo",
    ).stdout.strip()
    listing = cli("incident", "list")
    assert first in listing.stdout and "Graph constraint offline" in listing.stdout
    rows = json.loads(cli("incident", "list", "--json").stdout)
    assert rows[0]["id"] == first
    shown = json.loads(cli("incident", "show", first, "--json").stdout)
    assert shown["incident"]["roles"]["IC"] == "bo"
    assert shown["ledger_entries"] == 1 and len(shown["ledger_head"]) == 64


def test_root_option_overrides_environment(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    incident_id = cli(
        "incident", "new", "--title", "t", "--severity", "Sev3", "--root", str(other)
    ).stdout.strip()
    assert (other / incident_id).is_dir()
    assert open_workspace(incident_id, other).incident_id == incident_id


def test_open_workspace_rejects_traversal(tmp_path: Path) -> None:
    with pytest.raises(InvalidIdError):
        open_workspace("../INC-20261127-001", tmp_path)


def test_malformed_incident_yaml_is_a_clear_error(cli: Cli, root: Path) -> None:
    incident_id = cli("incident", "new", "--title", "t", "--severity", "Sev3").stdout.strip()
    (root / incident_id / "00_meta/incident.yaml").write_text("id: [unclosed\n")
    result = cli("incident", "show", incident_id)
    assert result.exit_code == 1  # a hand edit: refused, pointing to verify
    assert "incident.yaml was edited outside kfm-runbook" in result.stderr
    assert f"kfm-runbook verify {incident_id}" in result.stderr
    listed = cli("incident", "list")
    assert listed.exit_code == 0 and "edited outside kfm-runbook" in listed.stdout
