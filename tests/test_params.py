"""Parameters are typed by the runbook's defaults and refused before a kernel starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from kfm_runbooks import params
from kfm_runbooks import runbook as runbook_mod
from kfm_runbooks.errors import ParameterError

from .conftest import NOTEBOOKS

INJECTED = {"incident_id": "INC-20260101-001", "workspace": "/w", "target": "/t", "apply": False}


@pytest.fixture(scope="module")
def declared() -> dict[str, runbook_mod.Parameter]:
    return runbook_mod.load(NOTEBOOKS / "echo_params.ipynb").parameters()


def test_string_parameters_stay_strings_byte_for_byte(declared: dict) -> None:
    got = params.parse_cli(["ticket=00123", 'note=it\'s "quoted"\nand multi-line'], declared)
    assert got == {"ticket": "00123", "note": 'it\'s "quoted"\nand multi-line'}


def test_other_types_are_json(declared: dict) -> None:
    got = params.parse_cli(["limit=5", "ratio=2", 'flags=["a", 1]'], declared)
    assert got == {"limit": 5, "ratio": 2.0, "flags": ["a", 1]}


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("nope=1", "unknown parameter 'nope'"),
        ("limit=ten", "not a JSON value"),
        ("limit=1.5", "must be int"),
        ("limit=true", "must be int"),
        ("apply=true", "set by --apply"),
        ("incident_id=INC-20260101-002", "set by --incident"),
        ("class=1", "not a valid parameter name"),
        ("limit", "expected name=value"),
    ],
)
def test_bad_cli_values(declared: dict, pair: str, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        params.parse_cli([pair], declared)


def test_yaml_file_and_precedence(declared: dict, tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("ticket: '00042'\nlimit: 3\nnote: from file\n")
    merged = params.build(declared, cli=["limit=4"], file=path, injected=INJECTED)
    assert merged["ticket"] == "00042" and merged["limit"] == 4 and merged["note"] == "from file"
    assert merged["apply"] is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ticket: 00123\n", "must be str"),
        ("note: 2026-01-01\n", "not a JSON value"),
        ("limit: .nan\n", "must be int|JSON cannot carry"),
        ("ticket: [unclosed\n", "not valid YAML"),
        ("- a\n- b\n", "must be a mapping"),
        ("bogus: 1\n", "unknown parameter"),
    ],
)
def test_bad_params_files(declared: dict, tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ParameterError, match=message):
        params.build(declared, file=path, injected=INJECTED)


@pytest.mark.parametrize(
    ("notebook", "message"),
    [
        ("no_parameters", "no cell tagged 'parameters'"),
        ("two_parameter_cells", "2 cells tagged 'parameters'"),
        ("missing_required_parameters", "must declare workspace, target"),
    ],
)
def test_parameters_cell_rules(notebook: str, message: str) -> None:
    book = runbook_mod.load(NOTEBOOKS / f"{notebook}.ipynb")
    with pytest.raises(ParameterError, match=message):
        book.parameters()
