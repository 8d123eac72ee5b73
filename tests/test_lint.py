"""`kfm-runbook lint`: each fixture breaks one rule and yields exactly that rule code."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest

from kfm_runbooks import lint, runbook
from kfm_runbooks.lint import lint_file

from .conftest import ROOT, Cli

CASES = ROOT / "tests" / "lint_cases"
EXPECTED = {
    "valid_runbook": set(),
    "unreadable": {"RB001"},
    "nbformat_4_4": {"RB002"},
    "duplicate_cell_id": {"RB003"},
    "generated_cell_id": {"RB004"},
    "missing_metadata": {"RB010"},
    "invalid_metadata": {"RB011"},
    "wrong_file_name": {"RB012"},
    "wrong_folder": {"RB013"},
    "missing_related": {"RB014"},
    "missing_section": {"RB020"},
    "sections_out_of_order": {"RB021"},
    "duplicate_section": {"RB022"},
    "missing_parameters_cell": {"RB030"},
    "two_parameter_cells": {"RB031"},
    "missing_required_parameter": {"RB032"},
    "unsafe_apply_default": {"RB033"},
    "code_in_parameters_cell": {"RB034"},
    "assigns_apply_outside_parameters": {"RB035"},
    "stored_outputs": {"RB040"},
    "execution_count": {"RB041"},
    "secret_in_source": {"RB050"},
    "wrong_kernel": {"RB060"},
    "untagged_code_cell": {"RB070"},
    "two_phase_tags": {"RB071"},
    "changes_target_without_action": {"RB072"},
    "action_without_changes_target": {"RB073"},
    "changes_target_in_triage": {"RB074"},
    "no_verification_check": {"RB075"},
    "check_without_coverage": {"RB076"},
    "unknown_undo_op": {"RB077"},
    "pr_first_without_pr_action": {"RB078"},
    "pr_action_without_pr_first": {"RB078"},
    "pr_first_in_containment": {"RB079"},
    "todo_marker": {"RB080"},
}
WARNINGS = {"RB004", "RB080"}


def _place(fixture: Path, library: Path) -> Path:
    """Put a fixture where the standard expects it (or where its case says), in a library."""
    try:
        meta = json.loads(fixture.read_text()).get("metadata", {})
    except ValueError:
        meta = {}
    place = meta.get("kfm_lint_case", {}).get("place", "catalog/RBK-catalog-lint-case.ipynb")
    dest = library / place
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fixture, dest)
    return dest


def test_every_fixture_is_covered() -> None:
    assert {p.stem for p in CASES.glob("*.ipynb")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_yields_exactly_its_rule(name: str, tmp_path: Path) -> None:
    library = tmp_path / "runbooks"
    path = _place(CASES / f"{name}.ipynb", library)
    findings = lint_file(path, library)
    assert {f.code for f in findings} == EXPECTED[name], [f.format() for f in findings]
    for finding in findings:
        assert finding.severity == ("warning" if finding.code in WARNINGS else "error")
        assert finding.fix and finding.message
        if finding.cell_index is not None:
            assert finding.cell_id  # names index and id, like a compiler


def test_findings_name_file_cell_code_and_fix(tmp_path: Path) -> None:
    path = _place(CASES / "stored_outputs.ipynb", tmp_path / "runbooks")
    [finding] = lint_file(path, tmp_path / "runbooks")
    text = finding.format()
    where = "RBK-catalog-lint-case.ipynb:cell 7 [safety]"
    assert f"{where}: error RB040: cell has stored outputs" in text
    assert "fix: clear outputs" in text


def test_cli_exit_codes_and_json(cli: Cli, tmp_path: Path) -> None:
    library = tmp_path / "runbooks"
    good = _place(CASES / "valid_runbook.ipynb", library)
    assert cli("lint", str(good)).exit_code == 0
    bad = _place(CASES / "secret_in_source.ipynb", tmp_path / "other" / "runbooks")
    result = cli("lint", str(bad), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["errors"] == 1 and report["findings"][0]["code"] == "RB050"
    assert "ghp_" not in result.stdout  # the finding names the kind, never the secret
    todo = _place(CASES / "todo_marker.ipynb", tmp_path / "third" / "runbooks")
    assert cli("lint", str(todo)).exit_code == 0
    assert cli("lint", str(todo), "--strict").exit_code == 1
    missing = cli("lint", str(tmp_path / "nope"))
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


def test_template_and_library_pass() -> None:
    template = runbook.runbooks_dir() / "TEMPLATE_runbook.ipynb"
    assert [f for f in lint_file(template) if f.severity == "error"] == []
    assert {f.code for f in lint_file(template)} == {"RB080"}  # TODO markers: warnings only
    for path in runbook.discover():
        findings = lint_file(path)
        assert findings == [], [f.format() for f in findings]


def test_new_runbook_passes_lint(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    library = tmp_path / "runbooks"
    library.mkdir()
    shutil.copyfile(
        runbook.runbooks_dir() / "TEMPLATE_runbook.ipynb", library / "TEMPLATE_runbook.ipynb"
    )
    monkeypatch.setenv("KFM_RUNBOOK_LIBRARY", str(library))
    result = cli("new", "api", "5xx-spike", "--title", "API outage / 5xx spike")
    assert result.exit_code == 0, result.output
    path = library / "api" / "RBK-api-5xx-spike.ipynb"
    assert result.stdout.strip() == str(path)
    findings = lint_file(path, library)
    assert [f for f in findings if f.severity == "error"] == []
    assert {f.code for f in findings} == {"RB080"}
    meta = runbook.load(path).metadata
    assert (meta["id"], meta["domain"], meta["status"]) == ("RBK-api-5xx-spike", "api", "draft")
    again = cli("new", "api", "5xx-spike", "--title", "again")
    assert again.exit_code == 2 and "already exists" in again.stderr
    for args in (("nope", "x"), ("api", "Bad_Slug"), ("api", "../x")):
        bad = cli("new", *args, "--title", "t")
        assert bad.exit_code == 2, args


def test_index_check_detects_staleness(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = tmp_path / "runbooks"
    library.mkdir()
    shutil.copyfile(
        runbook.runbooks_dir() / "TEMPLATE_runbook.ipynb", library / "TEMPLATE_runbook.ipynb"
    )
    monkeypatch.setenv("KFM_RUNBOOK_LIBRARY", str(library))
    assert cli("index").exit_code == 0
    assert cli("index", "--check").exit_code == 0
    cli("new", "infra", "index-probe", "--title", "Index probe")
    stale = cli("index", "--check")
    assert stale.exit_code == 1 and "stale" in stale.stderr
    assert cli("index").exit_code == 0
    assert cli("index", "--check").exit_code == 0
    assert "RBK-infra-index-probe" in (library / "README.md").read_text()


def test_committed_index_is_fresh(cli: Cli) -> None:
    assert cli("index", "--check").exit_code == 0


def test_show_prints_metadata_sections_and_tags(cli: Cli) -> None:
    result = cli("show", "RBK-catalog-checksum-mismatch")
    assert result.exit_code == 0
    out = result.stdout
    assert "severity_hint   Sev1" in out
    assert "## 8. Verification Steps" in out
    assert "tags: containment, changes-target" in out
    assert "── [4] parameters · code · tags: parameters" in out


@pytest.mark.parametrize(
    ("source", "unknown"),
    [
        ('run.action("t", command="c", change=f, undo={"op": "catalog.restore_item"})', []),
        ('run.action("t", command="c", change=f, undo={"op": "catalog.restore"})', [1]),
        ('run.action("t", command="c", change=f,\n undo=lambda r: {"op": "graph.unfrez"})', [2]),
        ('run.action("t", command="c", change=f, undo=ai_focus.flags_undo(p))', []),
        ('plan = {"op": "not.an_undo"}', []),  # only what is passed as undo= is an undo
    ],
)
def test_rb077_reads_undo_literals_and_lambdas(source: str, unknown: list[int]) -> None:
    assert [line for line, _ in lint._unknown_undo_ops(ast.parse(source))] == unknown
